"""Clerk session tokens: the negative suite, v1/v2 claims, role mapping, user sync."""

import base64
import json

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from clinics.models import Membership, Role
from conftest import OTHER_KEY, PUBLIC_PEM, make_claims, sign

pytestmark = pytest.mark.usefixtures("clerk_settings")


def org_url(org):
    return f"/api/v1/organizations/{org.pk}"


def assert_error(response, status, code):
    body = response.json()
    assert response.status_code == status, body
    assert body["success"] is False
    assert body["error"]["code"] == code
    assert body["error"]["request_id"] == response["X-Request-ID"]
    assert body["error"]["timestamp"].endswith("Z")
    return body


def test_valid_v2_token_reads_the_organization(world, api, token_for):
    response = api("GET", org_url(world.org_a), token_for(world.org_a))
    body = response.json()
    assert response.status_code == 200, body
    assert body["success"] is True and body["organization_id"] == world.org_a.pk
    assert body["organization"]["your_role"] == Role.ADMIN


def test_v1_token_claims_are_accepted(world, api):
    token = sign(make_claims(world.org_a.pk, role="org:member", version=1))
    response = api("GET", org_url(world.org_a), token)
    assert response.status_code == 200
    assert response.json()["organization"]["your_role"] == Role.STAFF


def _tampered(token):
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["o"]["rol"] = "admin"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


def _alg_none(org_id):
    return jwt.encode(make_claims(org_id), None, algorithm="none")


def _hmac_token(org_id):
    # The classic confusion attack: HMAC keyed with the (public) verification key.
    header = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT","kid":"ins_test"}').rstrip(b"=")
    payload = base64.urlsafe_b64encode(json.dumps(make_claims(org_id)).encode()).rstrip(b"=")
    import hashlib
    import hmac

    signing_input = header + b"." + payload
    signature = hmac.new(PUBLIC_PEM.encode(), signing_input, hashlib.sha256).digest()
    return (signing_input + b"." + base64.urlsafe_b64encode(signature).rstrip(b"=")).decode()


NEGATIVE = {
    "expired": (lambda org: sign(make_claims(org, iat=1000, nbf=1000, exp=2000)), "TOKEN_EXPIRED"),
    "not yet valid": (lambda org: sign(make_claims(org, nbf=4_000_000_000)), "TOKEN_INVALID"),
    "wrong issuer": (lambda org: sign(make_claims(org, iss="https://evil.example")), "TOKEN_INVALID"),
    "azp not allowed": (lambda org: sign(make_claims(org, azp="https://evil.example")), "TOKEN_INVALID"),
    "signed by another key": (lambda org: sign(make_claims(org), key=OTHER_KEY), "TOKEN_INVALID"),
    "alg none": (_alg_none, "TOKEN_INVALID"),
    "HS256 with the public key": (_hmac_token, "TOKEN_INVALID"),
    "tampered payload": (lambda org: _tampered(sign(make_claims(org, role="org:member"))), "TOKEN_INVALID"),
    "not a jwt": (lambda org: "definitely-not-a-token", "TOKEN_INVALID"),
    "missing subject": (lambda org: sign(make_claims(org, sub=None)), "TOKEN_INVALID"),
}


@pytest.mark.parametrize("case", sorted(NEGATIVE))
def test_negative_token_suite(world, api, case):
    build, code = NEGATIVE[case]
    response = api("GET", org_url(world.org_a), build(world.org_a.pk))
    assert_error(response, 401, code)
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_unknown_kid_is_refused(world, api, settings):
    settings.CLERK_JWT_KEY = ""  # only kid-addressed keys (JWKS) remain
    token = sign(make_claims(world.org_a.pk), headers={"kid": "ins_unknown"})
    assert_error(api("GET", org_url(world.org_a), token), 401, "TOKEN_INVALID")


def test_token_without_organization_claim_has_no_org_access(world, api):
    claims = make_claims(world.org_a.pk)
    del claims["o"]
    response = api("GET", org_url(world.org_a), sign(claims))
    assert_error(response, 403, "ORG_ACCESS_DENIED")


def test_no_credentials_and_bad_scheme(world, api, client):
    assert_error(api("GET", org_url(world.org_a)), 401, "AUTHENTICATION_REQUIRED")
    response = client.get(org_url(world.org_a), HTTP_AUTHORIZATION="Basic dXNlcjpwYXNz")
    assert_error(response, 401, "TOKEN_INVALID")


def test_leeway_accepts_a_token_expired_two_seconds_ago(world, api):
    import time

    now = int(time.time())
    token = sign(make_claims(world.org_a.pk, iat=now - 62, nbf=now - 62, exp=now - 2))
    assert api("GET", org_url(world.org_a), token).status_code == 200


def test_token_creates_user_and_mirrors_role(world, api, token_for):
    api("GET", org_url(world.org_a), token_for(world.org_a, role="org:member", user="user_new"))
    membership = Membership.objects.for_org(world.org_a).get(user__username="user_new")
    assert membership.role == Role.STAFF
    api("GET", org_url(world.org_a), token_for(world.org_a, role="org:admin", user="user_new"))
    membership.refresh_from_db()
    assert membership.role == Role.ADMIN


def test_unknown_role_gets_no_access_and_drops_membership(world, api, token_for):
    api("GET", org_url(world.org_a), token_for(world.org_a, role="org:member", user="user_new"))
    response = api("GET", org_url(world.org_a), token_for(world.org_a, role="org:intern", user="user_new"))
    assert_error(response, 403, "ORG_ACCESS_DENIED")
    assert not Membership.objects.for_org(world.org_a).filter(user__username="user_new").exists()


