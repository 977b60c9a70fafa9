"""DRF authentication: Clerk session tokens and organization API keys, both as Bearer."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.request import Request

from clinics.auth.api_keys import api_key_authenticate, looks_like_api_key
from clinics.auth.roles import normalise_role
from clinics.auth.tokens import SessionClaims, verify_session_token
from clinics.models import ApiKey, Membership, Organization
from clinics.rls import tenant_scope
from routiq.api.errors import TokenInvalid


@dataclass(frozen=True)
class Principal:
    """Who is calling, and for which organization the credential itself speaks."""

    kind: str  # "token" | "api_key" | "session"
    label: str
    org_id: str | None = None
    role: str | None = None
    api_key: ApiKey | None = None
    claims: SessionClaims | None = None


class ApiKeyUser(AnonymousUser):
    """request.user for a machine client: authenticated, but no person behind it."""

    def __init__(self, api_key: ApiKey) -> None:
        super().__init__()
        self.api_key = api_key

    @property
    def is_authenticated(self) -> bool:  # type: ignore[override]
        return True

    def __str__(self) -> str:
        return f"api-key:{self.api_key.prefix}"


class BearerAuthentication(BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[Any, Principal] | None:
        header = get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        scheme, _, credential = header.partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            raise TokenInvalid("Send credentials as `Authorization: Bearer <token>`.")
        if looks_like_api_key(credential):
            api_key = api_key_authenticate(credential)
            if api_key is None:
                raise TokenInvalid("The API key is unknown or revoked.")
            principal = Principal(
                "api_key", f"api-key:{api_key.prefix}", api_key.organization_id, api_key.role, api_key=api_key
            )
            return ApiKeyUser(api_key), principal
        claims = verify_session_token(credential)
        user, role = _sync_user_and_membership(claims)
        return user, Principal("token", claims.user_id, claims.org_id, role, claims=claims)

    def authenticate_header(self, request: Request) -> str:
        # Makes DRF answer 401 (not 403) when credentials are missing or bad.
        return 'Bearer realm="routiq"'


# (user id, organization id, role) -> (local user pk, monotonic time mirrored). Per process: a
# token arrives every few seconds from every open browser tab, and the mirror only changes when
# the role in the token does, which makes a new key.
_MIRRORED: dict[tuple[str, str | None, str | None], tuple[int, float]] = {}
_MIRRORED_LOCK = threading.Lock()
MIRROR_SECONDS = 60.0
MIRROR_LIMIT = 10_000


def _sync_user_and_membership(claims: SessionClaims) -> tuple[Any, str | None]:
    """The token is the truth about a Clerk user's organization role: mirror it locally
    (remembered for a minute per process, so most requests cost no query here)."""
    user_model = get_user_model()
    role = normalise_role(claims.org_role, settings.CLERK_ROLE_MAP)
    key = (claims.user_id, claims.org_id, role)
    now = time.monotonic()
    with _MIRRORED_LOCK:
        known = _MIRRORED.get(key)
    if known is not None and now - known[1] < MIRROR_SECONDS:
        return user_model(pk=known[0], username=claims.user_id), role
    user, role = _mirror(claims, role)
    with _MIRRORED_LOCK:
        if len(_MIRRORED) >= MIRROR_LIMIT:
            _MIRRORED.clear()
        _MIRRORED[key] = (user.pk, now)
    return user, role


def _mirror(claims: SessionClaims, role: str | None) -> tuple[Any, str | None]:
    user_model = get_user_model()
    user, _ = user_model.objects.get_or_create(username=claims.user_id)
    if not claims.org_id or not Organization.objects.filter(pk=claims.org_id).exists():
        return user, role
    with tenant_scope(claims.org_id):
        current = Membership.objects.for_org(claims.org_id).filter(user=user).first()
        if role is None and current is not None:
            current.delete()
        elif role is not None and (current is None or current.role != role):
            Membership.objects.update_or_create(
                organization_id=claims.org_id, user=user, defaults={"role": role}
            )
    return user, role
