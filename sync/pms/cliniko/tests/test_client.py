"""The Cliniko client and adapter against the simulator over real HTTP on loopback: complete
listings (hidden states included), per_page=100 paging, incremental windows, auth failure,
429s and transient faults. Pacing rows live in the test database, hence `db`."""

from __future__ import annotations

import math
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from sync.pms import base
from sync.pms.cliniko.adapter import ClinikoAdapter
from sync.pms.cliniko.client import ClinikoClient, cliniko_api_url, filter_time
from sync.pms.cliniko.simulator import ClinikoSimulator, FaultPlan, SimClock
from sync.pms.errors import PmsAuthFailed, PmsBadResponse
from sync.pms.pacing import CircuitBreaker, TokenBucket, credential_key

pytestmark = pytest.mark.django_db

LATER = datetime(2027, 1, 1, tzinfo=UTC)  # after every generated timestamp
SIM_RESOURCES = {
    base.LOCATION: "businesses",
    base.PRACTITIONER: "practitioners",
    base.APPOINTMENT_TYPE: "appointment_types",
    base.PATIENT: "patients",
    base.APPOINTMENT: "individual_appointments",
    base.INVOICE: "invoices",
}


def fresh_key() -> str:
    """A key per test, so no test inherits another's pacing or breaker row."""
    return f"test{uuid.uuid4().hex}-au1"


def start(factory: Any, **options: Any) -> ClinikoSimulator:
    options.setdefault("rate_limit", 0)
    return factory(api_key=fresh_key(), **options)


def make_client(sim: ClinikoSimulator, **options: Any) -> ClinikoClient:
    key = credential_key(sim.api_key, namespace="cliniko")
    options.setdefault("pacer", TokenBucket(key, rate_per_minute=600_000, burst=1_000))
    return ClinikoClient(api_key=options.pop("api_key", sim.api_key), base_url=sim.base_url, **options)


def expected_ids(sim: ClinikoSimulator, resource: str) -> set[str]:
    name = SIM_RESOURCES[resource]
    ids = set(sim.store.ids(name))
    if name == "patients":
        # Soft-deleted patients have no listing with their fields (README: stubs only).
        ids = {i for i in ids if not sim.store.record(name, i).get("deleted_at")}
    return ids


def listed_ids(adapter: ClinikoAdapter, resource: str, after: datetime | None = None) -> list[str]:
    return [str(item["id"]) for page in adapter.iter_changes(resource, after=after) for item in page.items]


def test_base_url_from_shard_or_override():
    assert cliniko_api_url("abcdefgh-au2") == "https://api.au2.cliniko.com/v1"
    assert cliniko_api_url("abcdefghij") == "https://api.au1.cliniko.com/v1"
    assert cliniko_api_url("abcdefgh-uk1", "http://127.0.0.1:9/") == "http://127.0.0.1:9/v1"
    assert cliniko_api_url("abcdefgh-uk1", "http://127.0.0.1:9/v1") == "http://127.0.0.1:9/v1"
    with pytest.raises(PmsAuthFailed):
        cliniko_api_url("abcdefgh-shard9")
    # Cliniko's own pattern, not a fixed list: a shard added later (or us1) works.
    assert cliniko_api_url("abcdefgh-us1") == "https://api.us1.cliniko.com/v1"
    assert filter_time(datetime(2026, 1, 2, 3, 4, 5, 999_000, tzinfo=UTC)) == "2026-01-02T03:04:05Z"


def test_client_identity_headers_and_shared_pacing_keys(settings, cliniko_simulator_factory):
    settings.ROUTIQ_CONTACT_EMAIL = "ops@routiq.example"
    sim = start(cliniko_simulator_factory)
    client = ClinikoClient(api_key=sim.api_key, base_url=sim.base_url)
    key = credential_key(sim.api_key, namespace="cliniko")
    assert isinstance(client.pacer, TokenBucket) and client.pacer.key == key
    assert isinstance(client.breaker, CircuitBreaker) and client.breaker.key == key
    assert client.session.headers["User-Agent"] == "Routiq (ops@routiq.example)"
    assert client.session.headers["Accept"] == "application/json"
    assert client.session.auth == (sim.api_key, "")
    assert client.get_json("businesses")["total_entries"] == 1


