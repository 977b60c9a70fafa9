"""GET /organizations/{org_id}/audit-events: the first list endpoint, and the paging helpers."""

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from clinics.audit import audit_record
from clinics.models import AuditEvent
from conftest import data_queries

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def record(org, action, *, at, actor="alice", object_type="patient", object_id="1"):
    event = audit_record(org, actor=actor, action=action, object_type=object_type, object_id=object_id)
    AuditEvent.objects.filter(pk=event.pk).update(occurred_at=at)
    return event.pk


@pytest.fixture
def url(world):
    return f"/api/v1/organizations/{world.org_a.pk}/audit-events"


@pytest.fixture
def get(api, token_for, world, url):
    def call(params=None, *, role="org:admin", path=None):
        return api("GET", path or url, token_for(world.org_a, role=role), data=params or {})

    return call


REPORT = {"object_type": "report", "object_id": "7"}


@pytest.fixture
def events(world):
    ids = {
        "export": record(world.org_a, "patient.export", at=T0, object_id="11"),
        "anonymise": record(world.org_a, "patient.anonymise", at=T0 + timedelta(hours=1), object_id="12"),
        "purge": record(
            world.org_a, "retention.purge", at=T0 + timedelta(hours=2), object_type="", object_id=""
        ),
        "percent": record(
            world.org_a, "report.export", at=T0 + timedelta(hours=3), actor="ops 100% sure", **REPORT
        ),
        "underscore": record(
            world.org_a, "report.export", at=T0 + timedelta(hours=4), actor="ops_bot", **REPORT
        ),
        "plain": record(world.org_a, "report.export", at=T0 + timedelta(hours=5), actor="opsXbot", **REPORT),
    }
    record(world.org_b, "patient.export", at=T0 + timedelta(hours=6), actor="bob-admin", object_id="11")
    record(world.org_b, "report.export", at=T0 + timedelta(hours=7), actor="100% org b_user")
    return ids


def ids_of(response):
    assert response.status_code == 200, response.content
    return [item["id"] for item in response.json()["audit_events"]]


def test_lists_newest_first_in_the_list_envelope(get, world, events):
    body = get({"limit": 2, "offset": 1}).json()
    assert body["success"] is True and body["organization_id"] == world.org_a.pk
    assert (body["count"], body["total"], body["limit"], body["offset"]) == (2, 6, 2, 1)
    assert [item["id"] for item in body["audit_events"]] == [events["underscore"], events["percent"]]
    first = body["audit_events"][0]
    assert first["action"] == "report.export" and first["actor_label"] == "ops_bot"
    assert first["actor_kind"] == "system" and first["occurred_at"] == "2026-03-01T13:00:00Z"


def test_defaults_and_the_page_past_the_end(get, events):
    body = get().json()
    assert (body["count"], body["total"], body["limit"], body["offset"]) == (6, 6, 50, 0)
    beyond = get({"offset": 6}).json()
    assert (beyond["count"], beyond["total"], beyond["audit_events"]) == (0, 6, [])


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "201"}, "limit"),
        ({"limit": "x"}, "limit"),
        ({"limit": ""}, "limit"),
        ({"limit": "1_0"}, "limit"),
        ({"limit": "-5"}, "limit"),
        ({"offset": "-1"}, "offset"),
        ({"offset": "x"}, "offset"),
        ({"offset": "2.5"}, "offset"),
        ({"since": "yesterday"}, "since"),
        ({"until": ""}, "until"),
        ({"until": "2026-02-30T00:00:00Z"}, "until"),
        ({"since": "2026-03-01T09:00:00"}, "since"),  # no offset: ambiguous across time zones
        ({"search": "x" * 201}, "search"),
        ({"search": "a\x00b"}, "search"),
        ({"action": "y" * 65}, "action"),
    ],
)
def test_invalid_parameters_are_400_naming_the_parameter(get, events, params, name):
    response = get(params)
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert list(error["details"]) == [name]


