"""Background jobs of the patients app (django-q2)."""

from __future__ import annotations

from clinics.models import Organization
from patients.api.answers import answers_warm

WARM_TASK = "patients.tasks.answers_warm_task"


def answers_warm_task(organization_id: str) -> list[str]:
    """Compute a clinic's first answers ahead (a new organization's, before anyone asks)."""
    organization = Organization.objects.filter(pk=organization_id).first()
    return [] if organization is None else answers_warm(organization)


def profiles_refresh_task(organization_id: str) -> int:
    """Recompute every profile of a clinic whose settings changed, then its first answers; the
    number of profiles written."""
    from patients.profiles import profiles_refresh_all

    organization = Organization.objects.filter(pk=organization_id).first()
    if organization is None:
        return 0
    result = profiles_refresh_all(organization)
    answers_warm(organization)
    return result.patients