def test_full_listing_is_complete_and_pages_by_100(cliniko_simulator_factory):
    sim = start(cliniko_simulator_factory)
    counter = base.EventCounter()
    adapter = ClinikoAdapter(make_client(sim, on_event=counter))
    sim.stats.reset()
    per_listing: Counter[str] = Counter()
    page_sizes: dict[str, list[int]] = {}
    for resource in base.RESOURCES:
        seen: list[str] = []
        for listing, page in adapter.client.iter_resource(resource):
            per_listing[listing.path] += len(page.items)
            page_sizes.setdefault(listing.path, []).append(len(page.items))
            seen += [item["id"] for item in page.items]
        assert all(isinstance(i, str) for i in seen)
        assert len(seen) == len(set(seen)), resource
        assert set(seen) == expected_ids(sim, resource), resource
    expected_requests = sum(max(1, math.ceil(n / 100)) for n in per_listing.values())
    assert sim.stats.snapshot()["requests"] == expected_requests == counter.requests == 25
    assert all(size == 100 for sizes in page_sizes.values() for size in sizes[:-1])
    # The hidden states really were listed.
    assert per_listing["practitioners/inactive"] == 1
    appointments = [
        sim.store.record("individual_appointments", i) for i in expected_ids(sim, base.APPOINTMENT)
    ]
    assert {"cancelled_at", "archived_at", "deleted_at"} <= {
        state
        for record in appointments
        for state in ("cancelled_at", "archived_at", "deleted_at")
        if record[state]
    }


def test_fetch_by_ids_finds_rows_in_every_state_and_map(cliniko_simulator_factory):
    sim = start(cliniko_simulator_factory)
    adapter = ClinikoAdapter(make_client(sim), country="AU")
    appointments = sorted(expected_ids(sim, base.APPOINTMENT))
    hidden = [
        i for i in appointments
        if any(sim.store.record("individual_appointments", i)[s] for s in ("cancelled_at", "archived_at"))
    ]
    gone = appointments[-1]
    sim.store.hard_delete("individual_appointments", gone)
    sim.stats.reset()
    wanted = [*hidden[:3], appointments[0], gone]
    found = adapter.fetch_by_ids(base.APPOINTMENT, wanted)
    assert {item["id"] for item in found} == set(wanted) - {gone}
    assert sim.stats.snapshot()["requests"] == 1  # one listing, up to 100 ids a request
    # Practitioners live on two listings: both are asked.
    inactive = [i for i in sim.store.ids("practitioners") if not sim.store.record("practitioners", i)["active"]]
    assert [item["id"] for item in adapter.fetch_by_ids(base.PRACTITIONER, inactive)] == inactive
    types = [item for page in adapter.iter_changes(base.APPOINTMENT_TYPE, after=None) for item in page.items]
    mapped = [adapter.map(base.APPOINTMENT_TYPE, payload) for payload in types]
    assert all(isinstance(row.fields["price"], Decimal) for row in mapped)  # prices from billable items
    assert all(row.pms_refs.get("billable_item") for row in mapped)
    appointment = next(adapter.iter_changes(base.APPOINTMENT, after=None)).items[0]
    row = adapter.map(base.APPOINTMENT, appointment)
    assert row.external_id == appointment["id"] and row.refs["patient"]
    with pytest.raises(base.UnsupportedResource):
        adapter.fetch_by_ids("attendee", ["1"])


def test_window_listing_returns_changes_between_after_and_until(cliniko_simulator_factory):
    sim = start(cliniko_simulator_factory, clock=SimClock(LATER))
    adapter = ClinikoAdapter(make_client(sim))
    newest = max(
        page.max_updated_at
        for page in adapter.iter_changes(base.APPOINTMENT, after=None)
        if page.max_updated_at is not None
    )
    assert newest < LATER
    empty = list(adapter.iter_changes(base.APPOINTMENT, after=LATER))
    assert [(page.items, page.max_updated_at, page.total) for page in empty] == [([], None, 0)]
    sim.clock.advance(3600)
    live = [
        i
        for i in sorted(expected_ids(sim, base.APPOINTMENT))
        if not any(sim.store.record("individual_appointments", i)[s] for s in ("cancelled_at", "archived_at"))
    ]
    patient = sorted(expected_ids(sim, base.PATIENT))[0]
    edited, cancelled, archived = live[:3]
    sim.store.edit("individual_appointments", edited, notes="moved")
    sim.clock.advance(1)
    sim.store.cancel_appointment(cancelled, reason=30)
    sim.clock.advance(1)
    sim.store.archive("individual_appointments", archived)
    sim.clock.advance(1)
    added = sim.store.add_appointment(patient)["id"]
    sim.store.archive("patients", patient)

    after = LATER + timedelta(minutes=30)
    changes = list(adapter.iter_changes(base.APPOINTMENT, after=after))
    got = [item["id"] for page in changes for item in page.items]
    assert got == [edited, cancelled, archived, added]  # oldest change first
    assert changes[-1].max_updated_at == LATER + timedelta(seconds=3603)
    assert changes[-1].resume == {"listing": 0, "since": "2027-01-01T01:00:03Z", "after_id": added}
    assert listed_ids(adapter, base.PATIENT, after) == [patient]
    assert listed_ids(adapter, base.INVOICE, after) == []
    # Both bounds are exclusive: after the edit's second, before the archive's.
    edited_at = LATER + timedelta(seconds=3600)
    window = adapter.iter_changes(base.APPOINTMENT, after=edited_at, until=edited_at + timedelta(seconds=2))
    assert [item["id"] for page in window for item in page.items] == [cancelled]


