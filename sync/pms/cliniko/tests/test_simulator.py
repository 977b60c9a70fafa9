"""The Cliniko simulator over real HTTP on loopback: the gate (key, User-Agent, Accept),
pagination, every filter operator, archived/cancelled/deleted scopes, the rate limit,
faults, data changes between syncs, the reference examples' shapes, and the CLI."""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from urllib3.util import SKIP_HEADER

from sync.pms.cliniko.simulator import ClinikoSimulator, FaultPlan, MutationError, SimClock
from sync.pms.cliniko.tests.conftest import USER_AGENT, simulator_session

REFERENCE = Path(__file__).resolve().parents[5] / "shared" / "reference" / "cliniko"
EXAMPLES = REFERENCE / "examples"
ROOT = Path(__file__).resolve().parents[4]
LATER = datetime(2027, 1, 1, tzinfo=UTC)  # after every generated timestamp
W = "2027-01-01T00:00:00Z"
STATES = {
    "patients": ("archived_at", "deleted_at"),
    "individual_appointments": ("archived_at", "deleted_at", "cancelled_at"),
    "invoices": ("archived_at", "deleted_at"),
    "businesses": ("archived_at", "deleted_at"),
    "appointment_types": ("archived_at",),
    "practitioners": (),
}
# Filters that make every row of a resource eligible, hidden states included (patients have
# no deleted_at filter, and the generator deletes none).
EVERYTHING = {
    "patients": ["archived_at:*"],
    "individual_appointments": ["archived_at:*", "deleted_at:*", "cancelled_at:*"],
    "invoices": ["archived_at:*", "deleted_at:*"],
}


def walk(session: requests.Session, url: str, params: Any = None, key: str | None = None) -> list[dict]:
    """Every item of a listing, following links.next; fails on a repeated id."""
    key = key or url.rstrip("/").split("/v1/", 1)[1].split("/")[0]
    items: list[dict] = []
    while url:
        response = session.get(url, params=params)
        assert response.status_code == 200, response.text
        body = response.json()
        items.extend(body[key])
        url, params = body["links"].get("next"), None
    ids = [item["links"]["self"] for item in items]
    assert len(ids) == len(set(ids)), "a record came back twice"
    return items


def ids(items: list[dict]) -> set[str]:
    return {item["id"] for item in items}


def stored(sim: ClinikoSimulator, resource: str) -> list[dict]:
    return [sim.store.record(resource, record_id) for record_id in sim.store.ids(resource)]


def visible(resource: str, record: dict, filtered: set[str] = frozenset()) -> bool:
    return not any(record.get(state) and state not in filtered for state in STATES[resource])


# --- the gate -------------------------------------------------------------------------------
def test_missing_or_wrong_key_is_401(cliniko_simulator):
    url = f"{cliniko_simulator.api_url}/patients"
    headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
    missing = requests.get(url, headers=headers)
    wrong = requests.get(url, headers=headers, auth=("not-a-key-au1", ""))
    for response in (missing, wrong):
        assert response.status_code == 401
        assert set(response.json()) == {"message"}
    # The key authenticates with or without its shard suffix (reference §1.2).
    bare = cliniko_simulator.api_key.rsplit("-", 1)[0]
    assert requests.get(url, headers=headers, auth=(bare, "")).status_code == 200


@pytest.mark.parametrize("agent", [SKIP_HEADER, "", "python-requests/2.32"])
def test_user_agent_needs_a_name_and_contact_email(cliniko_simulator, agent):
    session = simulator_session(cliniko_simulator)
    session.headers["User-Agent"] = agent  # SKIP_HEADER: no header at all
    response = session.get(f"{cliniko_simulator.api_url}/patients")
    assert response.status_code == 403
    assert "User-Agent" in response.json()["message"]


def test_user_agent_policy_present_accepts_any_agent(cliniko_simulator_factory):
    sim = cliniko_simulator_factory(user_agent_policy="present")
    session = simulator_session(sim)
    session.headers["User-Agent"] = "python-requests/2.32"
    assert session.get(f"{sim.api_url}/patients").status_code == 200
    session.headers["User-Agent"] = SKIP_HEADER
    assert session.get(f"{sim.api_url}/patients").status_code == 403


def test_accept_must_ask_for_json(cliniko_simulator, cliniko_session):
    cliniko_session.headers["Accept"] = "*/*"
    assert cliniko_session.get(f"{cliniko_simulator.api_url}/patients").status_code == 406


def test_unknown_route_is_an_html_404_and_unknown_id_a_json_404(cliniko_simulator, cliniko_session):
    page = cliniko_session.get(f"{cliniko_simulator.api_url}/attendees")
    assert page.status_code == 404 and page.headers["Content-Type"].startswith("text/html")
    record = cliniko_session.get(f"{cliniko_simulator.api_url}/patients/123")
    assert record.status_code == 404 and "message" in record.json()


