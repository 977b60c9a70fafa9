"""DRF authentication: Clerk session tokens and organization API keys, both as Bearer."""

from __future__ import annotations

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


def _sync_user_and_membership(claims: SessionClaims) -> tuple[Any, str | None]:
    """The token is the truth about a Clerk user's organization role: mirror it locally."""
    user_model = get_user_model()
    role = normalise_role(claims.org_role, settings.CLERK_ROLE_MAP)
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
