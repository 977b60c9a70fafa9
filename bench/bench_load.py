"""Benchmark generating and loading a whole clinic into PostgreSQL (the demo_clinic path).

    python bench/bench_load.py --patients 2000 50000

Each size runs in a fresh subprocess against a fresh database on the configured server
(DATABASE_URL, or the embedded default), so its time and peak RSS are its own. The database
is dropped afterwards unless --keep is given.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

from harness import REPO_ROOT, server_settings, url


def run_child(patients: int, seed: int) -> None:
    sys.path.insert(0, str(REPO_ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "routiq.settings")
    import django

    django.setup()
    from datetime import date

    from django.core.management import call_command

    from clinics.rls import tenant_scope
    from clinics.services import organization_create
    from sync.loader import synthetic_clinic_load
    from sync.synthetic import ClinicSpec, generate_clinic

    call_command("migrate", verbosity=0)
    org = organization_create(org_id="org_BenchmarkClinic0001", name="Bench", time_zone="Australia/Melbourne")
    started = time.perf_counter()
    clinic = generate_clinic(ClinicSpec(seed=seed, patients=patients, today=date(2026, 11, 27)))
    with tenant_scope(org):
        result = synthetic_clinic_load(org, clinic=clinic)
    seconds = time.perf_counter() - started
    print(
        json.dumps(
            {
                "patients": result.patients,
                "appointments": result.appointments,
                "invoices": result.invoices,
                "seconds": seconds,
                "appointments_per_second": result.appointments / seconds,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    )


def measure(server: dict[str, str], patients: int, seed: int, *, keep: bool) -> dict[str, float]:
    import psycopg

    name = f"routiq_bench_{patients}"
    with psycopg.connect(url(server, "postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        completed = subprocess.run(
            [sys.executable, __file__, "--child", str(patients), "--seed", str(seed)],
            check=True,
            capture_output=True,
            text=True,
            cwd=REPO_ROOT,
            env={**os.environ, "DATABASE_URL": url(server, name)},
        )
    finally:
        if not keep:
            with psycopg.connect(url(server, "postgres"), autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, nargs="+", default=[2000, 50_000])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the loaded databases")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_child(args.child, args.seed)
        return
    server = server_settings()
    print(
        f"{'patients':>9} {'appointments':>13} {'invoices':>9} {'seconds':>8} {'appts/s':>9} {'peak MB':>8}"
    )
    for patients in args.patients:
        r = measure(server, patients, args.seed, keep=args.keep)
        print(
            f"{r['patients']:>9,} {r['appointments']:>13,} {r['invoices']:>9,} {r['seconds']:>8.1f} "
            f"{r['appointments_per_second']:>9,.0f} {r['peak_rss_mb']:>8.1f}"
        )


if __name__ == "__main__":
    main()