def test_limit_bounds_are_inclusive(get, events):
    assert get({"limit": 1}).json()["count"] == 1
    assert get({"limit": 200}).json()["count"] == 6


def test_paging_through_equal_timestamps_sees_every_event_exactly_once(get, world):
    created = {record(world.org_a, "patient.export", at=T0, object_id=str(n)) for n in range(30)}
    seen = []
    for offset in range(0, 35, 7):
        body = get({"limit": 7, "offset": offset}).json()
        assert body["total"] == 30
        seen.extend(item["id"] for item in body["audit_events"])
    assert len(seen) == 30 and set(seen) == created
    assert seen == sorted(seen, reverse=True)  # the pk tiebreak, newest row first


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("%", ["percent"]),
        ("_", ["underscore"]),
        ("ops_", ["underscore"]),
        ("  OPS_BOT ", ["underscore"]),  # trimmed, any case
        ("ops", ["plain", "underscore", "percent"]),
        ("anonymise", ["anonymise"]),  # the action is searched too
        ("   ", ["plain", "underscore", "percent", "purge", "anonymise", "export"]),
    ],
)
def test_search_is_literal(get, events, text, expected):
    assert ids_of(get({"search": text})) == [events[name] for name in expected]


def test_filters(get, events):
    assert ids_of(get({"action": "patient.export"})) == [events["export"]]
    assert ids_of(get({"object_type": "patient"})) == [events["anonymise"], events["export"]]
    assert ids_of(get({"object_id": "12"})) == [events["anonymise"]]
    window = {"since": "2026-03-01T10:00:00Z", "until": "2026-03-01T22:00:00+10:00"}  # 10:00 to 12:00 UTC
    assert ids_of(get(window)) == [events["purge"], events["anonymise"]]
    assert ids_of(get({"since": "2026-03-01t14:00:00z"})) == [events["plain"]]
    combined = {"action": "report.export", "search": "%", "since": "2026-03-01T09:00:00Z"}
    assert ids_of(get(combined)) == [events["percent"]]


def test_another_tenants_events_never_appear(get, world, events):
    body = get({"limit": 200}).json()
    assert body["total"] == 6
    assert not {"bob-admin", "100% org b_user"} & {item["actor_label"] for item in body["audit_events"]}
    assert ids_of(get({"search": "%"})) == [events["percent"]]


def test_org_a_admin_asking_for_org_b_is_refused(get, world, events):
    response = get(path=f"/api/v1/organizations/{world.org_b.pk}/audit-events")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "ORG_ACCESS_DENIED"


@pytest.mark.parametrize("role", ["org:member", "org:viewer"])
def test_staff_and_read_only_are_refused(get, events, role):
    response = get(role=role)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "PERMISSION_DENIED"


def test_a_page_costs_the_same_queries_for_5_or_150_rows(get, world, api, token_for):
    from clinics.auth.api_keys import api_key_create
    from clinics.models import Role

    key = api_key_create(world.org_a, name="ci", role=Role.ADMIN)
    audit_record(world.org_a, actor=key.api_key, action="key.used")
    audit_record(world.org_a, actor=world.admin_a, action="login")
    get()  # mirror the token's user and membership first

    def queries_for(limit):
        with CaptureQueriesContext(connection) as queries:
            body = get({"limit": limit}).json()
        assert body["count"] == limit
        audit_queries = [q["sql"] for q in queries if "clinics_auditevent" in q["sql"]]
        assert len(audit_queries) == 2, audit_queries  # the total and the page, nothing per row
        return len(data_queries(queries))

    for n in range(150):
        record(world.org_a, "patient.export", at=T0, object_id=str(n))
    assert queries_for(5) == queries_for(150)
    kinds = {item["actor_kind"] for item in get({"limit": 200}).json()["audit_events"]}
    assert kinds == {"api_key", "user", "system"}
