"""Authorization, built from the URL configuration so every later endpoint is covered too."""

import re

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

from clinics.api.base import READ_METHODS, OrganizationScopedView
from clinics.auth.api_keys import api_key_create, api_key_revoke
from clinics.auth.roles import role_allows
from clinics.models import Role

CLERK_ROLE = {Role.ADMIN: "org:admin", Role.STAFF: "org:member", Role.READ_ONLY: "org:viewer"}


def _walk(patterns, prefix=""):
    for entry in patterns:
        if isinstance(entry, URLResolver):
            yield from _walk(entry.url_patterns, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern):
            yield prefix + str(entry.pattern), entry


def org_scoped_endpoints():
    """(path template, view class, method) for every organization-scoped API endpoint."""
    found = []
    for route, pattern in _walk(get_resolver().url_patterns):
        view_class = getattr(pattern.callback, "view_class", None)
        if view_class is None or not issubclass(view_class, OrganizationScopedView):
            continue
        for method in ("get", "post", "put", "patch", "delete"):
            if hasattr(view_class, method):
                found.append((route, view_class, method.upper()))
    assert found, "no organization-scoped endpoints found"
    return found


ENDPOINTS = org_scoped_endpoints()


def fill(route, org_id):
    path = re.sub(r"<str:org_id>", org_id, route)
    path = re.sub(r"<[^>]+>", "1", path)  # other ids: any well-formed value
    return "/" + path


def call(api, method, path, token):
    return api(method, path, token, data={} if method != "GET" else None)


@pytest.mark.parametrize(("route", "view", "method"), ENDPOINTS, ids=[f"{m} {r}" for r, _, m in ENDPOINTS])
def test_cross_tenant_token_is_refused_on_every_endpoint(world, api, token_for, route, view, method):
    token = token_for(world.org_a, role="org:admin")  # org A's admin
    response = call(api, method, fill(route, world.org_b.pk), token)
    assert response.status_code in (403, 404), response.content
    assert response.json()["error"]["code"] in {"ORG_ACCESS_DENIED", "NOT_FOUND"}


@pytest.mark.parametrize(("route", "view", "method"), ENDPOINTS, ids=[f"{m} {r}" for r, _, m in ENDPOINTS])
def test_cross_tenant_api_key_is_refused_on_every_endpoint(world, api, route, view, method):
    issued = api_key_create(world.org_a, name="integration", role=Role.ADMIN)
    response = call(api, method, fill(route, world.org_b.pk), issued.plaintext)
    assert response.status_code in (403, 404)
    assert response.json()["error"]["code"] in {"ORG_ACCESS_DENIED", "NOT_FOUND"}


@pytest.mark.parametrize(("route", "view", "method"), ENDPOINTS, ids=[f"{m} {r}" for r, _, m in ENDPOINTS])
def test_cross_tenant_session_is_refused_on_every_endpoint(world, client, route, view, method):
    client.force_login(world.admin_a)
    response = getattr(client, method.lower())(fill(route, world.org_b.pk), content_type="application/json")
    assert response.status_code in (403, 404)


@pytest.mark.parametrize(("route", "view", "method"), ENDPOINTS, ids=[f"{m} {r}" for r, _, m in ENDPOINTS])
def test_header_must_match_the_path(world, api, token_for, route, view, method):
    response = api(
        method,
        fill(route, world.org_a.pk),
        token_for(world.org_a),
        headers={"HTTP_X_ORGANIZATION_ID": world.org_b.pk},
    )
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "ORG_ACCESS_DENIED"


@pytest.mark.parametrize(("route", "view", "method"), ENDPOINTS, ids=[f"{m} {r}" for r, _, m in ENDPOINTS])
@pytest.mark.parametrize("role", [Role.READ_ONLY, Role.STAFF, Role.ADMIN])
def test_role_matrix(world, api, token_for, route, view, method, role):
    required = view.read_role if method in READ_METHODS else view.write_role
    response = call(api, method, fill(route, world.org_a.pk), token_for(world.org_a, role=CLERK_ROLE[role]))
    if role_allows(role, required):
        assert response.status_code not in (401, 403), response.content
    else:
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "PERMISSION_DENIED"


