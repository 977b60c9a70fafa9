"""The demo clinic: an organization, an admin login, and a generated clinic.

The quickstart (`bin/start`) serves the generated clinic from the Cliniko simulator and
imports it through a real sync (`demo_organization_ensure` + `demo_connection_ensure`);
`demo_clinic_ensure` loads it straight into the database instead (benchmarks, `demo_clinic`).
"""

from __future__ import annotations

import secrets
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.utils import timezone

from clinics import services as clinic_services
from clinics.models import Organization, PmsConnection, Role
from clinics.rls import tenant_scope
from clinics.tenancy import PmsKind
from patients.models import Patient
from sync.loader import LoadResult, synthetic_clinic_load
from sync.synthetic import ClinicSpec, generate_clinic

DEMO_ORG_ID = "org_RoutiqDemoPhysio01"
DEMO_ORG_NAME = "Routiq Demo Physio"


@dataclass
class DemoClinic:
    organization: Organization
    admin_username: str
    admin_password: str
    loaded: LoadResult | None  # None when the clinic was already there


def demo_clinic_ensure(
    *,
    org_id: str = DEMO_ORG_ID,
    name: str = DEMO_ORG_NAME,
    patients: int = 2000,
    seed: int = 1,
    time_zone: str = "Australia/Melbourne",
    today: date | None = None,
    reset: bool = False,
    admin_username: str = "admin",
    progress: Callable[[LoadResult], None] | None = None,
) -> DemoClinic:
    """Create the demo organization and its clinic, unless it is already loaded (idempotent)."""
    # The clinic's own "today", so future bookings are in its future whatever the server's zone.
    today = today or timezone.now().astimezone(zoneinfo.ZoneInfo(time_zone)).date()
    spec = ClinicSpec(seed=seed, patients=patients, time_zone=time_zone, today=today)
    clinic = generate_clinic(spec)  # validates the size before anything is written
    demo = demo_organization_ensure(
        org_id=org_id, name=name, time_zone=time_zone, reset=reset, admin_username=admin_username
    )
    with tenant_scope(org_id):
        if not Patient.objects.for_org(demo.organization).exists():
            demo.loaded = synthetic_clinic_load(demo.organization, clinic=clinic, progress=progress)
    return demo


def demo_organization_ensure(
    *,
    org_id: str = DEMO_ORG_ID,
    name: str = DEMO_ORG_NAME,
    time_zone: str = "Australia/Melbourne",
    reset: bool = False,
    admin_username: str = "admin",
) -> DemoClinic:
    """The demo organization and its admin login, with no clinic data (idempotent)."""
    with tenant_scope(org_id):
        organization = Organization.objects.filter(pk=org_id).first()
        if organization is not None and reset:
            organization.delete()
            organization = None
        if organization is None:
            organization = clinic_services.organization_create(
                org_id=org_id, name=name, time_zone=time_zone, currency="AUD", country="AU"
            )
        password = _admin_password()
        clinic_services.user_with_membership(
            organization, username=admin_username, password=password, role=Role.ADMIN, is_staff=True
        )
        get_user_model().objects.filter(username=admin_username).update(is_superuser=True)
    return DemoClinic(organization, admin_username, password, None)


def demo_connection_ensure(
    organization: Organization, *, base_url: str, api_key: str, rate_limit_per_minute: int
) -> PmsConnection:
    """Point the demo organization's Cliniko connection at a simulator."""
    with tenant_scope(organization):
        return clinic_services.pms_connection_set(
            organization,
            kind=PmsKind.CLINIKO,
            api_key=api_key,
            base_url=base_url,
            rate_limit_per_minute=rate_limit_per_minute,
        )


def _admin_password() -> str:
    """One password per install, kept beside the other generated secrets."""
    path = Path(settings.STATE_DIR) / "demo_admin_password"
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(12)
    path.write_text(password)
    path.chmod(0o600)
    return password
