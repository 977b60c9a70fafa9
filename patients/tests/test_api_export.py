"""CSV export of a filtered profile list: the list's filters and order, streamed in chunks under
row-level security, staff only, audited, and safe to open in a spreadsheet."""

from __future__ import annotations

import csv
import io
import json
from typing import Any
from urllib.parse import quote

import pytest
from asgiref.sync import async_to_sync
from django.db import connection as db
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from clinics.models import AuditEvent
from conftest import data_queries
from patients import worklist
from patients.api import export
from patients.models import Patient, PatientProfile
from patients.tests.test_api_profiles import FRONTEND_FIELDS
from patients.tests.test_api_reengagement import build_clinic

pytestmark = pytest.mark.django_db


@pytest.fixture
def clinic(world: Any) -> dict[str, Any]:
    return build_clinic(world)


def export_url(org: Any, query: str = "") -> str:
    return f"/api/v1/reengagement/{org.pk}/patient-profiles/export{query}"


def content(response: Any) -> bytes:
    assert response.streaming, "the export must be streamed"
    return b"".join(response.streaming_content)


def table(raw: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(raw.decode("utf-8"))))


def staff(token_for: Any, world: Any) -> str:
    return token_for(world.org_a, role="org:member", user="user_sam")


def exported(api: Any, token: str, org: Any, query: str = "") -> list[dict[str, str]]:
    response = api("get", export_url(org, query), token)
    assert response.status_code == 200, getattr(response, "content", b"")
    return table(content(response))


def test_the_export_is_the_list_in_its_order(world, clinic, api, token_for):
    response = api("get", export_url(world.org_a), staff(token_for, world))
    assert response.status_code == 200 and response["Content-Type"] == "text/csv; charset=utf-8"
    day = timezone.now().astimezone(world.org_a.tzinfo).date().isoformat()
    assert response["Content-Disposition"] == (
        f'attachment; filename="routiq-patient-profiles-{world.org_a.pk}-{day}.csv"'
    )
    assert response["X-Row-Count"] == "32" and response["Cache-Control"] == "no-store"
    raw = content(response)
    header = raw.decode().splitlines()[0].split(",")
    assert header == export.COLUMNS and set(FRONTEND_FIELDS) <= set(header)
    rows = table(raw)
    listed = api(
        "get", f"/api/v1/reengagement/{world.org_a.pk}/patient-profiles?limit=200", token_for(world.org_a)
    )
    assert [int(r["patient_id"]) for r in rows] == [
        p["patient_id"] for p in listed.json()["patient_profiles"]
    ]
    critical = rows[0]
    assert (
        critical["churn_risk"] == "critical"
        and critical["risk_reasons"] == "no_future_booking;overdue;recent_dna"
    )
    assert critical["is_active"] == "true" and critical["next_appointment_time"] == ""
    assert critical["total_conversations"] == "0" and critical["currency"] == "AUD"


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("?churn_risk=critical", ["critical"]),
        ("?lifecycle_stage=never_converted", ["never"]),
        ("?has_upcoming=true", ["booked"]),
        (f"?search={quote('0412 345 678')}", ["jane"]),
        ("?search=jane&ordering=name", ["jane"]),
    ],
)
def test_the_lists_filters_apply(world, clinic, api, token_for, query, expected):
    rows = exported(api, staff(token_for, world), world.org_a, query)
    assert [int(r["patient_id"]) for r in rows] == [clinic[name].pk for name in expected]


@pytest.mark.parametrize(
    "query",
    [
        "ordering=name",
        "ordering=risk&churn_risk=high",
        "ordering=value&has_upcoming=false",
        "ordering=days_since_last_visit&lifecycle_stage=lapsing",
        "search=lee1&engagement_level=low_engagement",
        "search=%25",
    ],
)
def test_the_export_holds_what_the_list_holds_for_any_query(world, clinic, api, token_for, query):
    token = staff(token_for, world)
    listed = api("get", f"/api/v1/reengagement/{world.org_a.pk}/patient-profiles?limit=200&{query}", token)
    expected = [p["patient_id"] for p in listed.json()["patient_profiles"]]
    assert [int(r["patient_id"]) for r in exported(api, token, world.org_a, f"?{query}")] == expected


def test_orderings_and_practitioner_filter(world, clinic, api, token_for):
    token = staff(token_for, world)
    by_name = exported(api, token, world.org_a, "?ordering=name")
    assert [r["patient_name"] for r in by_name][:3] == ["Jane Citizen", "Bo Same", "Cris Same"]  # last names
    assert len(exported(api, token, world.org_a, f"?practitioner={clinic['practitioner'].pk}")) == 31
    assert exported(api, token, world.org_a, "?practitioner=999999") == []


