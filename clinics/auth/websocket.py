"""Authentication and authorization for WebSocket consumers.

Browsers cannot set headers on `new WebSocket(...)`, so a Clerk token arrives as the
subprotocol `bearer.<token>` beside the application protocol `routiq.v1` (the server accepts
with `routiq.v1` only, never echoing the token), or as the first message for clients that
cannot use subprotocols. Staff pages use the Django session from the scope.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from channels.db import database_sync_to_async

from clinics.auth.roles import role_allows
from clinics.auth.tokens import verify_session_token
from clinics.models import ORG_ID_RE, Membership, Organization, Role
from clinics.rls import tenant_scope
from routiq.api.errors import ApiError, TokenExpired

APP_PROTOCOL = "routiq.v1"
TOKEN_PROTOCOL_PREFIX = "bearer."

# Close codes (4000-4999 are the application's): documented in the README.
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_TOKEN_EXPIRED = 4419
CLOSE_NOT_FOUND = 4404


class SocketRefused(Exception):
    def __init__(self, close_code: int, reason: str) -> None:
        super().__init__(reason)
        self.close_code = close_code
        self.reason = reason


@dataclass(frozen=True)
class SocketAccess:
    org_id: str
    role: str
    user_label: str
    token_expires_at: int | None  # for in-band refresh before Clerk's 60 s tokens lapse


def token_from_subprotocols(scope: dict[str, Any]) -> str | None:
    for protocol in scope.get("subprotocols") or []:
        if protocol.startswith(TOKEN_PROTOCOL_PREFIX):
            return protocol[len(TOKEN_PROTOCOL_PREFIX) :]
    return None


async def authorize_socket(
    scope: dict[str, Any], org_id: str, *, token: str | None = None, required: str = Role.READ_ONLY
) -> SocketAccess:
    """Who may open `org_id`'s stream: a valid token for that organization, or a member's session."""
    if not ORG_ID_RE.fullmatch(org_id or ""):
        raise SocketRefused(CLOSE_NOT_FOUND, "no such organization")
    token = token or token_from_subprotocols(scope)
    if token:
        return await _by_token(token, org_id, required)
    user = scope.get("user")
    if user is not None and user.is_authenticated:
        return await database_sync_to_async(_by_session)(user, org_id, required)
    raise SocketRefused(CLOSE_UNAUTHENTICATED, "authentication required")


async def _by_token(token: str, org_id: str, required: str) -> SocketAccess:
    from clinics.auth.authentication import _sync_user_and_membership

    try:
        claims = verify_session_token(token)
    except TokenExpired:
        raise SocketRefused(CLOSE_TOKEN_EXPIRED, "token expired") from None
    except ApiError as exc:
        raise SocketRefused(CLOSE_UNAUTHENTICATED, exc.message) from None
    if claims.org_id != org_id:
        raise SocketRefused(CLOSE_FORBIDDEN, "not your organization")
    if not await database_sync_to_async(Organization.objects.filter(pk=org_id).exists)():
        raise SocketRefused(CLOSE_NOT_FOUND, "no such organization")
    _, role = await database_sync_to_async(_sync_user_and_membership)(claims)
    _check_role(role, required)
    return SocketAccess(
        org_id=org_id, role=role, user_label=claims.user_id, token_expires_at=claims.expires_at
    )


def _by_session(user: Any, org_id: str, required: str) -> SocketAccess:
    if not Organization.objects.filter(pk=org_id).exists():
        raise SocketRefused(CLOSE_NOT_FOUND, "no such organization")
    with tenant_scope(org_id):
        membership = Membership.objects.for_org(org_id).filter(user=user).first()
    role = membership.role if membership else (Role.ADMIN if user.is_superuser else None)
    _check_role(role, required)
    return SocketAccess(org_id=org_id, role=role, user_label=user.get_username(), token_expires_at=None)


def _check_role(role: str | None, required: str) -> None:
    if role is None:
        raise SocketRefused(CLOSE_FORBIDDEN, "not a member of this organization")
    if not role_allows(role, required):
        raise SocketRefused(CLOSE_FORBIDDEN, f"needs the {required} role")
