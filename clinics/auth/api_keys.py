"""Organization API keys: `rq_<prefix>_<secret>`, shown once, stored as a SHA-256 hash.

The secret carries 256 bits of randomness, so a fast hash is enough (no password stretching
needed) and lookups by prefix stay cheap on every request.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.utils import timezone

from clinics.models import ApiKey, Organization, Role
from clinics.rls import cross_tenant_scope

PREFIX_LENGTH = 8


@dataclass(frozen=True)
class IssuedKey:
    api_key: ApiKey
    plaintext: str  # shown once to the caller, never stored


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def api_key_create(organization: Organization, *, name: str, role: str, created_by: Any = None) -> IssuedKey:
    if role not in Role.values:
        raise ValidationError(f"role must be one of {', '.join(Role.values)}", code="invalid_role")
    if not name.strip():
        raise ValidationError("a key needs a name", code="required")
    prefix = secrets.token_hex(PREFIX_LENGTH // 2)
    secret = secrets.token_urlsafe(32)
    api_key = ApiKey.objects.create(
        organization=organization,
        name=name.strip(),
        prefix=prefix,
        secret_hash=_hash(secret),
        role=role,
        created_by=created_by,
    )
    return IssuedKey(api_key, f"rq_{prefix}_{secret}")


def api_key_revoke(api_key: ApiKey) -> ApiKey:
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at"])
    return api_key


def api_key_authenticate(presented: str) -> ApiKey | None:
    """The active key matching `presented`, or None. Constant-time on the secret."""
    parts = presented.split("_", 2)
    if len(parts) != 3 or parts[0] != "rq" or len(parts[1]) != PREFIX_LENGTH:
        return None
    # Cross-tenant by design: the key itself says which organization it belongs to.
    with cross_tenant_scope("find the organization of an API key"):
        api_key = ApiKey.objects.select_related("organization").filter(prefix=parts[1]).first()
        if api_key is None or not hmac.compare_digest(api_key.secret_hash, _hash(parts[2])):
            return None
        if api_key.revoked_at is not None:
            return None
        now = timezone.now()
        if api_key.last_used_at is None or (now - api_key.last_used_at).total_seconds() > 60:
            ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
    return api_key


def looks_like_api_key(value: str) -> bool:
    return value.startswith("rq_")
