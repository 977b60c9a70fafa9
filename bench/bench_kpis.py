"""Time the clinic KPIs (patients.kpis) on the analytics benchmark database, read only.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/routiq_bench_analytics python bench/bench_kpis.py
    ... bench/bench_kpis.py --runs 5 --org org_BenchAnalyticsBig0001 --today 2026-11-27

The database is the one `bench_profiles.py --keep` builds (one 50,000-patient organization with
about a million appointments, nine smaller ones); nothing is written to it (the session is read
only). Each figure is the median of `--runs` calls after one warm-up call, in seconds, for
periods ending on `--today` (the dataset's "today"), as the clinic's calendar has it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

BIG_ORG = "org_BenchAnalyticsBig0001"
DATASET_TODAY = "2026-11-27"


def _django() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "routiq.settings")
    import django

    django.setup()
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")


def _median_seconds(call: Callable[[], Any], runs: int) -> tuple[float, list[float]]:
    call()  # warm-up: the statement's plan, the buffer cache
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - started)
    return round(statistics.median(seconds), 3), [round(s, 3) for s in seconds]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--org", default=BIG_ORG)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--today", default=DATASET_TODAY, help="last day of every period (YYYY-MM-DD)")
    args = parser.parse_args()
    _django()
    from clinics.models import Organization
    from patients.kpis import clinic_kpi_comparison, clinic_kpi_series

    organization = Organization.objects.get(pk=args.org)
    today = date.fromisoformat(args.today)
    now = datetime.combine(today, datetime.min.time(), organization.tzinfo) + timedelta(hours=18)

    def comparison(days: int, group_by: str | None = None) -> Callable[[], Any]:
        start = today - timedelta(days=days - 1)
        return lambda: clinic_kpi_comparison(organization, start=start, end=today, group_by=group_by, now=now)

    def series(days: int) -> Callable[[], Any]:
        start = today - timedelta(days=days - 1)
        return lambda: clinic_kpi_series(organization, start=start, end=today, now=now)

    cases = {
        "comparison_30d": comparison(30),
        "comparison_90d": comparison(90),
        "comparison_365d": comparison(365),
        "comparison_30d_by_practitioner": comparison(30, "practitioner"),
        "comparison_365d_by_practitioner": comparison(365, "practitioner"),
        "comparison_365d_by_location": comparison(365, "location"),
        "series_90d": series(90),
    }
    results = {}
    for name, call in cases.items():
        median, runs = _median_seconds(call, args.runs)
        results[name] = {"median_seconds": median, "runs": runs}
        print(f"{name:36} median {median:6.3f} s  {runs}", flush=True)
    print(json.dumps({"org": args.org, "today": args.today, "results": results}))


if __name__ == "__main__":
    main()
