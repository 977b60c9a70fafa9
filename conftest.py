"""The two-tenant world every test can stand on.

Org A has an admin and a staff member; org B has its own admin. Cross-tenant tests ask org
A's people for org B's things and expect nothing back.

`ROUTIQ_TEST_CLOCK` runs the tests at another moment, the clock ticking on from there: an ISO
instant (`2026-12-31T13:05:00Z`), or a wall time in a zone (`00:05 Australia/Sydney`: the next
one). CI runs the calendar-minded tests just after midnight in the clinics' zone this way, the
hour in which a fixture laid out as `now - timedelta(days=n)` lands on the wrong day.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from datetime import time as dt_time
from typing import Any
from zoneinfo import ZoneInfo

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.conf import settings
from model_bakery import baker

from clinics.models import Membership, Organization, Role

ORG_A_ID = "org_2xwHiNrj68eaRUlX10anlXGvzX7"
ORG_B_ID = "org_2yBqMfT93kLpZcVwXs4Rt8uNa1Q"


_CLOCK = pytest.StashKey[datetime]()  # the moment ROUTIQ_TEST_CLOCK started the run at


def clock_from(value: str, *, now: datetime | None = None) -> datetime:
    """The moment `ROUTIQ_TEST_CLOCK` names (see the module's docstring)."""
    value = value.strip()
    if " " not in value:
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is None:
            raise ValueError(f"ROUTIQ_TEST_CLOCK {value!r}: give the instant's offset, e.g. Z")
        return moment
    wall, zone = value.split(None, 1)
    tz, at = ZoneInfo(zone), dt_time.fromisoformat(wall)
    here = (now or datetime.now(UTC)).astimezone(tz)
    moment = datetime.combine(here.date(), at, tzinfo=tz)
    return moment if moment > here else datetime.combine(here.date() + timedelta(days=1), at, tzinfo=tz)


def pytest_configure(config: pytest.Config) -> None:
    value = os.environ.get("ROUTIQ_TEST_CLOCK")
    if value:
        import time_machine

        moment = clock_from(value)
        time_machine.travel(moment, tick=True).start()  # for the whole run; ends with the process
        config.stash[_CLOCK] = moment


def pytest_report_header(config: pytest.Config) -> str | None:
    moment = config.stash.get(_CLOCK, None)
    return None if moment is None else f"clock: started at {moment.isoformat()} (ROUTIQ_TEST_CLOCK)"


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


@pytest.fixture(scope="session")
def _app_role_exists(django_db_setup: None, django_db_blocker: Any) -> str:
    """The application role on this server, created (committed: roles belong to the whole
    cluster) when a fresh cluster lacks it. Created inside a test's transaction instead, it was
    gone again at the rollback, and two test runs sharing the server raced over it."""
    import psycopg
    from django.db import connection

    from routiq.db_roles import APP_ROLE

    with django_db_blocker.unblock():
        db = connection.settings_dict
        with psycopg.connect(
            dbname=db["NAME"], user=db["USER"], host=db["HOST"], port=db["PORT"] or 5432, autocommit=True
        ) as conn:
            if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [APP_ROLE]).fetchone() is None:
                try:
                    conn.execute(f"CREATE ROLE {APP_ROLE} NOLOGIN NOSUPERUSER NOBYPASSRLS")
                except (psycopg.errors.DuplicateObject, psycopg.errors.UniqueViolation):
                    pass  # another run created it meanwhile
    return APP_ROLE


