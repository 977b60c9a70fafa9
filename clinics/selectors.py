"""Reads on tenants."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import QuerySet

from clinics.crypto import decrypt_credentials
from clinics.models import AuditEvent, Membership, Organization, PmsConnection
from clinics.rls import cross_tenant_scope
from routiq.api.pagination import search_filter


def organization_get(org_id: str) -> Organization:
    return Organization.objects.get(pk=org_id)


def user_membership_list(user: Any) -> list[Membership]:
    """A user's own memberships in every organization, with it, by organization name: the one
    read across tenants a signed-in person needs to see where they belong."""
    with cross_tenant_scope("a user's own memberships"):
        return list(
            Membership.objects.filter(user=user).select_related("organization").order_by("organization__name")
        )


def pms_connection_credentials(connection: PmsConnection) -> dict[str, Any]:
    """Decrypted credentials, for the PMS client only; never serialise or log the result."""
    return decrypt_credentials(connection.credentials_ciphertext)


def audit_event_list(
    organization: Organization,
    *,
    action: str | None = None,
    object_type: str | None = None,
    object_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    search: str | None = None,
) -> QuerySet[AuditEvent]:
    """The organization's audit events matching every filter given; `since` inclusive, `until` not."""
    events = AuditEvent.objects.for_org(organization)
    exact = {"action": action, "object_type": object_type, "object_id": object_id}
    events = events.filter(**{name: value for name, value in exact.items() if value is not None})
    if since is not None:
        events = events.filter(occurred_at__gte=since)
    if until is not None:
        events = events.filter(occurred_at__lt=until)
    return search_filter(events, search, ["actor_label", "action"])
