"""Benchmark the analytics API on the 50,000-patient organization with wrk (issue 5's figures).

    python bench/bench_profiles.py --keep          # once: build the dataset (kept afterwards)
    python bench/bench_api.py                      # measure; Redis from REDIS_URL, else PostgreSQL
    python bench/bench_api.py --duration 20 --only profiles_page
    python bench/bench_api.py --no-uncached --expiry-every 5 --expiry-size 70   # profiles expiring

The server runs as in production (Dockerfile): uvicorn, one worker per core
(WEB_CONCURRENCY=2), ROUTIQ_PRODUCTION on, DEBUG off, access log off, Clerk tokens verified
against a PEM key made here (RS256, as Clerk signs), connected as the application role (row-level
security applies). Every client sends requests back to back
(wrk's closed loop) with a valid token of an admin of the big organization. The rate limits are
raised for the run, not removed: their counters are still taken on every request.

Each scenario runs twice in one pass, side by side: with the answer cache (what a clinic gets:
answers computed once per data version) and with it off (ANSWER_CACHE_SECONDS=0: every request
computes its answer, the worst case right after a sync). Figures: requests/s, p50/p95/p99 ms,
errors (socket errors and non-2xx answers).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from _server import Server, server_env
from _server import make_keys as _keys
from _server import make_token as _token
from bench_profiles import BIG_ORG, DATABASE
from harness import REPO_ROOT, as_application_role, server_settings, url, vacuum

WRK_SCRIPT = Path(__file__).with_name("wrk_report.lua")
TARGETS = {"p95_ms": 50.0, "p99_ms": 150.0}  # at 10 clients; and >= 300 rps at 50 on the page


def scenarios(org: str) -> dict[str, str]:
    base = f"/api/v1/reengagement/{org}/patient-profiles"
    return {
        "profiles_page": f"{base}?limit=50",
        "profiles_page_2": f"{base}?limit=50&offset=5000&ordering=value",
        "profiles_search_name": f"{base}?limit=50&search=smith",
        "profiles_search_phone": f"{base}?limit=50&search=0412%20345%20678",
        "profiles_filtered": f"{base}?limit=50&churn_risk=high&lifecycle_stage=lapsing&has_upcoming=false",
        "profiles_summary": f"{base}/summary",
        "dashboard": f"/api/v1/dashboard/{org}",
        # Beyond the targets, reported alongside:
        "risk_metrics": f"/api/v1/reengagement/{org}/risk-metrics?limit=50",
        "prioritized": f"/api/v1/reengagement/{org}/prioritized?limit=50",
        "reengagement_summary": f"/api/v1/reengagement/{org}/dashboard-summary",
        "performance_30d": f"/api/v1/reengagement/{org}/performance",
        "kpis_30d": f"/api/v1/analytics/{org}/kpis",
    }


def wrk(base: str, path: str, token: str, *, clients: int, seconds: int) -> dict[str, float]:
    command = [
        "wrk", f"-t{min(clients, 2)}", f"-c{clients}", f"-d{seconds}s", "--timeout", "10s",
        "-s", str(WRK_SCRIPT), "-H", f"Authorization: Bearer {token}", base + path,
    ]  # fmt: skip
    completed = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(completed.stdout.strip().splitlines()[-1])


# Profiles expire all day in a clinic: each upcoming appointment that starts, and each local
# midnight that moves a stage. Appointments start on a slot grid, so they expire together: in the
# 50,000-patient organization, 3,643 profiles at 53 moments over the next day, one every 15
# minutes in clinic hours (about 70 profiles each). Each expiry starts a new version of the
# cached answers. --expiry-every makes them come on a fixed beat during every cached run, far
# more often than that; --expiry-size says how many profiles expire at each.
EXPIRE = """
from datetime import timedelta
from django.utils import timezone
from clinics.rls import tenant_scope
from patients.models import PatientProfile
from patients.profiles.cache import profiles_cache_bump
now = timezone.now()
with tenant_scope({org!r}):
    profiles = PatientProfile.objects.for_org({org!r}).order_by("?")
    ids = list(profiles.values_list("pk", flat=True)[: {n} * {size}])
    for i, pk in enumerate(ids):
        moment = now + timedelta(seconds={first} + (i // {size}) * {every})
        PatientProfile.objects.filter(pk=pk).update(valid_until=moment)
profiles_cache_bump({org!r}, data=False)  # only their expiry times: the data is as it was
"""


def schedule_expiries(env: dict[str, str], *, every: float, size: int, seconds: int) -> None:
    """Make `size` random profiles of the big organization expire every `every` seconds from a
    few seconds from now, for `seconds` (the readers then recompute them, as after a real expiry)."""
    code = EXPIRE.format(org=BIG_ORG, n=int(seconds / every) + 2, size=size, first=4, every=every)
    subprocess.run([sys.executable, "manage.py", "shell", "-c", code], cwd=REPO_ROOT, env=env, check=True)


def measure(
    server: Server, token: str, paths: dict[str, str], *, seconds: int, expiries: Any = None
) -> dict[str, dict]:
    results = {}
    for name, path in paths.items():
        if expiries is not None:
            expiries()
        for _ in range(3):  # warm: the worker's connections, and the answer when caching
            server.get(token, path)
        results[name] = wrk(server.base, path, token, clients=10, seconds=seconds)
        if name == "profiles_page":
            if expiries is not None:
                expiries()
            results[f"{name}@50"] = wrk(server.base, path, token, clients=50, seconds=seconds)
        print(f"  {name:<24} {json.dumps(results[name])}", flush=True)
    return results


def verdict(name: str, figures: dict[str, float]) -> str:
    if figures["errors"] or figures["non_2xx"]:
        return "ERRORS"
    if name.endswith("@50"):
        return "ok" if figures["rps"] >= 300 else "below 300 rps"
    misses = [k for k, limit in TARGETS.items() if figures[k] > limit]
    return "ok" if not misses else "over " + ", ".join(misses)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=15, help="seconds per wrk run")
    parser.add_argument("--only", action="append", help="scenario names (repeatable)")
    parser.add_argument("--no-uncached", action="store_true", help="skip the cache-off pass")
    parser.add_argument(
        "--expiry-every", type=float, default=0, help="profiles expire every this many s (cached runs)"
    )
    parser.add_argument("--expiry-size", type=int, default=1, help="how many profiles expire each time")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    database_url = url(server_settings(), DATABASE)
    migrate_env = {**os.environ, "DATABASE_URL": database_url}
    migrate_env.pop("DJANGO_SETTINGS_MODULE", None)
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v", "0"], cwd=REPO_ROOT, env=migrate_env, check=True
    )
    vacuum(database_url)
    app_url = as_application_role(database_url, DATABASE)
    private_pem, public_pem = _keys()
    token = _token(private_pem, BIG_ORG)
    paths = {k: v for k, v in scenarios(BIG_ORG).items() if not args.only or k in args.only}
    cache_mode = f"Redis {os.environ['REDIS_URL']}" if os.environ.get("REDIS_URL") else "PostgreSQL"
    passes = [("cached", 15 * 60)] + ([] if args.no_uncached else [("uncached", 0)])
    report: dict[str, dict] = {}
    for label, cache_seconds in passes:
        every = args.expiry_every if cache_seconds else 0
        expiring = f", {args.expiry_size} profile(s) expiring every {every:g} s" if every else ""
        print(f"== {label} answers (cache: {cache_mode}{expiring}), 10 clients unless @50, {args.duration} s")
        env = server_env(app_url, public_pem, cache_seconds=cache_seconds)
        server = Server(env)
        expiries = (
            functools.partial(
                schedule_expiries, env, every=every, size=args.expiry_size, seconds=args.duration
            )
            if every
            else None
        )
        try:
            server.wait(token, next(iter(paths.values())))
            report[label] = measure(server, token, paths, seconds=args.duration, expiries=expiries)
        finally:
            server.stop()
    print("== summary (targets: p95 <= 50 ms, p99 <= 150 ms at 10 clients; >= 300 rps at 50)")
    for label, results in report.items():
        for name, figures in results.items():
            print(
                f"  {label:<9} {name:<24} rps {figures['rps']:7.1f}  p50 {figures['p50_ms']:6.1f}  "
                f"p95 {figures['p95_ms']:6.1f}  p99 {figures['p99_ms']:6.1f}  errors "
                f"{figures['errors']}  {verdict(name, figures)}"
            )
    print(json.dumps(report))


if __name__ == "__main__":
    main()
