"""The shared API plumbing: envelope, error codes, request ids, throttling, CORS, OpenAPI."""

import io
import logging
from pathlib import Path

import pytest
from django.core.cache import cache
from django.core.management import call_command

from clinics.auth.tokens import mint_dev_token
from routiq.api.errors import ERROR_CODES

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def dev_token(world, settings, tmp_path):
    settings.STATE_DIR = tmp_path
    settings.ROUTIQ_DEV_AUTH = True
    return mint_dev_token(user_id="user_alice", org_id=world.org_a.pk, role="admin")


def test_request_id_is_generated_echoed_and_logged(world, client, dev_token, caplog):
    response = client.get(f"/api/v1/organizations/{world.org_a.pk}", HTTP_AUTHORIZATION=f"Bearer {dev_token}")
    generated = response["X-Request-ID"]
    assert len(generated) == 32
    response = client.get("/api/v1/auth/me", HTTP_X_REQUEST_ID="trace-1234abcd")
    assert response["X-Request-ID"] == "trace-1234abcd"
    assert response.json()["error"]["request_id"] == "trace-1234abcd"
    with caplog.at_level(logging.WARNING):
        client.get("/api/v1/auth/me", HTTP_X_REQUEST_ID="trace-5678efgh")
    assert any(getattr(r, "request_id", None) == "trace-5678efgh" for r in caplog.records)


def test_unsafe_incoming_request_ids_are_replaced(client):
    response = client.get("/health/live", HTTP_X_REQUEST_ID="<script>alert(1)</script>")
    assert response["X-Request-ID"] != "<script>alert(1)</script>" and len(response["X-Request-ID"]) == 32


def test_unknown_api_path_is_a_json_404(client):
    response = client.get("/api/v1/does/not/exist")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NOT_FOUND"


def test_method_not_allowed_is_enveloped(world, client, dev_token):
    response = client.delete(f"/api/v1/organizations/{world.org_a.pk}", HTTP_AUTHORIZATION=f"Bearer {dev_token}")
    assert response.status_code in (403, 405)
    assert response.json()["success"] is False


def test_unexpected_errors_are_500_with_no_internals(world, client, dev_token, monkeypatch):
    from clinics.api import views

    def explode(*args, **kwargs):
        raise RuntimeError("SELECT secret FROM pg_shadow -- boom")

    monkeypatch.setattr(views.OrganizationDetailSerializer, "to_representation", explode)
    response = client.get(f"/api/v1/organizations/{world.org_a.pk}", HTTP_AUTHORIZATION=f"Bearer {dev_token}")
    text = response.content.decode()
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "INTERNAL_ERROR"
    assert "pg_shadow" not in text and "Traceback" not in text and "RuntimeError" not in text


def test_throttle_answers_429_with_retry_after(world, client, dev_token, monkeypatch):
    from rest_framework.throttling import SimpleRateThrottle

    # monkeypatch puts the class's rates back; reassigning them by hand once leaked 3/min
    # into every later test.
    from routiq.api.throttling import WindowRateThrottle

    rates = {"caller": "3/min", "organization": "100/min", "sync_trigger": "1/min"}
    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", rates)
    # Mid-window: four calls in a row must not straddle a minute boundary.
    monkeypatch.setattr(WindowRateThrottle, "timer", lambda self: 1_800_000_010.0)
    cache.clear()
    url = f"/api/v1/organizations/{world.org_a.pk}"
    statuses = [client.get(url, HTTP_AUTHORIZATION=f"Bearer {dev_token}").status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    response = client.get(url, HTTP_AUTHORIZATION=f"Bearer {dev_token}")
    assert response.json()["error"]["code"] == "RATE_LIMITED"
    assert int(response["Retry-After"]) == 50  # the rest of the minute


def test_cors_allows_the_frontend_headers(client, settings):
    settings.CORS_ALLOWED_ORIGINS = ["https://app.routiq.example"]
    response = client.options(
        "/api/v1/auth/me",
        HTTP_ORIGIN="https://app.routiq.example",
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="GET",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization, x-organization-id",
    )
    assert response["Access-Control-Allow-Origin"] == "https://app.routiq.example"
    allowed = response["Access-Control-Allow-Headers"].lower()
    assert "authorization" in allowed and "x-organization-id" in allowed
    other = client.options("/api/v1/auth/me", HTTP_ORIGIN="https://evil.example", HTTP_ACCESS_CONTROL_REQUEST_METHOD="GET")
    assert "Access-Control-Allow-Origin" not in other


def test_openapi_schema_validates_with_warnings_as_errors():
    out = io.StringIO()
    call_command("spectacular", "--validate", "--fail-on-warn", stdout=out)
    schema = out.getvalue()
    assert "bearerAuth" in schema and "/api/v1/organizations/{org_id}" in schema
    assert "X-Organization-ID" in schema
    assert "ErrorEnvelope" in schema


def test_schema_and_docs_are_served(db, client):
    assert client.get("/api/schema/").status_code == 200
    assert client.get("/api/docs/").status_code == 200


def test_every_error_code_is_in_the_readme_table():
    readme = (ROOT / "README.md").read_text()
    for code, (status, _) in ERROR_CODES.items():
        assert f"| `{code}` | {status} |" in readme, code


@pytest.mark.parametrize("org_id", ["org_a%00b", "org_abcdefghijk%0A", "x" * 300])
@pytest.mark.parametrize("method", ["get", "post"])
def test_malformed_organization_ids_never_reach_the_database(world, client, dev_token, org_id, method):
    # The per-organization throttle once used the raw path id as a cache key: NUL was a 500.
    response = getattr(client, method)(
        f"/api/v1/organizations/{org_id}/audit-events", HTTP_AUTHORIZATION=f"Bearer {dev_token}"
    )
    assert response.status_code in (403, 404, 405)
    assert response.json()["success"] is False


def test_post_to_an_unknown_api_path_is_a_json_404_not_a_csrf_page(db):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.cookies["sessionid"] = "anything"
    response = client.post("/api/v1/privacy/x/patients/-1/anonymise")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NOT_FOUND"


def test_sync_trigger_limit_is_per_organization_and_tighter(world, monkeypatch):
    """Sync triggers share one tight budget per organization, whoever presses the button."""
    from django.contrib.auth.models import AnonymousUser
    from rest_framework.test import APIRequestFactory
    from rest_framework.throttling import SimpleRateThrottle

    from routiq.api.throttling import OrganizationRateThrottle, SyncTriggerThrottle

    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", {"caller": "100/min", "organization": "100/min", "sync_trigger": "2/hour"})
    cache.clear()

    class View:
        def __init__(self, org_id):
            self.kwargs = {"org_id": org_id}

    factory = APIRequestFactory()

    def allowed(throttle_class, org_id):
        request = factory.post("/")
        request.user = AnonymousUser()
        return throttle_class().allow_request(request, View(org_id))

    assert [allowed(SyncTriggerThrottle, world.org_a.pk) for _ in range(3)] == [True, True, False]
    assert allowed(SyncTriggerThrottle, world.org_b.pk) is True  # another clinic's budget
    assert allowed(OrganizationRateThrottle, world.org_a.pk) is True  # ordinary calls unaffected
    throttle = SyncTriggerThrottle()
    assert throttle.num_requests == 2 and throttle.duration == 3600
