"""Reads on tenants."""

from __future__ import annotations

from typing import Any

from clinics.crypto import decrypt_credentials
from clinics.models import Membership, Organization, PmsConnection


def organization_get(org_id: str) -> Organization:
    return Organization.objects.get(pk=org_id)


def organizations_for_user(user: Any) -> list[Organization]:
    org_ids = Membership.objects.filter(user=user).values("organization_id")
    return list(Organization.objects.filter(pk__in=org_ids))


def pms_connection_credentials(connection: PmsConnection) -> dict[str, Any]:
    """Decrypted credentials, for the PMS client only; never serialise or log the result."""
    return decrypt_credentials(connection.credentials_ciphertext)