def test_configured_role_map(world, api, token_for, settings):
    settings.CLERK_ROLE_MAP = {"org:viewer": Role.READ_ONLY, "org:billing": Role.READ_ONLY}
    response = api("GET", org_url(world.org_a), token_for(world.org_a, role="org:billing"))
    assert response.json()["organization"]["your_role"] == Role.READ_ONLY


def test_jwks_is_fetched_by_kid_and_cached(world, api, settings, monkeypatch):
    from clinics.auth import tokens

    jwk = json.loads(
        jwt.algorithms.RSAAlgorithm.to_jwk(serialization.load_pem_public_key(PUBLIC_PEM.encode()))
    )
    jwk.update(kid="ins_jwks", use="sig", alg="RS256")
    calls = []

    class FakeResponse:
        def raise_for_status(self):
            return None

        def json(self):
            return {"keys": [jwk]}

    def fake_get(url, timeout):
        calls.append((url, timeout))
        return FakeResponse()

    monkeypatch.setattr(tokens.requests, "get", fake_get)
    settings.CLERK_JWT_KEY = ""
    settings.CLERK_JWKS_URL = "https://clerk.test.routiq.example/.well-known/jwks.json"
    token = sign(make_claims(world.org_a.pk), headers={"kid": "ins_jwks"})
    assert api("GET", org_url(world.org_a), token).status_code == 200
    assert api("GET", org_url(world.org_a), token).status_code == 200
    assert len(calls) == 1 and calls[0][1] == 5
    # An unknown kid triggers at most one refetch a minute.
    other = sign(make_claims(world.org_a.pk), headers={"kid": "ins_rotated"})
    assert api("GET", org_url(world.org_a), other).status_code == 401
    assert len(calls) == 1


def test_dev_token_from_mint_token(world, api, settings, tmp_path):
    import io

    from django.core.management import call_command

    settings.STATE_DIR = tmp_path
    settings.ROUTIQ_DEV_AUTH = True
    out = io.StringIO()
    call_command("mint_token", "--org", world.org_a.pk, "--role", "read_only", stdout=out)
    response = api("GET", org_url(world.org_a), out.getvalue().strip())
    assert response.status_code == 200, response.json()
    assert response.json()["organization"]["your_role"] == Role.READ_ONLY


def test_dev_tokens_refused_when_dev_auth_is_off(world, api, settings, tmp_path):
    from clinics.auth.tokens import mint_dev_token

    settings.STATE_DIR = tmp_path
    settings.ROUTIQ_DEV_AUTH = True
    token = mint_dev_token(user_id="user_dev", org_id=world.org_a.pk, role="admin")
    settings.ROUTIQ_DEV_AUTH = False
    assert_error(api("GET", org_url(world.org_a), token), 401, "TOKEN_INVALID")


def test_a_tokens_user_and_membership_are_mirrored_once_then_remembered(world, api, token_for):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from clinics.models import Membership

    token = token_for(world.org_a, role="org:member", user="user_newcomer")
    url = f"/api/v1/organizations/{world.org_a.pk}"
    with CaptureQueriesContext(connection) as first:
        assert api("GET", url, token).status_code == 200
    assert Membership.objects.filter(user__username="user_newcomer", role="staff").exists()
    with CaptureQueriesContext(connection) as second:
        assert api("GET", url, token).status_code == 200
    assert len(second.captured_queries) < len(first.captured_queries)
    # A new role in a new token is mirrored at once.
    promoted = token_for(world.org_a, role="org:admin", user="user_newcomer")
    assert api("GET", url, promoted).json()["organization"]["your_role"] == "admin"
    assert Membership.objects.get(user__username="user_newcomer").role == "admin"


def test_a_verified_token_is_remembered_but_its_expiry_and_origin_still_count(world, api, settings, monkeypatch):
    import time

    from clinics.auth import tokens

    decoded = []
    real = tokens.jwt.decode
    monkeypatch.setattr(tokens.jwt, "decode", lambda *a, **k: decoded.append(1) or real(*a, **k))
    now = int(time.time())
    token = sign(make_claims(world.org_a.pk, iat=now - 10, nbf=now - 10, exp=now + 20))
    for _ in range(3):
        assert api("GET", org_url(world.org_a), token).status_code == 200
    assert len(decoded) == 1  # the signature was checked once

    # Past its expiry (and the leeway) the remembered token is refused like any other.
    monkeypatch.setattr(tokens.time, "time", lambda: now + 20 + tokens.LEEWAY_SECONDS + 1)
    assert_error(api("GET", org_url(world.org_a), token), 401, "TOKEN_EXPIRED")
    monkeypatch.undo()

    # Another configuration of authorized parties checks the token afresh (and refuses it here).
    settings.CLERK_AUTHORIZED_PARTIES = ["https://elsewhere.example"]
    assert_error(api("GET", org_url(world.org_a), token), 401, "TOKEN_INVALID")


def test_a_remembered_token_is_checked_afresh_after_a_while(world, api, monkeypatch):
    from clinics.auth import tokens

    decoded = []
    real = tokens.jwt.decode
    monkeypatch.setattr(tokens.jwt, "decode", lambda *a, **k: decoded.append(1) or real(*a, **k))
    clock = [1000.0]
    monkeypatch.setattr(tokens.time, "monotonic", lambda: clock[0])
    token = sign(make_claims(world.org_a.pk))
    assert api("GET", org_url(world.org_a), token).status_code == 200
    clock[0] += tokens.VERIFIED_SECONDS + 1
    assert api("GET", org_url(world.org_a), token).status_code == 200
    assert len(decoded) == 2