@pytest.mark.parametrize("query", ["churn_risk=HIGH", "ordering=random", "has_upcoming=maybe", "location=x"])
def test_bad_parameters_are_the_lists_validation_errors(world, clinic, api, token_for, query):
    response = api("get", export_url(world.org_a, f"?{query}"), staff(token_for, world))
    assert response.status_code == 400 and response["Content-Type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR" and set(error["details"]) == {query.split("=")[0]}
    assert not AuditEvent.objects.filter(action=export.AUDIT_ACTION).exists()


def test_every_export_is_audited_without_personal_data(world, clinic, api, token_for):
    response = api("get", export_url(world.org_a, "?search=Citizen&churn_risk=high"), staff(token_for, world))
    assert len(table(content(response))) == 1
    event = AuditEvent.objects.for_org(world.org_a).get(action=export.AUDIT_ACTION)
    assert event.actor_label == "user_sam" and event.actor_user is not None
    assert event.request_id == response["X-Request-ID"] and event.object_type == "patient_profile"
    assert event.details == {
        "filters": {"churn_risk": "high"},
        "search": True,
        "ordering": "priority",
        "rows": 1,
        "format": "csv",
    }
    assert "Citizen" not in json.dumps(event.details)
    api("get", export_url(world.org_a), token_for(world.org_a))
    assert AuditEvent.objects.for_org(world.org_a).filter(action=export.AUDIT_ACTION).count() == 2


def test_read_only_members_may_not_export(world, clinic, api, token_for):
    viewer = token_for(world.org_a, role="org:viewer", user="user_viola")
    response = api("get", export_url(world.org_a), viewer)
    assert response.status_code == 403 and response.json()["error"]["code"] == "PERMISSION_DENIED"
    assert not AuditEvent.objects.filter(action=export.AUDIT_ACTION).exists()
    # The same member may read the list the export is made of.
    assert api("get", f"/api/v1/reengagement/{world.org_a.pk}/patient-profiles", viewer).status_code == 200


def test_admins_may_export(world, clinic, api, token_for):
    assert len(exported(api, token_for(world.org_a), world.org_a)) == 32


def test_without_credentials_or_for_another_tenant_nothing_is_exported(world, clinic, api, token_for):
    anonymous = api("get", export_url(world.org_a))
    assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "AUTHENTICATION_REQUIRED"
    foreign = api("get", export_url(world.org_b), staff(token_for, world))
    assert foreign.status_code == 403 and foreign.json()["error"]["code"] == "ORG_ACCESS_DENIED"
    mismatched = api(
        "get",
        export_url(world.org_a),
        staff(token_for, world),
        headers={"HTTP_X_ORGANIZATION_ID": world.org_b.pk},
    )
    assert mismatched.status_code == 403
    assert not AuditEvent.objects.filter(action=export.AUDIT_ACTION).exists()
    ours = {int(r["patient_id"]) for r in exported(api, staff(token_for, world), world.org_a)}
    assert clinic["other"].pk not in ours and ours == {p.pk for p in clinic["ours"]}
    theirs = exported(api, token_for(world.org_b, user="user_bob"), world.org_b)
    assert [int(r["patient_id"]) for r in theirs] == [clinic["other"].pk]


def test_an_accept_header_for_csv_still_gets_json_errors(world, clinic, api, token_for):
    response = api(
        "get",
        export_url(world.org_a, "?ordering=bad"),
        staff(token_for, world),
        headers={"HTTP_ACCEPT": "text/csv"},
    )
    assert response.status_code == 400 and response.json()["success"] is False
    ok = api("get", export_url(world.org_a), staff(token_for, world), headers={"HTTP_ACCEPT": "text/csv"})
    assert ok.status_code == 200 and len(table(content(ok))) == 32


def test_cells_that_a_spreadsheet_would_run_are_neutralised(world, clinic, api, token_for):
    Patient.objects.filter(pk=clinic["jane"].pk).update(
        first_name='=HYPERLINK("http://evil.example","x")', last_name="+cmd", email="@SUM(1+1)"
    )
    Patient.objects.filter(pk=clinic["never"].pk).update(
        first_name="-2+3", last_name="", email="\tx@example.com"
    )
    rows = {int(r["patient_id"]): r for r in exported(api, staff(token_for, world), world.org_a)}
    jane, never = rows[clinic["jane"].pk], rows[clinic["never"].pk]
    assert jane["patient_name"] == '\'=HYPERLINK("http://evil.example","x") +cmd'
    assert jane["email"] == "'@SUM(1+1)" and jane["phone"] == "'+61412345678"
    assert never["patient_name"] == "'-2+3" and never["email"] == "'\tx@example.com"
    for row in rows.values():
        for value in row.values():
            assert not value.startswith(export.FORMULA_PREFIXES), value


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        (None, ""),
        (True, "true"),
        (False, "false"),
        (0, 0),
        (1.5, 1.5),
        ("Ok", "Ok"),
        ("a=b", "a=b"),
        ("=1", "'=1"),
    ],
)
def test_csv_cell(value, cell):
    assert export.csv_cell(value) == cell