@pytest.fixture
def app_role(db: None, _app_role_exists: str) -> str:
    """The application role, granted the DML rights the product gives it; tests `SET ROLE` to
    it to run under row-level security."""
    from django.db import connection

    from routiq.db_roles import APP_ROLE

    with connection.cursor() as cursor:
        cursor.execute(f"GRANT USAGE ON SCHEMA public TO {APP_ROLE}")
        cursor.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {APP_ROLE}")
        cursor.execute(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {APP_ROLE}")
    return APP_ROLE


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


@pytest.fixture(autouse=True)
def _empty_cache(django_db_setup: None, django_db_blocker: Any) -> Iterator[None]:
    """Each test starts with an empty cache: cached answers (keyed by per-organization versions)
    must not outlive the data they were computed from. A test's rollback does not reach Redis,
    nor the database cache after a test that really committed."""
    from django.core.cache import caches

    with django_db_blocker.unblock():
        caches["default"].clear()
    yield


@pytest.fixture(autouse=True)
def _forget_mirrored_tokens(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test's database starts empty: so must the memory of which tokens were mirrored.
    A mirror is remembered for the test's length (in production a minute): on a loaded machine
    two requests of one test can lie a minute apart, and the second would mirror again."""
    from clinics.auth import authentication
    from clinics.auth.tokens import verified_tokens_forget

    monkeypatch.setattr(authentication, "MIRROR_SECONDS", 3600.0)
    authentication._MIRRORED.clear()
    verified_tokens_forget()
    yield
    authentication._MIRRORED.clear()
    verified_tokens_forget()


@pytest.fixture(autouse=True)
def _forget_organizations() -> Iterator[None]:
    """Organizations keep their ids from test to test, and a test's rollback sends no signal: a
    request's memoised organization (clinics.selectors) must not outlive its test."""
    from clinics.selectors import organizations_forget

    organizations_forget()
    yield
    organizations_forget()


@pytest.fixture(autouse=True)
def _forget_snapshots() -> Iterator[None]:
    """Organizations keep their ids from test to test: a live snapshot shared between clients
    for a moment (realtime.snapshot) must not be shared between tests."""
    from realtime.snapshot import snapshots_forget

    snapshots_forget()
    yield
    snapshots_forget()


_BOOKKEEPING = ("SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK TO SAVEPOINT")


def data_queries(captured: Any) -> list[str]:
    """The SQL a CaptureQueriesContext saw on data: without the database cache's own (the cache
    is PostgreSQL when no REDIS_URL is set, and how many queries a rate-limit count costs there
    depends on where the request falls in its window) and the savepoints around them, so both
    setups count alike."""
    return [
        query["sql"]
        for query in captured.captured_queries
        if '"routiq_cache"' not in query["sql"] and not query["sql"].startswith(_BOOKKEEPING)
    ]


@pytest.fixture(scope="session", autouse=True)
def _channel_layer_on_test_database(django_db_setup: None, django_db_blocker: Any) -> Iterator[None]:
    """The PostgreSQL channel layer connects on its own; point it at the test database, not the real one."""
    from channels.layers import channel_layers
    from django.db import connection

    layer = settings.CHANNEL_LAYERS["default"]
    if layer["BACKEND"] == "realtime.layers.PostgresChannelLayer":
        layer["CONFIG"]["database"]["NAME"] = connection.settings_dict["NAME"]
        channel_layers.backends.clear()
    yield
    # The layer closes its connections when their event loop ends; a loop that never ended
    # (or a subprocess killed mid-test) may leave sessions behind that would keep the test
    # database from being dropped.
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


# --- API tests: a Clerk-like instance key configured in settings, and a caller -------------
ISSUER = "https://clerk.test.routiq.example"
ORIGIN = "https://app.routiq.example"
_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
_OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PUBLIC_PEM = (
    _KEY.public_key()
    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    .decode()
)


def make_claims(org_id, role="org:admin", user="user_alice", version=2, **overrides):
    now = int(time.time())
    claims = {
        "sub": user,
        "sid": "sess_1",
        "iss": ISSUER,
        "iat": now,
        "nbf": now,
        "exp": now + 60,
        "azp": ORIGIN,
    }
    if version == 2:
        claims["o"] = {"id": org_id, "rol": role.removeprefix("org:"), "slg": "x"}
    else:
        claims.update(org_id=org_id, org_role=role)
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def sign(claims, key=_KEY, alg="RS256", headers=None):
    return jwt.encode(claims, key, algorithm=alg, headers=headers or {"kid": "ins_test"})


@pytest.fixture
def clerk_settings(settings):
    settings.CLERK_JWT_KEY = PUBLIC_PEM
    settings.CLERK_ISSUER = ISSUER
    settings.CLERK_AUTHORIZED_PARTIES = [ORIGIN]
    settings.CLERK_JWKS_URL = ""
    return settings


@pytest.fixture
def token_for(clerk_settings):
    def build(org, role="org:admin", user="user_alice", **overrides):
        org_id = org if isinstance(org, str) else org.pk
        return sign(make_claims(org_id, role=role, user=user, **overrides))

    return build


@pytest.fixture
def api(client):
    def call(method, path, token=None, **kwargs):
        headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
        headers.update(kwargs.pop("headers", {}))
        return getattr(client, method.lower())(path, content_type="application/json", **headers, **kwargs)

    return call


OTHER_KEY = _OTHER_KEY
