"""Nookal fixtures: a simulated Nookal account on a free loopback port, and the recorded
example payloads of ../shared/reference/nookal/examples/.

`nookal_simulator` serves the default clinic (25 patients, 40 appointments) under a fresh
key; `nookal_simulator_factory(**options)` starts one with another store or key.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sync.pms.nookal.simulator import NookalSimulator

EXAMPLES = Path(__file__).resolve().parents[5] / "shared" / "reference" / "nookal" / "examples"


def example(name: str) -> dict[str, Any]:
    return json.loads((EXAMPLES / name).read_text())


@pytest.fixture
def nookal_simulator_factory() -> Iterator[Callable[..., NookalSimulator]]:
    started: list[NookalSimulator] = []

    def start(**options: Any) -> NookalSimulator:
        options.setdefault("api_key", f"nookal{uuid.uuid4().hex}")
        simulator = NookalSimulator(**options).start()
        started.append(simulator)
        return simulator

    yield start
    for simulator in started:
        simulator.stop()


@pytest.fixture
def nookal_simulator(nookal_simulator_factory: Callable[..., NookalSimulator]) -> NookalSimulator:
    return nookal_simulator_factory()