def test_the_rows_are_read_in_chunks(world, clinic, api, token_for, monkeypatch):
    """Queries grow with the chunks, not the rows: a chunk of profiles is one read."""
    token = staff(token_for, world)
    exported(api, token, world.org_a)  # the token's first use mirrors its user

    def stream_queries(chunk_rows: int) -> tuple[int, int]:
        monkeypatch.setattr(export, "CHUNK_ROWS", chunk_rows)
        response = api("get", export_url(world.org_a), token)
        with CaptureQueriesContext(db) as captured:
            pieces = list(response.streaming_content)
        return len(pieces), len(data_queries(captured))

    one_chunk, per_chunk = stream_queries(100)
    chunks, queries = stream_queries(8)
    assert one_chunk == 2 and chunks == 1 + 4  # the header, then 32 rows in fours of eight
    assert queries == 4 * per_chunk


def test_the_stream_sets_its_own_tenant_under_row_level_security(world, clinic, app_role):
    """The body is produced after the request's transaction: each chunk must open its own
    tenant scope, or the application role would see no rows at all."""
    ids = worklist.patient_profile_ids_list(
        world.org_a, filters=worklist.selectors.ProfileFilters(), ordering="priority"
    )
    with db.cursor() as cursor:
        cursor.execute(f"SET ROLE {app_role}")
        cursor.execute("SELECT set_config('app.org_id', '', true)")
    try:
        assert PatientProfile.objects.count() == 0  # no tenant, no rows: the wall is up
        rows = table(b"".join(export.csv_stream(world.org_a, ids, now=timezone.now())))
    finally:
        with db.cursor() as cursor:
            cursor.execute("RESET ROLE")
    assert [int(r["patient_id"]) for r in rows] == ids and len(ids) == 32


def test_the_async_stream_sends_the_same_bytes(world, clinic):
    ids = worklist.patient_profile_ids_list(
        world.org_a, filters=worklist.selectors.ProfileFilters(), ordering="risk"
    )
    now = timezone.now()

    async def collect() -> bytes:
        return b"".join([piece async for piece in export.csv_stream_async(world.org_a, ids, now=now)])

    assert async_to_sync(collect)() == b"".join(export.csv_stream(world.org_a, ids, now=now))


def test_a_patient_removed_meanwhile_is_left_out(world, clinic):
    ids = worklist.patient_profile_ids_list(
        world.org_a, filters=worklist.selectors.ProfileFilters(), ordering="priority"
    )
    Patient.objects.filter(pk=clinic["never"].pk).delete()
    rows = table(b"".join(export.csv_stream(world.org_a, ids, now=timezone.now())))
    assert len(rows) == 31 and clinic["never"].pk not in {int(r["patient_id"]) for r in rows}


def test_the_numeric_profile_path_still_routes(world, clinic, api, token_for):
    response = api(
        "get",
        f"/api/v1/reengagement/{world.org_a.pk}/patient-profiles/{clinic['jane'].pk}",
        token_for(world.org_a),
    )
    assert response.status_code == 200 and response.json()["profile"]["patient_id"] == clinic["jane"].pk


def test_under_asgi_the_body_is_an_async_stream(world, clinic, token_for):
    """Django would read a sync iterator whole before sending it under ASGI (production runs
    uvicorn): there the view streams from an async iterator instead."""
    from django.test import AsyncClient

    token = staff(token_for, world)

    async def fetch() -> tuple[Any, bytes]:
        response = await AsyncClient().get(
            export_url(world.org_a), headers={"Authorization": f"Bearer {token}"}
        )
        return response, b"".join([piece async for piece in response.streaming_content])

    response, raw = async_to_sync(fetch)()
    assert response.status_code == 200 and response.is_async
    assert [int(r["patient_id"]) for r in table(raw)] == worklist.patient_profile_ids_list(
        world.org_a, filters=worklist.selectors.ProfileFilters(), ordering="priority"
    )


def test_exports_have_their_own_budget_per_organization(world, clinic, api, token_for, monkeypatch):
    from routiq.api.throttling import ExportThrottle

    monkeypatch.setattr(
        ExportThrottle, "THROTTLE_RATES", {**ExportThrottle.THROTTLE_RATES, "export": "2/hour"}
    )
    token = staff(token_for, world)
    statuses = [api("get", export_url(world.org_a), token).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    limited = api("get", export_url(world.org_a), token)
    assert json.loads(limited.content)["error"]["code"] == "RATE_LIMITED"
    # The list itself is not limited by the export budget.
    assert api("get", f"/api/v1/reengagement/{world.org_a.pk}/patient-profiles", token).status_code == 200
