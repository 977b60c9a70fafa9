"""The two-tenant world every test can stand on.

Org A has an admin and a staff member; org B has its own admin. Cross-tenant tests ask org
A's people for org B's things and expect nothing back.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.conf import settings
from model_bakery import baker

from clinics.models import Membership, Organization, Role

ORG_A_ID = "org_2xwHiNrj68eaRUlX10anlXGvzX7"
ORG_B_ID = "org_2yBqMfT93kLpZcVwXs4Rt8uNa1Q"


@dataclass
class TenantWorld:
    org_a: Organization
    org_b: Organization
    admin_a: Any
    staff_a: Any
    admin_b: Any


def database_url(name: str | None = None) -> str:
    """The server this test run uses (embedded or external) as a DATABASE_URL for a subprocess."""
    from urllib.parse import quote

    from django.db import connection

    db = connection.settings_dict
    host = quote(db["HOST"], safe="") if str(db["HOST"]).startswith("/") else db["HOST"]
    return f"postgresql://{db['USER']}@{host}:{db['PORT'] or 5432}/{db['NAME'] if name is None else name}"


@pytest.fixture
def world(db: None) -> TenantWorld:
    org_a = baker.make(
        Organization,
        id=ORG_A_ID,
        name="Harbour Physio",
        time_zone="Australia/Sydney",
        currency="AUD",
        country="AU",
    )
    org_b = baker.make(
        Organization,
        id=ORG_B_ID,
        name="Bayside Chiro",
        time_zone="Australia/Melbourne",
        currency="AUD",
        country="AU",
    )
    admin_a = baker.make(settings.AUTH_USER_MODEL, username="alice-admin")
    staff_a = baker.make(settings.AUTH_USER_MODEL, username="sam-staff")
    admin_b = baker.make(settings.AUTH_USER_MODEL, username="bob-admin")
    baker.make(Membership, organization=org_a, user=admin_a, role=Role.ADMIN)
    baker.make(Membership, organization=org_a, user=staff_a, role=Role.STAFF)
    baker.make(Membership, organization=org_b, user=admin_b, role=Role.ADMIN)
    return TenantWorld(org_a=org_a, org_b=org_b, admin_a=admin_a, staff_a=staff_a, admin_b=admin_b)


@pytest.fixture(scope="session", autouse=True)
def _channel_layer_on_test_database(django_db_setup: None, django_db_blocker: Any) -> Iterator[None]:
    """channels_postgres connects on its own; point it at the test database, not the real one."""
    from channels.layers import channel_layers
    from django.db import connection

    layer = settings.CHANNEL_LAYERS["default"]
    if layer["BACKEND"].startswith("channels_postgres"):
        layer["CONFIG"]["NAME"] = connection.settings_dict["NAME"]
        settings.DATABASES["channels_postgres"]["NAME"] = connection.settings_dict["NAME"]
        channel_layers.backends.clear()
    yield
    # Its async pool outlives the event loop that made it; close those sessions so the test
    # database can be dropped.
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
