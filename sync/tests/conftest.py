"""Sync fixtures: org A connected to a simulated Cliniko account, and a way to run a sync
against it in this process with fast pacing and short back-off."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from clinics.models import PmsConnection
from clinics.rls import tenant_scope
from clinics.services import pms_connection_set
from sync import services
from sync.engine.runner import SyncOptions
from sync.models import SyncRun
from sync.pms.cliniko.simulator import ClinikoSimulator, SimClock
from sync.pms.cliniko.tests.conftest import cliniko_simulator_factory, simulator_clinic  # noqa: F401
from sync.pms.pacing import TokenBucket, credential_key

# After every generated timestamp of the fixture clinic (its "today" is 2026-11-27).
SIM_START = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
FAST_OPTIONS = SyncOptions(resource_retry_delay=0.01, heartbeat_seconds=0.5)


def sim_clock(sim: ClinikoSimulator) -> Callable[[], datetime]:
    """The engine's clock, agreeing with the simulated PMS's (as NTP-synced servers do)."""
    return lambda: datetime.fromtimestamp(sim.clock.now(), UTC)


def fast_adapter_options(sim: ClinikoSimulator) -> dict[str, Any]:
    key = credential_key(sim.api_key, namespace="cliniko")
    return {
        "pacer": TokenBucket(key, rate_per_minute=600_000, burst=1_000),
        "backoff_base": 0.001,
        "backoff_cap": 0.01,
        "rate_limit_jitter": 0.01,
        "read_timeout": 2.0,
    }


@pytest.fixture
def sim(cliniko_simulator_factory: Callable[..., ClinikoSimulator]) -> ClinikoSimulator:  # noqa: F811
    """The fixture clinic with no rate limit, its clock frozen the morning after its data."""
    return cliniko_simulator_factory(
        api_key=f"sync{uuid.uuid4().hex}-au1", rate_limit=0, clock=SimClock(SIM_START)
    )


@pytest.fixture
def connection(world: Any, sim: ClinikoSimulator) -> PmsConnection:
    with tenant_scope(world.org_a):
        return pms_connection_set(world.org_a, kind="cliniko", api_key=sim.api_key, base_url=sim.base_url)


@pytest.fixture
def run_sync(world: Any, sim: ClinikoSimulator, connection: PmsConnection) -> Callable[..., SyncRun]:
    def run(mode: str = "incremental", *, options: SyncOptions = FAST_OPTIONS, **extra: Any) -> SyncRun:
        # Time passes between a change in the PMS and the sync that reads it (more than the
        # window margin, so the change is inside the window).
        sim.clock.advance(FAST_OPTIONS.window_margin.total_seconds() + 60)
        adapter_options = {**fast_adapter_options(sim), **extra.pop("adapter_options", {})}
        extra.setdefault("clock", sim_clock(sim))
        result, created = services.sync_run_now(
            extra.pop("organization", world.org_a),
            connection=extra.pop("connection", connection),
            mode=mode,
            options=options,
            adapter_options=adapter_options,
            **extra,
        )
        assert created
        return result

    return run
