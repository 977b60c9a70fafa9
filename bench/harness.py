"""What the benchmarks share: a fresh database per measurement, the Cliniko simulator and the
sync as separate processes (so each figure belongs to one process), and comparable snapshots
of an organization's synced rows.

The server is DATABASE_URL's, or the embedded one (started by importing the settings).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

REPO_ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
RESOURCE_ROUTES = {
    "location": ("/v1/businesses",),
    "practitioner": ("/v1/practitioners", "/v1/practitioners/inactive"),
    "appointment_type": ("/v1/appointment_types", "/v1/billable_items"),
    "patient": ("/v1/patients",),
    "appointment": ("/v1/individual_appointments",),
    "invoice": ("/v1/invoices",),
}
SIMULATOR_TABLES = {
    "location": "businesses",
    "practitioner": "practitioners",
    "appointment_type": "appointment_types",
    "patient": "patients",
    "appointment": "individual_appointments",
    "invoice": "invoices",
}


def server_settings() -> dict[str, str]:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "routiq.settings")
    # Creating and dropping benchmark databases needs the server's superuser (embedded mode).
    os.environ.setdefault("ROUTIQ_DB_ROLE", "superuser")
    sys.path.insert(0, str(REPO_ROOT))
    from django.conf import settings

    db = settings.DATABASES["default"]
    return {"USER": db["USER"], "HOST": str(db["HOST"]), "PORT": str(db["PORT"] or 5432)}


# This machine's PostgreSQL runs with autovacuum off (a production server, and the embedded one,
# have it on). Without it the tables stay as the dataset's build and profile refreshes left them:
# every full refresh leaves a dead row per patient and no page marked all-visible, so counting a
# clinic's profiles reads the whole table (about 50 ms) instead of its index (about 6 ms).
VACUUMED = ("patient_conversation_profile", "patients_patient", "patients_appointment", "patients_invoice")


def vacuum(database_url: str) -> None:
    """What autovacuum would have done after a bulk load or a full refresh (as the owner)."""
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as connection:
        for table in VACUUMED:
            connection.execute(f"VACUUM (ANALYZE) {table}")


def as_application_role(database_url: str, database: str) -> str:
    """`database_url` as the product connects (routiq.db_roles): the application role, neither
    owner nor superuser, so that every row-level security policy applies and costs what it
    costs in production (a superuser bypasses them). Provisioned here as the superuser."""
    import psycopg

    sys.path.insert(0, str(REPO_ROOT))
    from routiq import db_roles  # standard library only

    with psycopg.connect(database_url, autocommit=True) as connection:
        for statement in db_roles.cluster_sql(database=database) + db_roles.database_sql():
            connection.execute(statement)
    scheme, rest = database_url.split("://", 1)
    return f"{scheme}://{db_roles.APP_ROLE}@{rest.split('@', 1)[1]}"


def url(server: dict[str, str], name: str) -> str:
    host = quote(server["HOST"], safe="") if server["HOST"].startswith("/") else server["HOST"]
    return f"postgresql://{server['USER']}@{host}:{server['PORT']}/{name}"


def manage(*args: str, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "manage.py", *args], cwd=REPO_ROOT, env=env, check=check, capture_output=True, text=True
    )


@contextlib.contextmanager
def fresh_database(server: dict[str, str], name: str, *, keep: bool = False) -> Iterator[dict[str, str]]:
    """A new, migrated database; yields the environment that points a child process at it."""
    import psycopg

    admin = url(server, "postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    env = {**os.environ, "DATABASE_URL": url(server, name), "PYTHONUNBUFFERED": "1"}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    try:
        manage("migrate", "-v", "0", env=env)
        manage("createcachetable", env=env)
        yield env
    finally:
        if not keep:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Simulator:
    """`manage.py pms_simulator cliniko` in its own process, driven over its /__sim/ API."""

    def __init__(self, *, patients: int, seed: int = 1, rate_limit: int = 0, env: dict[str, str]) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        command = [
            PYTHON,
            "manage.py",
            "pms_simulator",
            "cliniko",
            "--port",
            str(self.port),
            "--patients",
            str(patients),
            "--seed",
            str(seed),
            "--rate-limit",
            str(rate_limit),
        ]
        started = time.perf_counter()
        self.process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, text=True)
        self.api_key = ""
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith("API key:"):
                self.api_key = line.split(":", 1)[1].strip()
                break
        while True:
            try:
                self.health = self.get("health")
                break
            except OSError:
                if self.process.poll() is not None:
                    raise RuntimeError("the simulator stopped") from None
                time.sleep(0.2)
        self.startup_seconds = time.perf_counter() - started

    def get(self, path: str) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.base_url}/__sim/{path}", timeout=60) as response:
            return json.loads(response.read())

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        request = urllib.request.Request(
            f"{self.base_url}/__sim/{path}",
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())

    def counts(self) -> dict[str, int]:
        return self.get("health")["counts"]

    def reset_stats(self) -> None:
        self.post("stats/reset", {})

    def requests_by_resource(self) -> dict[str, int]:
        routes = self.get("stats")["by_route"]
        return {
            resource: sum(routes.get(route, 0) for route in paths)
            for resource, paths in RESOURCE_ROUTES.items()
        }

    def minimum_requests(self) -> dict[str, int]:
        """ceil(records / 100) per resource: the least a complete listing can cost."""
        counts = self.counts()
        return {resource: max(1, -(-counts[table] // 100)) for resource, table in SIMULATOR_TABLES.items()}

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def __enter__(self) -> Simulator:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def connect_org(env: dict[str, str], org_id: str, sim: Simulator, *, rate_limit: int | None = None) -> None:
    manage("org_create", org_id, "--name", org_id, "--time-zone", "Australia/Melbourne", env=env)
    extra = ["--rate-limit", str(rate_limit)] if rate_limit else []
    manage(
        "pms_connect",
        org_id,
        "cliniko",
        "--api-key",
        sim.api_key,
        "--base-url",
        sim.base_url,
        "--sync-interval",
        "0",
        *extra,
        env=env,
    )


@dataclass
class SyncProcess:
    seconds: float
    peak_rss_mb: float
    returncode: int
    output: str


def start_sync(env: dict[str, str], org_id: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [PYTHON, "manage.py", "sync", org_id, "--inline", *args],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(process: subprocess.Popen[str], started: float) -> SyncProcess:
    """Wait for a sync process; its own wall time and peak resident memory (wait4)."""
    output = process.stdout.read() if process.stdout else ""
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return SyncProcess(time.perf_counter() - started, usage.ru_maxrss / 1024, process.returncode, output)


def run_sync(env: dict[str, str], org_id: str, *args: str) -> SyncProcess:
    started = time.perf_counter()
    result = finish(start_sync(env, org_id, *args), started)
    if result.returncode not in (0,):
        raise RuntimeError(f"sync failed ({result.returncode}):\n{result.output[-3000:]}")
    return result


def query(env: dict[str, str], sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(env["DATABASE_URL"]) as conn:
        return conn.execute(sql, params).fetchall()


def last_run(env: dict[str, str], org_id: str) -> dict[str, Any]:
    (row,) = query(
        env,
        "SELECT id, status, stats, pages, requests, rate_limited, retries, error_code,"
        " extract(epoch FROM finished_at - started_at) FROM sync_syncrun"
        " WHERE organization_id = %s ORDER BY id DESC LIMIT 1",
        (org_id,),
    )
    keys = ("id", "status", "stats", "pages", "requests", "rate_limited", "retries", "error_code", "seconds")
    return dict(zip(keys, row, strict=True))


_TABLES = {
    "clinics_location": (),
    "patients_practitioner": (),
    "patients_appointmenttype": (),
    "patients_patient": (),
    "patients_appointment": (
        ("patient_id", "patients_patient"),
        ("practitioner_id", "patients_practitioner"),
        ("appointment_type_id", "patients_appointmenttype"),
        ("location_id", "clinics_location"),
    ),
    "patients_invoice": (
        ("patient_id", "patients_patient"),
        ("appointment_id", "patients_appointment"),
        ("practitioner_id", "patients_practitioner"),
        ("location_id", "clinics_location"),
    ),
}
_SKIP = {"id", "organization_id", "last_synced_at"}


def snapshot(env: dict[str, str], org_id: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every synced row of the organization as values comparable across organizations: local
    ids and sync times left out, foreign keys as the PMS ids they point at."""
    result = {}
    for table, links in _TABLES.items():
        columns = [
            name
            for (name,) in query(
                env,
                "SELECT column_name FROM information_schema.columns WHERE table_name = %s"
                " ORDER BY column_name",
                (table,),
            )
            if name not in _SKIP and name not in dict(links)
        ]
        select = [f't."{c}"::text' for c in columns]
        joins = []
        for index, (fk, target) in enumerate(links):
            joins.append(f'LEFT JOIN "{target}" j{index} ON j{index}.id = t."{fk}"')
            select.append(f"j{index}.external_id")
        rows = query(
            env,
            f'SELECT {", ".join(select)} FROM "{table}" t {" ".join(joins)} WHERE t.organization_id = %s',
            (org_id,),
        )
        result[table] = sorted(rows, key=repr)
    return result


def compare(
    left: dict[str, list[tuple[Any, ...]]], right: dict[str, list[tuple[Any, ...]]]
) -> dict[str, Any]:
    tables = {}
    for table in left:
        a, b = left[table], right[table]
        tables[table] = {"rows": len(a), "other_rows": len(b), "equal": a == b}
    return {"identical": all(t["equal"] for t in tables.values()), "tables": tables}
