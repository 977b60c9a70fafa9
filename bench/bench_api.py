"""Benchmark the analytics API on the 50,000-patient organization with wrk (issue 5's figures).

    python bench/bench_profiles.py --keep          # once: build the dataset (kept afterwards)
    python bench/bench_api.py                      # measure; Redis from REDIS_URL, else PostgreSQL
    python bench/bench_api.py --duration 20 --only profiles_page

The server runs as in production (Dockerfile): uvicorn, one worker per core
(WEB_CONCURRENCY=2), ROUTIQ_PRODUCTION on, DEBUG off, access log off, Clerk tokens verified
against a PEM key made here (RS256, as Clerk signs). Every client sends requests back to back
(wrk's closed loop) with a valid token of an admin of the big organization. The rate limits are
raised for the run, not removed: their counters are still taken on every request.

Each scenario runs twice in one pass, side by side: with the answer cache (what a clinic gets:
answers computed once per data version) and with it off (ANSWER_CACHE_SECONDS=0: every request
computes its answer, the worst case right after a sync). Figures: requests/s, p50/p95/p99 ms,
errors (socket errors and non-2xx answers).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from _server import Server, server_env
from _server import make_keys as _keys
from _server import make_token as _token
from bench_profiles import BIG_ORG, DATABASE
from harness import REPO_ROOT, server_settings, url

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


def measure(server: Server, token: str, paths: dict[str, str], *, seconds: int) -> dict[str, dict]:
    results = {}
    for name, path in paths.items():
        for _ in range(3):  # warm: the worker's connections, and the answer when caching
            server.get(token, path)
        results[name] = wrk(server.base, path, token, clients=10, seconds=seconds)
        if name == "profiles_page":
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
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    database_url = url(server_settings(), DATABASE)
    migrate_env = {**os.environ, "DATABASE_URL": database_url}
    migrate_env.pop("DJANGO_SETTINGS_MODULE", None)
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v", "0"], cwd=REPO_ROOT, env=migrate_env, check=True
    )
    private_pem, public_pem = _keys()
    token = _token(private_pem, BIG_ORG)
    paths = {k: v for k, v in scenarios(BIG_ORG).items() if not args.only or k in args.only}
    cache_mode = f"Redis {os.environ['REDIS_URL']}" if os.environ.get("REDIS_URL") else "PostgreSQL"
    passes = [("cached", 15 * 60)] + ([] if args.no_uncached else [("uncached", 0)])
    report: dict[str, dict] = {}
    for label, cache_seconds in passes:
        print(f"== {label} answers (cache: {cache_mode}), 10 clients unless @50, {args.duration} s each")
        server = Server(server_env(database_url, public_pem, cache_seconds=cache_seconds))
        try:
            server.wait(token, next(iter(paths.values())))
            report[label] = measure(server, token, paths, seconds=args.duration)
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