# --- pagination and order -------------------------------------------------------------------
def test_pagination_walks_every_record_exactly_once(cliniko_simulator, cliniko_session):
    sim = cliniko_simulator
    expected = {r["id"] for r in stored(sim, "individual_appointments") if visible("individual_appointments", r)}
    first = cliniko_session.get(f"{sim.api_url}/individual_appointments", params={"per_page": 37}).json()
    assert first["total_entries"] == len(expected)
    assert set(first["links"]) == {"self", "next"}
    assert first["links"]["self"].startswith(f"{sim.api_url}/individual_appointments?page=1")
    items = walk(cliniko_session, f"{sim.api_url}/individual_appointments", {"per_page": 37})
    assert ids(items) == expected and len(items) == len(expected)
    last_page = -(-len(expected) // 37)
    last = cliniko_session.get(f"{sim.api_url}/individual_appointments",
                               params={"per_page": 37, "page": last_page}).json()
    assert "next" not in last["links"] and f"page={last_page - 1}" in last["links"]["previous"]
    beyond = cliniko_session.get(f"{sim.api_url}/individual_appointments",
                                 params={"page": last_page + 1, "per_page": 37}).json()
    assert beyond["individual_appointments"] == [] and beyond["total_entries"] == len(expected)


def test_per_page_defaults_to_50_and_is_capped_at_100(cliniko_simulator, cliniko_session):
    url = f"{cliniko_simulator.api_url}/individual_appointments"
    assert len(cliniko_session.get(url).json()["individual_appointments"]) == 50
    capped = cliniko_session.get(url, params={"per_page": 500}).json()
    assert len(capped["individual_appointments"]) == 100
    assert "per_page=100" in capped["links"]["next"]
    assert cliniko_session.get(url, params={"per_page": "lots"}).status_code == 400


def test_default_order_is_created_at_and_sort_is_honoured(cliniko_simulator, cliniko_session):
    url = f"{cliniko_simulator.api_url}/patients"
    created = [p["created_at"] for p in walk(cliniko_session, url, {"per_page": 100})]
    assert created == sorted(created)
    by_id = [int(p["id"]) for p in walk(cliniko_session, url, {"per_page": 100, "sort": "id:desc"})]
    assert by_id == sorted(by_id, reverse=True)
    updated = [p["updated_at"] for p in walk(cliniko_session, url, {"sort": "updated_at", "order": "desc"})]
    assert updated == sorted(updated, reverse=True)
    assert cliniko_session.get(url, params={"sort": "city"}).status_code == 400


def test_record_links_point_at_the_simulator(cliniko_simulator, cliniko_session):
    appointment = cliniko_session.get(f"{cliniko_simulator.api_url}/individual_appointments").json()[
        "individual_appointments"][0]
    for relation in ("patient", "practitioner", "business", "appointment_type"):
        url = appointment[relation]["links"]["self"]
        assert url.startswith(cliniko_simulator.api_url)
    patient = cliniko_session.get(appointment["patient"]["links"]["self"], params={"q[]": "archived_at:*"})
    assert patient.status_code == 200 and appointment["patient"]["links"]["self"].endswith(patient.json()["id"])


# --- filters --------------------------------------------------------------------------------
def _pivot(values: list[str]) -> str:
    return sorted(values)[len(values) // 2]


def _filter_cases(data: dict[str, list[dict]]) -> dict[str, tuple[str, list[str], Callable[[dict], bool], bool]]:
    """name -> (resource, q[] filters, expected predicate, whether the result may be empty)."""
    appointments, patients, invoices = data["individual_appointments"], data["patients"], data["invoices"]
    t = _pivot([a["updated_at"] for a in appointments])
    s = _pivot([a["starts_at"] for a in appointments])
    first, second = appointments[3], appointments[len(appointments) // 2]
    patient = next(p for p in patients if p["email"])
    name, domain = patient["first_name"], patient["email"].split("@")[1]
    invoice = invoices[len(invoices) // 2]
    type_id = data["businesses"][0]["appointment_type_ids"][0]
    archived_type = next(t["id"] for t in data["appointment_types"] if t["archived_at"])
    return {
        "datetime >=": ("individual_appointments", [f"updated_at:>={t}"], lambda r: r["updated_at"] >= t, False),
        "datetime >": ("individual_appointments", [f"updated_at:>{t}"], lambda r: r["updated_at"] > t, False),
        "datetime <=": ("individual_appointments", [f"updated_at:<={t}"], lambda r: r["updated_at"] <= t, False),
        "datetime <": ("individual_appointments", [f"created_at:<{t}"], lambda r: r["created_at"] < t, False),
        "datetime fraction": ("individual_appointments", [f"updated_at:>={t[:-1]}.5Z"],
                              lambda r: r["updated_at"] > t, False),
        "datetime range (AND)": ("individual_appointments", [f"starts_at:>={s}", f"updated_at:<{t}"],
                                 lambda r: r["starts_at"] >= s and r["updated_at"] < t, False),
        "datetime ?": ("individual_appointments", ["cancelled_at:?"], lambda r: bool(r["cancelled_at"]), False),
        "datetime !?": ("individual_appointments", ["cancelled_at:!?"], lambda r: not r["cancelled_at"], False),
        "datetime *": ("individual_appointments", ["cancelled_at:*"], lambda r: True, False),
        "numeric = list": ("individual_appointments", [f"id:={first['id']},{second['id']}"],
                           lambda r: r["id"] in (first["id"], second["id"]), False),
        "numeric !=": ("individual_appointments", [f"id:!={first['id']}"], lambda r: r["id"] != first["id"], False),
        "numeric >": ("individual_appointments", [f"id:>{second['id']}"],
                      lambda r: int(r["id"]) > int(second["id"]), False),
        "numeric <=": ("individual_appointments", [f"id:<={second['id']}"],
                       lambda r: int(r["id"]) <= int(second["id"]), False),
        "link id =": ("individual_appointments", [f"patient_id:={patient['id']}"],
                      lambda r: r["patient"]["links"]["self"].endswith("/" + patient["id"]), False),
        "link id ? (none repeat)": ("individual_appointments", ["repeated_from_id:?"], lambda r: False, True),
        "integer >=": ("invoices", [f"number:>={invoice['number']}"], lambda r: r["number"] >= invoice["number"], False),
        "integer = status": ("invoices", ["status:=20"], lambda r: r["status"] == 20, False),
        "date <": ("invoices", [f"issue_date:<{invoice['issue_date']}"],
                   lambda r: r["issue_date"] < invoice["issue_date"], False),
        "date wildcard": ("patients", ["date_of_birth:=****-05-**"],
                          lambda r: bool(r["date_of_birth"]) and r["date_of_birth"][5:7] == "05", False),
        "date !?": ("patients", ["date_of_birth:!?"], lambda r: not r["date_of_birth"], False),
        "string =": ("patients", [f"first_name:={name}"], lambda r: r["first_name"] == name, False),
        "string !=": ("patients", [f"first_name:!={name}"], lambda r: r["first_name"] != name, False),
        "string ~ (any case)": ("patients", [f"email:~{domain.upper()}"],
                                lambda r: domain in (r["email"] or "").lower(), False),
        "string ~~": ("patients", [f"email:~~%@{domain}"], lambda r: (r["email"] or "").lower().endswith("@" + domain), False),
        "string ?": ("patients", ["preferred_first_name:?"], lambda r: bool(r["preferred_first_name"]), False),
        "boolean =": ("appointment_types", ["show_in_online_bookings:=true"],
                      lambda r: r["show_in_online_bookings"], False),
        "boolean !=": ("appointment_types", ["show_in_online_bookings:!=true"],
                       lambda r: not r["show_in_online_bookings"], False),
        # One business in this clinic: it offers every live type and not the archived one.
        "array ~": ("businesses", [f"appointment_type_ids:~{type_id}"], lambda r: True, True),
        "array ~ (absent)": ("businesses", [f"appointment_type_ids:~{archived_type}"], lambda r: False, True),
    }


FILTER_NAMES = [
    "datetime >=", "datetime >", "datetime <=", "datetime <", "datetime fraction", "datetime range (AND)",
    "datetime ?", "datetime !?", "datetime *", "numeric = list", "numeric !=", "numeric >", "numeric <=",
    "link id =", "link id ? (none repeat)", "integer >=", "integer = status", "date <", "date wildcard",
    "date !?", "string =", "string !=", "string ~ (any case)", "string ~~", "string ?", "boolean =",
    "boolean !=", "array ~", "array ~ (absent)",
]


@pytest.mark.parametrize("case", FILTER_NAMES)
def test_filter_operator(cliniko_simulator, cliniko_session, case):
    sim = cliniko_simulator
    data = {name: stored(sim, name) for name in
            ("individual_appointments", "patients", "invoices", "businesses", "appointment_types")}
    cases = _filter_cases(data)
    assert set(cases) == set(FILTER_NAMES)
    resource, filters, predicate, may_be_empty = cases[case]
    filtered = {f.split(":", 1)[0] for f in filters}
    expected = {r["id"] for r in data[resource] if visible(resource, r, filtered) and predicate(r)}
    got = ids(walk(cliniko_session, f"{sim.api_url}/{resource}", {"q[]": filters, "per_page": 100}))
    assert got == expected
    if case == "array ~":
        assert len(got) == len(data["businesses"])
    if not may_be_empty:
        assert 0 < len(expected) < len(data[resource]), "the case must separate rows"


def test_legacy_q_parameter_and_operator_checks(cliniko_simulator, cliniko_session):
    url = f"{cliniko_simulator.api_url}/individual_appointments"
    everything = cliniko_session.get(url, params={"q[]": "cancelled_at:*"}).json()["total_entries"]
    assert cliniko_session.get(url, params={"q": "cancelled_at:*"}).json()["total_entries"] == everything
    for bad in ("updated_at:=2026-01-01T00:00:00Z", "updated_at:>yesterday", "id:~5", "cancelled_at:*x", "starts_at"):
        response = cliniko_session.get(url, params={"q[]": bad})
        assert response.status_code == 400, bad
        assert set(response.json()) == {"message"}


def test_unsupported_filter_is_400_not_searchable(cliniko_simulator, cliniko_session):
    expected = json.loads((EXAMPLES / "error_400_filter_not_searchable__GET_v1_patients_deleted.json").read_text())
    api = cliniko_simulator.api_url
    for url, query in [
        (f"{api}/patients/deleted", "updated_at:>2018-05-14T14:00:08Z"),  # issue #231, verbatim
        (f"{api}/patients", "deleted_at:*"),  # /patients has no deleted_at filter
        (f"{api}/practitioners", "archived_at:*"),
        (f"{api}/individual_appointments", "city:=Melbourne"),
    ]:
        response = cliniko_session.get(url, params={"q[]": query})
        assert response.status_code == 400
        assert response.json() == expected


# --- archived, cancelled, deleted -----------------------------------------------------------
def test_cancelled_deleted_archived_appointments_are_hidden_by_default_and_reachable(cliniko_simulator,
                                                                                   cliniko_session):
    sim, url = cliniko_simulator, f"{cliniko_simulator.api_url}/individual_appointments"
    rows = stored(sim, "individual_appointments")
    cancelled = {r["id"] for r in rows if r["cancelled_at"] and not r["archived_at"] and not r["deleted_at"]}
    deleted = {r["id"] for r in rows if r["deleted_at"]}
    archived = {r["id"] for r in rows if r["archived_at"]}
    assert cancelled and deleted and archived
    main = ids(walk(cliniko_session, url, {"per_page": 100}))
    assert not main & (cancelled | deleted | archived)
    assert ids(walk(cliniko_session, f"{url}/cancelled", {"per_page": 100})) == cancelled
    assert ids(walk(cliniko_session, f"{url}/deleted", {"per_page": 100}, key="individual_appointments")) == deleted
    assert ids(walk(cliniko_session, url, {"q[]": "deleted_at:?", "per_page": 100})) == deleted
    everything = ids(walk(cliniko_session, url, {"q[]": EVERYTHING["individual_appointments"], "per_page": 100}))
    assert everything == {r["id"] for r in rows}
    hidden_id = next(iter(cancelled))
    assert cliniko_session.get(f"{url}/{hidden_id}").status_code == 404
    assert cliniko_session.get(f"{url}/{hidden_id}", params={"q[]": "cancelled_at:*"}).json()["id"] == hidden_id


def test_archived_patients_and_inactive_practitioners(cliniko_simulator, cliniko_session):
    sim, api = cliniko_simulator, cliniko_simulator.api_url
    archived = {p["id"] for p in stored(sim, "patients") if p["archived_at"]}
    assert archived
    assert not ids(walk(cliniko_session, f"{api}/patients")) & archived
    assert ids(walk(cliniko_session, f"{api}/patients/archived")) == archived
    assert ids(walk(cliniko_session, f"{api}/patients", {"q[]": "archived_at:?"})) == archived
    one = next(iter(archived))
    assert cliniko_session.get(f"{api}/patients/{one}").status_code == 404
    assert cliniko_session.get(f"{api}/patients/{one}", params={"q[]": "archived_at:*"}).status_code == 200
    active = {p["id"] for p in stored(sim, "practitioners") if p["active"]}
    inactive = {p["id"] for p in stored(sim, "practitioners") if not p["active"]}
    assert active and inactive
    assert ids(walk(cliniko_session, f"{api}/practitioners")) == active
    assert ids(walk(cliniko_session, f"{api}/practitioners/inactive")) == inactive
    assert cliniko_session.get(f"{api}/practitioners/{next(iter(inactive))}").status_code == 200
    archived_types = ids(walk(cliniko_session, f"{api}/appointment_types/archived"))
    assert archived_types and not archived_types & ids(walk(cliniko_session, f"{api}/appointment_types"))
    prices = walk(cliniko_session, f"{api}/billable_items", {"q[]": "archived_at:*"})
    assert len(prices) == len(stored(sim, "billable_items")) and all(item["price"] for item in prices)


# --- rate limit -----------------------------------------------------------------------------
def test_rate_limit_answers_429_with_reset_then_recovers(cliniko_simulator):
    sim = cliniko_simulator
    # One second into the next minute-window: its reset is ~a minute ahead of real time.
    now = [math.floor(time.time() / 60) * 60 + 61]
    sim.set_rate_limit(3, window_seconds=60, clock=lambda: now[0])
    session = simulator_session(sim)
    url = f"{sim.api_url}/businesses"
    assert [session.get(url).status_code for _ in range(3)] == [200, 200, 200]
    throttled = session.get(url)
    assert throttled.status_code == 429
    assert int(throttled.headers["X-RateLimit-Reset"]) > time.time()
    assert "Retry-After" not in throttled.headers
    # Another key of the same user shares the budget; another user has their own.
    bare = simulator_session(sim)
    bare.auth = (sim.api_key.rsplit("-", 1)[0], "")
    assert bare.get(url).status_code == 429
    sim.add_api_key("second-user-key-au2", user="someone-else")
    other = simulator_session(sim)
    other.auth = ("second-user-key-au2", "")
    assert other.get(url).status_code == 200
    now[0] += 60
    assert session.get(url).status_code == 200
    stats = sim.stats.snapshot()
    assert stats["rate_limited"] == 2 and stats["by_status"]["429"] == 2
    assert stats["by_route"]["/v1/businesses"] == stats["requests"] == 7


def test_rate_limit_over_a_real_short_window(cliniko_simulator_factory):
    sim = cliniko_simulator_factory(rate_limit=2, window_seconds=0.5)
    session = simulator_session(sim)
    url = f"{sim.api_url}/businesses"
    session.get(f"{sim.api_url}/nowhere")  # open the connection first
    time.sleep(0.5 - time.time() % 0.5 + 0.01)  # start of a window
    assert [session.get(url).status_code for _ in range(3)] == [200, 200, 429]
    time.sleep(0.5 - time.time() % 0.5 + 0.01)
    assert session.get(url).status_code == 200


# --- faults ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("kind", "outcome"), [
    ("reset", requests.exceptions.ConnectionError),
    ("timeout", requests.exceptions.Timeout),
    ("incomplete", requests.exceptions.ChunkedEncodingError),
    ("truncated", (200, "application/json")),
    ("html", (200, "text/html")),
    ("502", (502, "text/html")),
    ("503", (503, "text/html")),
    ("500", (500, "application/json")),
    ("429", (429, "text/plain")),
])
def test_fault_as_the_client_sees_it(cliniko_simulator_factory, kind, outcome):
    sim = cliniko_simulator_factory(faults=FaultPlan(timeout_seconds=1.0))
    session = simulator_session(sim)
    url = f"{sim.api_url}/patients"
    sim.faults.queue(kind)
    if isinstance(outcome, type):
        with pytest.raises(outcome):
            session.get(url, timeout=0.3).content  # noqa: B018 - reading the body raises
    else:
        response = session.get(url, timeout=2)
        assert (response.status_code, response.headers["Content-Type"].split(";")[0]) == outcome
        if kind in ("truncated", "html", "502", "503"):
            with pytest.raises(requests.exceptions.JSONDecodeError):
                response.json()
        if kind == "429":
            assert int(response.headers["X-RateLimit-Reset"]) >= int(time.time())
    assert session.get(url, timeout=2).status_code == 200  # one fault, then back to normal
    assert sim.faults.injected == {kind: 1}


def test_random_faults_are_deterministic_per_seed_and_set_over_http(cliniko_simulator):
    sim = cliniko_simulator
    session = simulator_session(sim)
    plan = {"rates": {"500": 0.3, "502": 0.2, "html": 0.1}, "seed": 5}

    def run() -> list[int]:
        assert requests.post(f"{sim.base_url}/__sim/faults", json=plan).status_code == 200
        return [session.get(f"{sim.api_url}/businesses").status_code for _ in range(40)]

    first, second = run(), run()
    assert first == second
    assert {500, 502, 200} <= set(first)
    assert requests.post(f"{sim.base_url}/__sim/faults", json={"clear": True}).json()["rates"] == {}
    assert {session.get(f"{sim.api_url}/businesses").status_code for _ in range(10)} == {200}
    with pytest.raises(ValueError):
        FaultPlan(rates={"500": 0.8, "502": 0.5})


# --- data changes between syncs -------------------------------------------------------------
@pytest.fixture
def changing(cliniko_simulator_factory):
    """A simulator whose clock stands after all generated data, and a session on it."""
    sim = cliniko_simulator_factory(clock=SimClock(LATER), rate_limit=0)
    return sim, simulator_session(sim)


def changed(session: requests.Session, sim: ClinikoSimulator, resource: str, *extra: str) -> set[str]:
    return ids(walk(session, f"{sim.api_url}/{resource}", {"q[]": [f"updated_at:>={W}", *extra]}))


def test_new_and_edited_records_show_up_after_the_cursor(changing):
    sim, session = changing
    assert changed(session, sim, "patients") == set() == changed(session, sim, "individual_appointments")
    patient = sim.store.add_patient(first_name="Newly", last_name="Added")
    booking = sim.store.add_appointment(patient["id"], starts_at="2027-01-05T00:00:00Z")
    old = sim.store.ids("patients")[0]
    sim.clock.advance(5)
    sim.store.edit("patients", old, first_name="Renamed")
    assert changed(session, sim, "patients") == {patient["id"], old}
    assert changed(session, sim, "individual_appointments") == {booking["id"]}
    fetched = session.get(booking["links"]["self"]).json()
    assert fetched["starts_at"] == "2027-01-05T00:00:00Z" and fetched["created_at"] == W
    assert session.get(fetched["patient"]["links"]["self"]).json()["first_name"] == "Newly"
    renamed = session.get(f"{sim.api_url}/patients/{old}", params={"q[]": "archived_at:*"}).json()
    assert renamed["first_name"] == "Renamed" and renamed["updated_at"] == "2027-01-01T00:00:05Z"


def test_cancelled_and_archived_records_show_up_through_their_state_filters(changing):
    sim, session = changing
    appointment = sorted(sim.store.ids("individual_appointments"))[-1]
    if sim.store.record("individual_appointments", appointment)["cancelled_at"]:
        appointment = sim.store.add_appointment(sim.store.ids("patients")[0])["id"]
        sim.clock.advance(1)
    patient = next(p["id"] for p in stored(sim, "patients") if not p["archived_at"])
    sim.store.cancel_appointment(appointment, reason=30, note="Flu")
    sim.store.archive("patients", patient)
    # Gone from the plain incremental query, found with the state filters.
    assert appointment not in changed(session, sim, "individual_appointments")
    assert appointment in changed(session, sim, "individual_appointments", "cancelled_at:*")
    assert patient not in changed(session, sim, "patients")
    assert ids(walk(session, f"{sim.api_url}/patients", {"q[]": f"archived_at:>={W}"})) == {patient}
    record = session.get(f"{sim.api_url}/individual_appointments/{appointment}",
                         params={"q[]": "cancelled_at:*"}).json()
    assert (record["cancellation_reason"], record["cancellation_reason_description"]) == (30, "Sick")
    with pytest.raises(MutationError):
        sim.store.cancel_appointment(appointment)  # one-way


def test_soft_deleted_records_leave_the_listing_and_show_on_deleted(changing):
    sim, session = changing
    appointment = next(a["id"] for a in stored(sim, "individual_appointments")
                       if visible("individual_appointments", a))
    cancelled = next(a["id"] for a in stored(sim, "individual_appointments")
                     if a["cancelled_at"] and not a["deleted_at"] and not a["archived_at"])
    patient = sim.store.ids("patients")[1]
    sim.store.soft_delete("individual_appointments", appointment)
    sim.store.soft_delete("individual_appointments", cancelled)
    sim.store.soft_delete("patients", patient)
    api = sim.api_url
    assert appointment not in ids(walk(session, f"{api}/individual_appointments", {"per_page": 100}))
    assert changed(session, sim, "individual_appointments", "deleted_at:*") == {appointment}
    assert changed(session, sim, "individual_appointments", "deleted_at:*", "cancelled_at:*") == {
        appointment, cancelled}
    # The deleted route lists every deleted row, cancelled or not.
    deleted = walk(session, f"{api}/individual_appointments/deleted", {"q[]": f"deleted_at:>={W}"},
                   key="individual_appointments")
    assert ids(deleted) == {appointment, cancelled}
    stubs = walk(session, f"{api}/patients/deleted", {"q[]": f"deleted_at:>={W}"})
    assert stubs == [{"deleted_at": W, "links": {"self": f"{api}/patients/{patient}"}}]


def test_merged_patient_is_archived_with_a_link_and_its_bookings_move(changing):
    sim, session = changing
    patients = [p for p in stored(sim, "patients") if not p["archived_at"]]
    rows = stored(sim, "individual_appointments")
    loser = next(p for p in patients if any(a["patient"]["links"]["self"] == p["links"]["self"] for a in rows))
    keeper = next(p for p in patients if p["id"] != loser["id"])
    theirs = {a["id"] for a in rows if a["patient"]["links"]["self"] == loser["links"]["self"]}
    result = sim.store.merge_patients(loser["id"], keeper["id"])
    assert result["moved"]["individual_appointments"] == len(theirs)
    merged = walk(session, f"{sim.api_url}/patients", {"q[]": [f"updated_at:>={W}", "archived_at:*"]})
    by_id = {p["id"]: p for p in merged}
    assert set(by_id) == {loser["id"], keeper["id"]}
    assert by_id[loser["id"]]["merged_at"] == by_id[loser["id"]]["archived_at"] == W
    assert by_id[loser["id"]]["merged_with_patient"]["links"]["self"] == f"{sim.api_url}/patients/{keeper['id']}"
    moved = walk(session, f"{sim.api_url}/individual_appointments",
                 {"q[]": [f"updated_at:>={W}", *EVERYTHING["individual_appointments"]]})
    assert ids(moved) == theirs
    assert {a["patient"]["links"]["self"] for a in moved} == {keeper["links"]["self"]}


def test_hard_deleted_records_vanish_without_a_trace(changing):
    sim, session = changing
    patient = sim.store.ids("patients")[2]

    def owned(resource: str) -> set[str]:
        return {r["id"] for r in stored(sim, resource) if r["patient"]["links"]["self"].endswith("/" + patient)}

    appointments, invoices = owned("individual_appointments"), owned("invoices")
    assert appointments
    assert sim.store.hard_delete("patients", patient) == 1 + len(appointments) + len(invoices)
    api = sim.api_url
    for resource, gone in (("patients", {patient}), ("individual_appointments", appointments),
                           ("invoices", invoices)):
        everything = ids(walk(session, f"{api}/{resource}", {"q[]": EVERYTHING[resource], "per_page": 100}))
        assert everything and not everything & gone
        assert changed(session, sim, resource, *EVERYTHING[resource]) == set()
    assert session.get(f"{api}/patients/{patient}", params={"q[]": "archived_at:*"}).status_code == 404
    assert walk(session, f"{api}/patients/deleted") == []
    listed_deleted = ids(walk(session, f"{api}/individual_appointments/deleted", key="individual_appointments"))
    assert not listed_deleted & appointments


def test_state_changes_can_leave_updated_at_alone(cliniko_simulator_factory):
    sim = cliniko_simulator_factory(clock=SimClock(LATER), stamp_state_changes=False)
    session = simulator_session(sim)
    patient = next(p for p in stored(sim, "patients") if not p["archived_at"])
    sim.store.archive("patients", patient["id"])
    assert changed(session, sim, "patients", "archived_at:*") == set()
    assert ids(walk(session, f"{sim.api_url}/patients", {"q[]": f"archived_at:>={W}"})) == {patient["id"]}


def test_changes_and_clock_over_the_control_endpoint(changing):
    sim, session = changing
    control = f"{sim.base_url}/__sim"
    assert requests.post(f"{control}/clock", json={"advance": 60}).json()["now"] == "2027-01-01T00:01:00Z"
    made = requests.post(f"{control}/mutations", json={"op": "add_patient", "first_name": "Via"}).json()["result"]
    appointment = next(a["id"] for a in stored(sim, "individual_appointments")
                       if visible("individual_appointments", a))
    cancelled = requests.post(f"{control}/mutations", json={"op": "cancel_appointment",
                                                          "appointment_id": appointment})
    assert cancelled.status_code == 200 and cancelled.json()["result"]["cancelled_at"] == "2027-01-01T00:01:00Z"
    again = requests.post(f"{control}/mutations", json={"op": "cancel_appointment", "appointment_id": appointment})
    assert again.status_code == 400
    missing = requests.post(f"{control}/mutations", json={"op": "archive", "resource": "patients", "record_id": "9"})
    assert missing.status_code == 404
    assert changed(session, sim, "patients") == {made["id"]}
    assert requests.get(f"{control}/stats").json()["requests"] >= 1
    assert requests.get(f"{control}/records/patients/{made['id']}").json()["first_name"] == "Via"


# --- the reference examples -----------------------------------------------------------------
def _documented_fields() -> dict[str, set[str]]:
    spec = json.loads((REFERENCE / "openapi-2023-10.json").read_text())
    schemas = spec["components"]["schemas"]

    def fields(name: str) -> set[str]:
        found: set[str] = set()
        stack = [schemas[name]]
        while stack:
            schema = stack.pop()
            if "$ref" in schema:
                stack.append(schemas[schema["$ref"].rsplit("/", 1)[-1]])
            for combinator in ("allOf", "anyOf", "oneOf"):
                stack.extend(schema.get(combinator, []))
            found |= set(schema.get("properties", {}))
        return found

    return {resource: fields(schema) for resource, schema in [
        ("patients", "Patient"), ("individual_appointments", "IndividualAppointment"), ("invoices", "Invoice"),
        ("appointment_types", "AppointmentType"), ("practitioners", "Practitioner"), ("businesses", "Business"),
    ]}


def _json_type(value: Any) -> str:
    return type(value).__name__


def assert_same_shape(example: dict, served: dict, documented: set[str]) -> None:
    extra = set(served) - set(example)
    assert extra <= documented, f"undocumented keys {extra - documented}"
    for key in set(example) - set(served):
        # Only link objects may be absent (the reference: "a link object may be absent").
        assert key in documented and isinstance(example[key], dict) and "links" in example[key], key
    for key in set(example) & set(served):
        ours, theirs = served[key], example[key]
        if ours is None or theirs in (None, ""):
            continue  # nullable; old examples write "" for null timestamps
        if key == "id":
            assert isinstance(ours, str) and ours.isdigit()  # stale examples show integer ids
            continue
        assert _json_type(ours) == _json_type(theirs), f"{key}: {ours!r} vs {theirs!r}"
        if isinstance(theirs, dict) and "links" in theirs:
            assert isinstance(ours["links"]["self"], str)


EXAMPLE_ROUTES = {
    "patients__list__GET_v1_patients.json": ("patients", "/patients"),
    "patient__single__GET_v1_patients_id.json": ("patients", "/patients/{id}"),
    "patients__deleted__GET_v1_patients_deleted.json": ("patients", "/patients/deleted"),
    "individual_appointments__list__GET_v1_individual_appointments.json": (
        "individual_appointments", "/individual_appointments"),
    "individual_appointment__single__GET_v1_individual_appointments_id.json": (
        "individual_appointments", "/individual_appointments/{id}"),
    "individual_appointments__cancelled__GET_v1_individual_appointments_cancelled.json": (
        "individual_appointments", "/individual_appointments/cancelled"),
    "invoices__list__GET_v1_invoices.json": ("invoices", "/invoices"),
    "appointment_type__single__GET_v1_appointment_types_id.json": ("appointment_types", "/appointment_types/{id}"),
    "practitioner__single__GET_v1_practitioners_id.json": ("practitioners", "/practitioners/{id}"),
    "business__single__GET_v1_businesses_id.json": ("businesses", "/businesses/{id}"),
    # Not served: attendees and bookings (the generator makes neither); errors below.
    "attendee__single__GET_v1_attendees_id.json": (None, "/attendees/1"),
    "bookings__list__GET_v1_bookings.json": (None, "/bookings"),
    "error_400_filter_not_searchable__GET_v1_patients_deleted.json": (
        None, "/patients/deleted?q[]=updated_at:>2018-05-14T14:00:08Z"),
    "error_422_validation__POST_v1_patients.json": (None, "/patients"),
}


def test_every_example_is_mapped():
    assert {path.name for path in EXAMPLES.glob("*.json")} == set(EXAMPLE_ROUTES)


@pytest.mark.parametrize("name", sorted(EXAMPLE_ROUTES))
def test_served_records_have_the_shape_of_the_reference_examples(cliniko_simulator, cliniko_session, name):
    sim, (resource, route) = cliniko_simulator, EXAMPLE_ROUTES[name]
    example = json.loads((EXAMPLES / name).read_text())
    if name.startswith("error_422"):
        # Read-only simulator: a write is refused, in Cliniko's error shape.
        refused = cliniko_session.post(f"{sim.api_url}{route}", json={})
        assert refused.status_code == 405 and set(refused.json()) <= set(example)
        return
    if name.startswith("error_400"):
        assert cliniko_session.get(f"{sim.api_url}{route}").json() == example
        return
    if resource is None:
        assert cliniko_session.get(f"{sim.api_url}{route}").status_code == 404
        return
    if route == "/patients/deleted":
        sim.store.soft_delete("patients", sim.store.ids("patients")[0])
    documented = _documented_fields()[resource] | {"links"}
    if "{id}" in route:
        record_id = next(iter(ids(walk(cliniko_session, f"{sim.api_url}/{resource}"))))
        served = cliniko_session.get(f"{sim.api_url}{route.format(id=record_id)}").json()
        assert_same_shape(example, served, documented)
        return
    body = cliniko_session.get(f"{sim.api_url}{route}").json()
    assert set(body) == set(example) == {resource, "total_entries", "links"}
    assert isinstance(body["total_entries"], int) and body["total_entries"] >= len(body[resource]) > 0
    assert set(body["links"]) <= {"self", "next", "previous"} and "self" in body["links"]
    if route == "/patients/deleted":
        assert [set(item) for item in body[resource]] == [set(example[resource][0])]
        return
    for served in body[resource]:
        assert_same_shape(example[resource][0], served, documented)


# --- the command ----------------------------------------------------------------------------
def test_management_command_serves_until_interrupted():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "manage.py", "pms_simulator", "cliniko", "--port", str(port), "--patients", "50",
         "--seed", "3", "--rate-limit", "0", "--api-key", "cli-test-key-au1"],
        cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
        # Started as from a parent that ignores SIGINT (a background job; the full suite, once):
        # Ctrl-C must still stop it.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    try:
        lines = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(line.startswith("Press Ctrl-C") for line in lines):
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line.strip())
        announced = dict(line.split(": ", 1) for line in lines if line.startswith(("Base URL", "API key")))
        assert announced.get("Base URL") == f"http://127.0.0.1:{port}/v1", (lines, process.stderr.read())
        assert announced["API key"].strip() == "cli-test-key-au1"
        response = requests.get(f"{announced['Base URL']}/patients", auth=("cli-test-key-au1", ""),
                                headers={"User-Agent": USER_AGENT, "Accept": "application/json"}, timeout=5)
        assert response.status_code == 200 and response.json()["total_entries"] > 0
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    assert process.returncode == 0
    assert "Served 1 requests" in process.stdout.read()
