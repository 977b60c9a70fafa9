"""Reads on tenants."""

from __future__ import annotations

import copy
import time
from datetime import datetime
from typing import Any

from django.db.models import QuerySet

from clinics.crypto import decrypt_credentials
from clinics.models import AuditEvent, Membership, Organization, PmsConnection
from clinics.rls import cross_tenant_scope
from routiq.api.pagination import search_filter


def organization_get(org_id: str) -> Organization:
    return Organization.objects.get(pk=org_id)


# --- the organization of an API request ------------------------------------------------------------
# Every organization-scoped request reads its organization, and organizations change seldom (an
# operator's edit): a process keeps each one it read for this long, and forgets one at once when
# it is saved or deleted in this process. An edit made in another process is seen within the time.
ORGANIZATION_MEMO_SECONDS = 5.0
ORGANIZATION_MEMO_LIMIT = 10_000
_organizations: dict[str, tuple[Organization, float]] = {}


def organization_for_request(org_id: str) -> Organization | None:
    """The organization `org_id`, or None; read at most every ORGANIZATION_MEMO_SECONDS per
    process. Each caller gets its own copy (a request may set attributes on its instance)."""
    now = time.monotonic()
    held = _organizations.get(org_id)
    if held is None or now - held[1] >= ORGANIZATION_MEMO_SECONDS:
        organization = Organization.objects.filter(pk=org_id).first()
        if organization is None:  # not memoised: one made in another process is found at once
            _organizations.pop(org_id, None)
            return None
        if len(_organizations) >= ORGANIZATION_MEMO_LIMIT:
            _organizations.clear()
        held = _organizations[org_id] = (organization, now)
    return copy.copy(held[0])


def organizations_forget(org_id: str | None = None) -> None:
    """Drop what organization_for_request holds: one organization, or (None) all of them."""
    if org_id is None:
        _organizations.clear()
    else:
        _organizations.pop(org_id, None)


def on_organization_changed(sender: Any, *, instance: Organization, **kwargs: Any) -> None:
    """`post_save` and `post_delete` receiver for Organization."""
    organizations_forget(instance.pk)


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
