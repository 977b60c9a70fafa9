"""Shared lookups for the privacy commands."""

from __future__ import annotations

from django.core.management.base import CommandError

from clinics.models import Organization

ACTOR = "manage.py"


def organization_or_fail(org_id: str) -> Organization:
    organization = Organization.objects.filter(pk=org_id).first()
    if organization is None:
        raise CommandError(f"no organization {org_id!r}")
    return organization


def patient_id_or_fail(raw: str) -> int:
    if not raw.isdigit():
        raise CommandError(f"patient id must be a number, not {raw!r}")
    return int(raw)