@pytest.mark.parametrize(
    "bad", ["not-an-org", "org_%27%3B--", "org_" + "x" * 80, "ORG_2xwHiNrj68eaRUlX10anlXGvzX7"]
)
def test_malformed_organization_ids_are_404(world, api, token_for, bad):
    response = api("GET", f"/api/v1/organizations/{bad}", token_for(world.org_a))
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NOT_FOUND"


def test_role_ranks():
    assert role_allows(Role.ADMIN, Role.STAFF) and role_allows(Role.STAFF, Role.READ_ONLY)
    assert not role_allows(Role.READ_ONLY, Role.STAFF) and not role_allows(Role.STAFF, Role.ADMIN)


def test_session_login_works_for_members(world, client):
    client.force_login(world.staff_a)
    response = client.get(f"/api/v1/organizations/{world.org_a.pk}")
    assert response.status_code == 200
    assert response.json()["organization"]["your_role"] == Role.STAFF


def test_organization_detail_never_shows_connection_secrets(world, api, token_for):
    from clinics.services import pms_connection_set

    pms_connection_set(world.org_a, kind="cliniko", api_key="MS0xLWFiY2RlZmdoaWprbG1u-au2")
    response = api("GET", f"/api/v1/organizations/{world.org_a.pk}", token_for(world.org_a))
    text = response.content.decode()
    assert response.json()["organization"]["connections"][0]["kind"] == "cliniko"
    assert "MS0xLWFiY2Rl" not in text and "credentials" not in text and "shard" not in text


def test_api_key_authenticates_with_its_role_and_can_be_revoked(world, api):
    issued = api_key_create(world.org_a, name="warehouse", role=Role.READ_ONLY)
    response = api("GET", f"/api/v1/organizations/{world.org_a.pk}", issued.plaintext)
    assert response.status_code == 200 and response.json()["organization"]["your_role"] == Role.READ_ONLY
    me = api("GET", "/api/v1/auth/me", issued.plaintext).json()["me"]
    assert me["authenticated_by"] == "api_key" and me["active_organization_id"] == world.org_a.pk
    api_key_revoke(issued.api_key)
    response = api("GET", f"/api/v1/organizations/{world.org_a.pk}", issued.plaintext)
    assert response.status_code == 401 and response.json()["error"]["code"] == "TOKEN_INVALID"


def test_api_key_is_stored_only_as_a_hash(world):
    issued = api_key_create(world.org_a, name="warehouse", role=Role.STAFF)
    secret = issued.plaintext.split("_", 2)[2]
    issued.api_key.refresh_from_db()
    assert secret not in issued.api_key.secret_hash and len(issued.api_key.secret_hash) == 64
    assert issued.plaintext.startswith(f"rq_{issued.api_key.prefix}_")


@pytest.mark.parametrize("presented", ["rq_deadbeef_wrongsecret", "rq_short_x", "rq_", "rq_deadbeef"])
def test_wrong_api_keys_are_refused(world, api, presented):
    api_key_create(world.org_a, name="real", role=Role.ADMIN)
    response = api("GET", f"/api/v1/organizations/{world.org_a.pk}", presented)
    assert response.status_code == 401


def test_me_lists_memberships_for_a_session_user(world, client):
    client.force_login(world.admin_a)
    me = client.get("/api/v1/auth/me").json()["me"]
    assert me["authenticated_by"] == "session"
    assert [m["organization_id"] for m in me["memberships"]] == [world.org_a.pk]


def test_refused_calls_do_not_spend_the_target_organizations_budget(world, api, token_for, monkeypatch):
    """Org A's admin hammering org B's sync trigger is refused every time and leaves org B's
    sync budget untouched."""
    from routiq.api.throttling import OrganizationRateThrottle

    spent = []
    monkeypatch.setattr(
        OrganizationRateThrottle, "allow_request", lambda self, request, view: spent.append(self.scope) or True
    )
    for _ in range(3):
        response = api("POST", f"/api/v1/cliniko/sync/{world.org_b.pk}", token_for(world.org_a), data={})
        assert response.status_code == 403
    assert spent == []
    api("GET", f"/api/v1/organizations/{world.org_a.pk}", token_for(world.org_a))
    assert spent == ["organization"]
