"""Benchmark the patient-profile refresh on a 50,000-patient organization (issue 5's figures).

    python bench/bench_profiles.py                 # build the dataset, measure, drop it
    python bench/bench_profiles.py --keep          # keep the database for the API benchmarks
    python bench/bench_profiles.py --reuse         # measure on a kept database

The database holds one 50,000-patient organization (about a million appointments) and nine
2,000-patient ones, loaded with the bulk loader (COPY), on the configured server (DATABASE_URL,
else the embedded one). Each measurement runs in a child process against it: a full refresh
(the baseline and every profile), and incremental refreshes of 100 random patients, connected
as the application role (row-level security applies, as in production) after a vacuum (what
autovacuum does after a load: this machine's server has it off).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time

from harness import REPO_ROOT, as_application_role, server_settings, url, vacuum

DATABASE = "routiq_bench_analytics"
BIG_ORG = "org_BenchAnalyticsBig0001"
SMALL_ORGS = [f"org_BenchAnalyticsSmall{n:02d}" for n in range(1, 10)]


def _django() -> None:
    sys.path.insert(0, str(REPO_ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "routiq.settings")
    import django

    django.setup()


def build() -> dict[str, float]:
    _django()
    from datetime import date

    from django.core.management import call_command

    from clinics.rls import tenant_scope
    from clinics.services import organization_create
    from sync.loader import synthetic_clinic_load
    from sync.synthetic import ClinicSpec, generate_clinic

    call_command("migrate", verbosity=0)
    call_command("createcachetable", verbosity=0)
    seconds = {}
    for index, (org_id, patients) in enumerate([(BIG_ORG, 50_000), *((o, 2_000) for o in SMALL_ORGS)]):
        started = time.perf_counter()
        org = organization_create(org_id=org_id, name=org_id, time_zone="Australia/Melbourne")
        clinic = generate_clinic(ClinicSpec(seed=index + 1, patients=patients, today=date(2026, 11, 27)))
        with tenant_scope(org):
            synthetic_clinic_load(org, clinic=clinic)
        seconds[org_id] = time.perf_counter() - started
    return seconds


def measure(incremental_runs: int) -> dict[str, object]:
    _django()
    from clinics.models import Organization
    from clinics.rls import tenant_scope
    from patients.models import Appointment, Patient
    from patients.profiles import profiles_refresh, profiles_refresh_all

    organization = Organization.objects.get(pk=BIG_ORG)
    with tenant_scope(organization):
        patient_ids = list(Patient.objects.for_org(organization).values_list("pk", flat=True))
        appointments = Appointment.objects.for_org(organization).count()
    full = [profiles_refresh_all(organization).seconds for _ in range(3)]
    rng = random.Random(5)
    incremental = [
        profiles_refresh(organization, patient_ids=rng.sample(patient_ids, 100)).seconds
        for _ in range(incremental_runs)
    ]
    for small in SMALL_ORGS:  # every organization gets its profiles (the API benchmarks read them)
        profiles_refresh_all(Organization.objects.get(pk=small))
    return {
        "patients": len(patient_ids),
        "appointments": appointments,
        "full_refresh_seconds": [round(s, 2) for s in full],
        "full_refresh_median_seconds": round(statistics.median(full), 2),
        "incremental_100_median_ms": round(statistics.median(incremental) * 1000, 1),
        "incremental_100_p95_ms": round(sorted(incremental)[int(0.95 * len(incremental)) - 1] * 1000, 1),
        "incremental_runs": incremental_runs,
    }


def _child(step: str, env: dict[str, str], *args: str) -> dict[str, object]:
    completed = subprocess.run(
        [sys.executable, __file__, "--child", step, *args],
        cwd=REPO_ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--reuse", action="store_true", help="measure on the kept database")
    parser.add_argument("--incremental-runs", type=int, default=30)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args()
    if args.child == "build":
        print(json.dumps(build()))
        return
    if args.child == "measure":
        print(json.dumps(measure(int(rest[0]))))
        return
    import psycopg

    server = server_settings()
    admin = url(server, "postgres")
    env = {**os.environ, "DATABASE_URL": url(server, DATABASE)}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    if not args.reuse:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{DATABASE}"')
        started = time.perf_counter()
        loaded = _child("build", env)
        print(
            f"== dataset built in {time.perf_counter() - started:.0f} s: "
            f"{json.dumps({k: round(v, 1) for k, v in loaded.items()})}"
        )
    try:
        print("== profile refresh (as the application role, after a vacuum)")
        database_url = env["DATABASE_URL"]
        vacuum(database_url)
        measuring = {**env, "DATABASE_URL": as_application_role(database_url, DATABASE)}
        print(json.dumps(_child("measure", measuring, str(args.incremental_runs)), indent=2))
    finally:
        if not args.keep and not args.reuse:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')


if __name__ == "__main__":
    main()
