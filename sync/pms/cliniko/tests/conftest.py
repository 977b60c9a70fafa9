"""Cliniko fixtures: a simulated Cliniko account on a free loopback port.

`cliniko_simulator` is a small clinic (60 patients, 3 practitioners, one of them gone) with
Cliniko's real rate limit; `cliniko_simulator_factory(**options)` starts one with other
options (see ClinikoSimulator); `cliniko_session` is a requests session that passes the
simulator's gate (key, User-Agent with a contact email, Accept).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from datetime import date
from typing import Any, cast

import pytest
import requests

from sync.pms.cliniko.simulator import ClinikoSimulator
from sync.synthetic import ClinicSpec, PatientBundle, SyntheticClinic, generate_clinic

SIMULATOR_SPEC = ClinicSpec(seed=7, patients=60, practitioners=3, today=date(2026, 11, 27))
USER_AGENT = "Routiq tests (devs@routiq.example)"


class RenderedClinic:
    """A generated clinic with every patient rendered once, so each test's simulator builds
    its store without regenerating anyone (stores copy records, never change them)."""

    def __init__(self, clinic: SyntheticClinic) -> None:
        self._clinic = clinic
        self.bundles = list(clinic.iter_patients())

    def __getattr__(self, name: str) -> Any:
        return getattr(self._clinic, name)

    def iter_patients(self) -> Iterator[PatientBundle]:
        return iter(self.bundles)

    def patient_bundle(self, index: int) -> PatientBundle:
        return self.bundles[index]


@functools.cache
def simulator_clinic() -> SyntheticClinic:
    """Generated once per test run; each simulator builds its own store from it."""
    return cast(SyntheticClinic, RenderedClinic(generate_clinic(SIMULATOR_SPEC)))


def simulator_session(sim: ClinikoSimulator) -> requests.Session:
    session = requests.Session()
    session.auth = (sim.api_key, "")
    session.headers.update({"User-Agent": USER_AGENT, "Accept": "application/json"})
    return session


@pytest.fixture
def cliniko_simulator_factory() -> Iterator[Callable[..., ClinikoSimulator]]:
    started: list[ClinikoSimulator] = []

    def start(**options: Any) -> ClinikoSimulator:
        if "spec" not in options:
            options.setdefault("clinic", simulator_clinic())
        simulator = ClinikoSimulator(**options).start()
        started.append(simulator)
        return simulator

    yield start
    for simulator in started:
        simulator.stop()


@pytest.fixture
def cliniko_simulator(cliniko_simulator_factory: Callable[..., ClinikoSimulator]) -> ClinikoSimulator:
    return cliniko_simulator_factory()


@pytest.fixture
def cliniko_session(cliniko_simulator: ClinikoSimulator) -> Iterator[requests.Session]:
    with simulator_session(cliniko_simulator) as session:
        yield session