def test_a_page_token_resumes_the_listing_where_it_stopped(cliniko_simulator_factory):
    sim = start(cliniko_simulator_factory)
    adapter = ClinikoAdapter(make_client(sim))
    pages = list(adapter.iter_changes(base.APPOINTMENT, after=None, page_size=100))
    everything = [item["id"] for page in pages for item in page.items]
    token = pages[3].resume
    last = pages[3].items[-1]
    assert token == {"listing": 0, "since": last["updated_at"], "after_id": last["id"]}
    sim.stats.reset()
    rest = [item["id"] for page in adapter.iter_changes(base.APPOINTMENT, after=None, resume=token)
            for item in page.items]
    # Exactly the rows after page 4: the rest of its last second by id, then the later ones.
    assert rest == everything[400:]
    assert sim.stats.snapshot()["requests"] == len(pages) - 4 + 1


def test_many_rows_sharing_a_second_are_read_once_across_a_resume(cliniko_simulator_factory):
    sim = start(cliniko_simulator_factory, clock=SimClock(LATER))
    ids = sorted(expected_ids(sim, base.APPOINTMENT))[:300]
    for appointment_id in ids:  # a bulk update: 300 rows stamped in the same second
        sim.store.edit("individual_appointments", appointment_id, notes="bulk")
    adapter = ClinikoAdapter(make_client(sim))
    bulk = LATER - timedelta(seconds=1)
    pages = list(adapter.iter_changes(base.APPOINTMENT, after=bulk))
    assert [len(p.items) for p in pages] == [100, 100, 100]
    sim.stats.reset()
    rest = [item["id"] for page in adapter.iter_changes(base.APPOINTMENT, after=bulk, resume=pages[0].resume)
            for item in page.items]
    assert rest == [item["id"] for page in pages[1:] for item in page.items]
    assert sim.stats.snapshot()["requests"] == 2 + 1  # the tie block's 2 pages, then an empty listing


def test_a_listing_in_the_wrong_order_is_an_error_not_a_skip(cliniko_simulator_factory):
    sim = start(cliniko_simulator_factory)
    original = sim.store.list_page

    def reversed_page(resource, suffix, **kwargs):
        page = original(resource, suffix, **kwargs)
        return type(page)(list(reversed(page.items)), page.total)

    sim.store.list_page = reversed_page
    adapter = ClinikoAdapter(make_client(sim, max_attempts=1))
    with pytest.raises(PmsBadResponse, match="not in the order"):
        listed_ids(adapter, base.APPOINTMENT)


def test_wrong_key_is_auth_failed(cliniko_simulator_factory):
    sim = start(cliniko_simulator_factory)
    client = make_client(sim, api_key="not-the-right-key-au1")
    with pytest.raises(PmsAuthFailed) as caught:
        list(client.iter_resource(base.PATIENT))
    assert caught.value.status == 401
    assert sim.stats.snapshot()["requests"] == 1  # permanent: never retried


def test_rate_limited_listing_completes_and_reports_429s(cliniko_simulator_factory):
    sim = start(cliniko_simulator_factory, rate_limit=4, window_seconds=0.5)
    counter = base.EventCounter()
    adapter = ClinikoAdapter(make_client(sim, on_event=counter, rate_limit_jitter=0.01, max_attempts=8))
    assert set(listed_ids(adapter, base.APPOINTMENT)) == expected_ids(sim, base.APPOINTMENT)
    stats = sim.stats.snapshot()
    assert counter.rate_limited == stats["rate_limited"] > 0
    assert counter.requests == stats["requests"] == 11 + counter.rate_limited


def test_transient_faults_at_20_percent_give_identical_results(cliniko_simulator_factory):
    clean = start(cliniko_simulator_factory)
    baseline = {r: listed_ids(ClinikoAdapter(make_client(clean)), r) for r in base.RESOURCES}
    rates = {
        "500": 0.04,
        "502": 0.03,
        "503": 0.03,
        "timeout": 0.03,
        "reset": 0.03,
        "truncated": 0.02,
        "html": 0.02,
    }
    sim = start(cliniko_simulator_factory, faults=FaultPlan(rates=rates, seed=3, timeout_seconds=0.5))
    counter = base.EventCounter()
    client = make_client(
        sim,
        on_event=counter,
        read_timeout=0.2,
        max_attempts=6,
        sleep=lambda _seconds: None,
        breaker=CircuitBreaker(credential_key(sim.api_key, namespace="cliniko"), failure_threshold=10),
    )
    faulty = {r: listed_ids(ClinikoAdapter(client), r) for r in base.RESOURCES}
    assert faulty == baseline
    assert sum(sim.faults.injected.values()) == counter.retries > 0
