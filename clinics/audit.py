"""The audit log: one function writes it, for every write and every read of patient data."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.utils import timezone

from clinics.models import AuditEvent, Organization
from routiq.api.request_id import current_request_id


def audit_record(
    organization: Organization | str,
    *,
    actor: Any,
    action: str,
    object_type: str = "",
    object_id: str | int = "",
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Record who did `action`. `actor` is a request, a user, an ApiKey, or a label string.

    `details` must not carry personal data: patients are named by id only.
    """
    user, api_key, label = _actor(actor)
    return AuditEvent.objects.create(
        organization_id=organization if isinstance(organization, str) else organization.pk,
        actor_user=user,
        actor_api_key=api_key,
        actor_label=label[:150],
        action=action,
        object_type=object_type,
        object_id=str(object_id),
        request_id=current_request_id() if current_request_id() != "-" else "",
        details=details or {},
    )


def _actor(actor: Any) -> tuple[Any, Any, str]:
    from clinics.models import ApiKey

    principal = getattr(actor, "auth", None)
    if getattr(principal, "kind", None) == "api_key":
        return None, principal.api_key, f"api-key:{principal.api_key.prefix}"
    user = getattr(actor, "user", actor)
    if isinstance(user, ApiKey):
        return None, user, f"api-key:{user.prefix}"
    if isinstance(user, str):
        return None, None, user
    if getattr(user, "is_authenticated", False) and getattr(user, "pk", None):
        return user, None, user.get_username()
    return None, None, "system"


def audit_purge(organization: Organization, *, older_than_days: int) -> int:
    cutoff = timezone.now() - timedelta(days=older_than_days)
    deleted, _ = AuditEvent.objects.for_org(organization).filter(occurred_at__lt=cutoff).delete()
    return deleted
