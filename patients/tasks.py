"""Background jobs of the patients app (django-q2)."""

from __future__ import annotations

from clinics.models import Organization
from patients.api.answers import answers_warm

WARM_TASK = "patients.tasks.answers_warm_task"


def answers_warm_task(organization_id: str) -> list[str]:
    """Compute a clinic's first answers ahead (a new organization's, before anyone asks)."""
    organization = Organization.objects.filter(pk=organization_id).first()
    return [] if organization is None else answers_warm(organization)
