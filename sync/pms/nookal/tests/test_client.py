"""The Nookal client and adapter against the simulator over real HTTP on loopback: form POSTs
with the key in the body, complete listings across `settings.nextPage` pages, failures inside
an HTTP 200, retried 5xx, and the registry building the adapter from a stored connection.
Pacing rows live in the test database, hence `db`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from clinics.rls import tenant_scope
from clinics.services import pms_connection_set
from sync.pms import base
from sync.pms.errors import PmsAuthFailed, PmsBadResponse, PmsRequestRejected, PmsUnavailable
from sync.pms.nookal.adapter import NookalAdapter
from sync.pms.nookal.client import NookalClient, failure_error, filter_time, nookal_api_url
from sync.pms.nookal.simulator import RESULT_KEYS, NookalSimulator
from sync.pms.nookal.tests.conftest import example
from sync.pms.pacing import CircuitBreaker, TokenBucket, credential_key

pytestmark = pytest.mark.django_db

FUNCTIONS = {
    base.LOCATION: "getLocations",
    base.PRACTITIONER: "getPractitioners",
    base.APPOINTMENT_TYPE: "getAppointmentTypes",
    base.PATIENT: "getPatients",
    base.APPOINTMENT: "getAppointments",
}


def make_client(sim: NookalSimulator, **options: Any) -> NookalClient:
    key = credential_key(sim.api_key, namespace="nookal")
    options.setdefault("pacer", TokenBucket(key, rate_per_minute=600_000, burst=1_000))
    options.setdefault("sleep", lambda _seconds: None)
    return NookalClient(api_key=options.pop("api_key", sim.api_key), base_url=sim.base_url, **options)


def listed(adapter: NookalAdapter, resource: str, since: datetime | None = None, page_size: int = 100):
    return [item for page in adapter.iter_changes(resource, after=since, page_size=page_size) for item in page.items]


def test_api_url_and_filter_time():
    assert nookal_api_url() == "https://api.nookal.com/production/v2"
    assert nookal_api_url("http://127.0.0.1:9/") == "http://127.0.0.1:9/production/v2"
    assert nookal_api_url("http://127.0.0.1:9/production/v2") == "http://127.0.0.1:9/production/v2"
    moment = datetime(2026, 10, 4, 12, 0, 5, 999_000, tzinfo=UTC)
    assert filter_time(moment) == "2026-10-04 12:00:05"


def test_failure_bodies_are_classified():
    missing_key = failure_error(example("verify_failure_missing_api_key.json"), "POST /verify")
    assert isinstance(missing_key, PmsAuthFailed) and "L000_1" in missing_key.message
    by_message = failure_error({"status": "failure", "details": {"errorMessage": "Invalid API Key"}}, "x")
    assert isinstance(by_message, PmsAuthFailed)
    other = failure_error({"status": "failure", "details": {"errorCode": "E12", "alerts": ["bad date"]}}, "x")
    assert isinstance(other, PmsRequestRejected) and not isinstance(other, PmsAuthFailed)


@pytest.mark.parametrize("resource", list(FUNCTIONS))
def test_full_listing_across_pages_equals_the_simulator(nookal_simulator, resource):
    sim = nookal_simulator
    adapter = NookalAdapter(make_client(sim))
    page_size = 7 if resource in (base.PATIENT, base.APPOINTMENT) else 1
    items = listed(adapter, resource, page_size=page_size)
    assert items == sim.store.records(FUNCTIONS[resource])
    expected_pages = -(-len(items) // page_size)
    assert sim.requests[FUNCTIONS[resource]] == expected_pages > 1
    assert sim.methods["POST"] == sim.total_requests and sim.methods["GET"] == 0
    assert [item["ID"] for item in items] == sim.store.ids(FUNCTIONS[resource])


def test_every_record_maps(nookal_simulator):
    adapter = NookalAdapter(make_client(nookal_simulator), default_zone="UTC")
    for resource in FUNCTIONS:
        for item in listed(adapter, resource):
            mapped = adapter.map(resource, item)
            assert mapped.external_id == item["ID"]
    # The simulator's UTC fields agree with the local times read in each location's zone.
    for item in listed(adapter, base.APPOINTMENT):
        fields = adapter.map(base.APPOINTMENT, item).fields
        assert filter_time(fields["starts_at"]) == item["appointmentStartDateTimeUTC"]
        assert filter_time(fields["ends_at"]) == item["appointmentEndDateTimeUTC"]


def test_incremental_listing_sends_last_modified(nookal_simulator):
    sim = nookal_simulator
    client = make_client(sim, lookback=timedelta(hours=1))
    assert NookalAdapter(client).lookback == timedelta(hours=1)  # the engine subtracts it
    sim.store.edit("getPatients", "3", modified=datetime(2027, 1, 1, 10, tzinfo=UTC), FirstName="Edited")
    sim.store.edit("getPatients", "4", modified=datetime(2027, 1, 1, 9, 59, tzinfo=UTC), FirstName="Earlier")
    pages = list(NookalAdapter(client).iter_changes(base.PATIENT, after=datetime(2027, 1, 1, 10, tzinfo=UTC)))
    assert [item["ID"] for page in pages for item in page.items] == ["3"]
    assert pages[0].max_updated_at == datetime(2027, 1, 1, 10, tzinfo=UTC)
    # Locations have no documented filter: read in full whatever the cursor.
    assert len(listed(NookalAdapter(client), base.LOCATION, since=datetime(2027, 1, 1, tzinfo=UTC))) == 2


def test_bad_key_is_auth_failed_after_one_request(nookal_simulator):
    sim = nookal_simulator
    counter = base.EventCounter()
    client = make_client(sim, api_key="not-the-right-key", on_event=counter)
    with pytest.raises(PmsAuthFailed) as caught:
        list(client.iter_resource(base.PATIENT))
    assert caught.value.status == 200 and "not-the-right-key" not in str(caught.value)
    assert sim.total_requests == 1 == counter.requests and counter.retries == 0


def test_other_failure_in_200_is_rejected_without_retry(nookal_simulator):
    sim = nookal_simulator
    sim.queue_fault("failure")
    with pytest.raises(PmsRequestRejected):
        list(make_client(sim).iter_resource(base.LOCATION))
    assert sim.total_requests == 1


def test_5xx_are_retried(nookal_simulator):
    sim = nookal_simulator
    sim.queue_fault("500")
    sim.queue_fault("503")
    sim.queue_fault("502")
    counter = base.EventCounter()
    adapter = NookalAdapter(make_client(sim, on_event=counter))
    assert listed(adapter, base.PRACTITIONER) == sim.store.records("getPractitioners")
    assert counter.retries == 3 and sim.total_requests == 4


def test_5xx_outlasting_the_attempts_is_unavailable(nookal_simulator):
    sim = nookal_simulator
    sim.queue_fault("503", count=3)
    breaker = CircuitBreaker(credential_key(sim.api_key, namespace="nookal"), failure_threshold=10)
    with pytest.raises(PmsUnavailable) as caught:
        list(make_client(sim, max_attempts=3, breaker=breaker).iter_resource(base.LOCATION))
    assert not isinstance(caught.value, PmsBadResponse) and caught.value.status == 503
    assert sim.total_requests == 3


def test_verify(nookal_simulator):
    assert make_client(nookal_simulator).verify() is True
    with pytest.raises(PmsAuthFailed):
        make_client(nookal_simulator, api_key="wrong-key-123").verify()


def test_unsupported_resource(nookal_simulator):
    with pytest.raises(base.UnsupportedResource):
        list(NookalAdapter(make_client(nookal_simulator)).iter_changes(base.INVOICE, after=None))


def test_adapter_for_a_nookal_connection_lists_from_the_simulator(world, nookal_simulator):
    sim = nookal_simulator
    with tenant_scope(world.org_a):
        connection = pms_connection_set(world.org_a, kind="nookal", api_key=sim.api_key, base_url=sim.base_url)
        adapter = base.adapter_for(connection, on_event=base.EventCounter())
    assert "nookal" in base.registered_kinds()
    assert isinstance(adapter, NookalAdapter) and isinstance(adapter, base.PmsAdapter)
    assert adapter.country == world.org_a.country
    assert adapter.default_zone.key == world.org_a.time_zone
    assert adapter.client.base_url == sim.api_url
    assert adapter.client.pacer.key == credential_key(sim.api_key, namespace="nookal")
    listed_patients = [item["ID"] for page in adapter.iter_changes(base.PATIENT, after=None) for item in page.items]
    assert set(listed_patients) == set(sim.store.ids("getPatients"))
    assert not adapter.capabilities.lookup_by_id
    assert set(RESULT_KEYS) == set(FUNCTIONS.values())
    adapter.close()
