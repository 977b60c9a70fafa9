"""The PMS adapter registry: a stored connection becomes a working adapter (credentials
decrypted, base_url override honoured); kinds without an adapter fail clearly."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from clinics.models import PmsConnection
from clinics.rls import tenant_scope
from clinics.services import pms_connection_set
from sync.pms import base
from sync.pms.cliniko.adapter import ClinikoAdapter
from sync.pms.cliniko.simulator import ClinikoSimulator
from sync.pms.cliniko.tests.conftest import simulator_clinic
from sync.pms.pacing import credential_key


@pytest.fixture
def simulator() -> Iterator[ClinikoSimulator]:
    sim = ClinikoSimulator(clinic=simulator_clinic(), api_key=f"reg{uuid.uuid4().hex}-au2", rate_limit=0)
    with sim:
        yield sim


def test_adapter_for_a_cliniko_connection_lists_from_the_simulator(world, simulator):
    with tenant_scope(world.org_a):
        connection = pms_connection_set(
            world.org_a, kind="cliniko", api_key=simulator.api_key, base_url=simulator.base_url
        )
        adapter = base.adapter_for(connection, on_event=base.EventCounter())
        assert isinstance(adapter, ClinikoAdapter) and isinstance(adapter, base.PmsAdapter)
        assert adapter.country == world.org_a.country
    assert "cliniko" in base.registered_kinds()
    assert adapter.capabilities.resources == frozenset(base.RESOURCES)
    assert not adapter.capabilities.reports_hard_deletes and adapter.capabilities.incremental
    assert adapter.client.base_url == simulator.api_url
    assert adapter.client.pacer.key == credential_key(simulator.api_key, namespace="cliniko")
    listed = [
        item["id"] for page in adapter.iter_changes(base.PRACTITIONER, after=None) for item in page.items
    ]
    assert set(listed) == set(simulator.store.ids("practitioners"))
    assert adapter.capabilities.lookup_by_id and adapter.lookback == adapter.client.lookback
    adapter.close()


def test_adapter_for_without_override_uses_the_key_shard(world):
    with tenant_scope(world.org_a):
        connection = pms_connection_set(world.org_a, kind="cliniko", api_key="abcdefghijkl-uk1")
        adapter = base.adapter_for(connection)
    assert adapter.client.base_url == "https://api.uk1.cliniko.com/v1"


@pytest.mark.parametrize("kind", ["no-such-pms", "nonexistent"])
def test_unknown_kind_raises_a_clear_error(kind):
    connection = PmsConnection(kind=kind)
    with pytest.raises(base.UnknownPmsKind, match="no PMS adapter"):
        base.adapter_for(connection)


def test_register_replaces_a_factory(monkeypatch):
    monkeypatch.setattr(base, "_registry", {})
    built = []

    def factory(connection, *, credentials, **options):
        built.append((connection.kind, credentials, options))
        return "adapter"

    base.register("fake", factory)
    monkeypatch.setattr("clinics.selectors.pms_connection_credentials", lambda connection: {"api_key": "k"})
    assert base.adapter_for(PmsConnection(kind="fake"), page_size=5) == "adapter"
    assert built == [("fake", {"api_key": "k"}, {"page_size": 5})]
