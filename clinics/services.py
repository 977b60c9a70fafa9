"""Writes on tenants: organizations, memberships, PMS connections."""

from __future__ import annotations

import re
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import transaction

from clinics.crypto import encrypt_credentials
from clinics.models import (
    ConnectionStatus,
    Membership,
    Organization,
    PmsConnection,
    RetentionSettings,
    Role,
)
from clinics.tenancy import PmsKind

# Cliniko's own check of a key's suffix (reference §1.2): two letters and one or two digits. The
# shards known in 2025 are au1-au4, ca1, uk1, uk2 and eu1; the pattern also admits new ones.
CLINIKO_SHARD = re.compile(r"[a-z]{2}\d{1,2}", re.IGNORECASE)


def organization_create(
    *,
    org_id: str,
    name: str,
    time_zone: str = "Australia/Sydney",
    currency: str = "AUD",
    country: str = "AU",
    retention: dict[str, Any] | None = None,
) -> Organization:
    settings = RetentionSettings.from_json(retention)
    settings.validate()
    organization = Organization(
        id=org_id,
        name=name.strip(),
        time_zone=time_zone,
        currency=currency.upper(),
        country=country.upper(),
        retention_settings=settings.to_json(),
    )
    organization.full_clean()  # raises ValidationError, including for an existing id
    organization.save(force_insert=True)
    return organization


def organization_update_retention(organization: Organization, *, changes: dict[str, Any]) -> Organization:
    merged = {**organization.retention.to_json(), **changes}
    unknown = set(changes) - set(RetentionSettings().to_json())
    if unknown:
        raise ValidationError(f"unknown retention settings: {', '.join(sorted(unknown))}")
    settings = RetentionSettings.from_json(merged)
    settings.validate()
    organization.retention_settings = settings.to_json()
    organization.save(update_fields=["retention_settings", "updated_at"])
    return organization


def membership_set(organization: Organization, *, user: Any, role: str) -> Membership:
    if role not in Role.values:
        raise ValidationError(f"role must be one of {', '.join(Role.values)}", code="invalid_role")
    membership, _ = Membership.objects.update_or_create(
        organization=organization, user=user, defaults={"role": role}
    )
    return membership


def user_with_membership(
    organization: Organization, *, username: str, password: str, role: str, is_staff: bool = False
) -> Any:
    user_model = get_user_model()
    with transaction.atomic():
        user, _ = user_model.objects.get_or_create(username=username)
        user.set_password(password)
        user.is_staff = is_staff
        user.save()
        membership_set(organization, user=user, role=role)
    return user


def cliniko_shard(api_key: str) -> str:
    """Cliniko keys end in `-<shard>`; keys without a suffix belong to au1."""
    _, sep, suffix = api_key.rpartition("-")
    if not sep:
        return "au1"
    if not CLINIKO_SHARD.fullmatch(suffix):
        # Not echoed: whatever follows the last hyphen may be part of the secret.
        raise ValidationError(
            "the Cliniko API key must end in its shard, e.g. -au1 (two letters, one or two digits)",
            code="invalid_api_key",
        )
    return suffix.lower()


def pms_connection_set(
    organization: Organization,
    *,
    kind: str,
    api_key: str | None = None,
    base_url: str | None = None,
    sync_interval_minutes: int | None = None,
    rate_limit_per_minute: int | None = None,
) -> PmsConnection:
    """Create or update the organization's connection to one PMS (`None`: keep as is;
    `rate_limit_per_minute=0`: back to the PMS's default limit)."""
    if kind not in PmsKind.values:
        raise ValidationError(f"kind must be one of {', '.join(PmsKind.values)}", code="invalid_kind")
    connection = PmsConnection.objects.for_org(organization).filter(kind=kind).first()
    if connection is None:
        if not api_key:
            raise ValidationError("an API key is required for a new connection", code="required")
        connection = PmsConnection(organization=organization, kind=kind)
    if api_key is not None:
        _set_credentials(connection, api_key=api_key.strip())
    if base_url is not None:
        connection.base_url = base_url.strip()
    if sync_interval_minutes is not None:
        if not 0 <= sync_interval_minutes <= 7 * 24 * 60:
            raise ValidationError("sync_interval_minutes must be from 0 to 10080", code="invalid")
        connection.sync_interval_minutes = sync_interval_minutes
    if rate_limit_per_minute is not None:
        if not 0 <= rate_limit_per_minute <= 100_000:
            raise ValidationError("rate_limit_per_minute must be from 0 to 100000", code="invalid")
        connection.rate_limit_per_minute = rate_limit_per_minute or None
    connection.status = ConnectionStatus.ACTIVE
    connection.status_detail = ""
    connection.full_clean(exclude=["credentials_ciphertext"])
    connection.save()
    return connection


def _set_credentials(connection: PmsConnection, *, api_key: str) -> None:
    if not api_key or len(api_key) < 8 or any(c.isspace() for c in api_key):
        raise ValidationError("the API key looks malformed", code="invalid_api_key")
    hint = f"shard {cliniko_shard(api_key)}" if connection.kind == PmsKind.CLINIKO else ""
    connection.credentials_ciphertext = encrypt_credentials({"api_key": api_key})
    connection.credentials_hint = hint
