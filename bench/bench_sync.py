"""Benchmarks of the Cliniko sync, end to end against the simulator (issue 4's figures).

    python bench/bench_sync.py requests   --patients 10000   # requests vs the minimum
    python bench/bench_sync.py throughput --patients 1000 50000   # records/s, peak RSS
    python bench/bench_sync.py paced      --patients 1000    # wall time under the 200/min limit
    python bench/bench_sync.py faults     --patients 1000    # 20% faults, SIGKILL: same rows

Every measurement gets its own database on the configured server (DATABASE_URL, else the
embedded one) and its own simulator process; each sync is `manage.py sync --inline` in its
own process, so the wall time and peak resident memory reported are the sync's alone.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from harness import (
    Simulator,
    compare,
    connect_org,
    fresh_database,
    last_run,
    query,
    run_sync,
    server_settings,
    snapshot,
    start_sync,
)

ORG = "org_BenchmarkSync000001"
# With the simulator's limit off, the connection says its account allows this many requests a
# minute (the product's own setting, `pms_connect --rate-limit`), so pacing does not bind.
UNLIMITED = 100_000


def _print(title: str, data: dict[str, Any]) -> None:
    print(f"\n== {title}")
    print(json.dumps(data, indent=2, default=str))


# --- requests ----------------------------------------------------------------------------------
def bench_requests(server: dict[str, str], patients: int, *, keep: bool) -> dict[str, Any]:
    """Full sync against the minimum; incremental with nothing changed; with 1% changed."""
    with (
        fresh_database(server, f"routiq_bench_requests_{patients}", keep=keep) as env,
        Simulator(patients=patients, env=env) as sim,
    ):
        connect_org(env, ORG, sim, rate_limit=UNLIMITED)
        minimum = sim.minimum_requests()
        full = run_sync(env, ORG)
        full_by_resource = sim.requests_by_resource()
        total_min = sum(minimum.values())
        sim.reset_stats()
        run_sync(env, ORG)
        unchanged = sim.requests_by_resource()
        changed = _change_one_percent(env, sim)
        sim.reset_stats()
        run_sync(env, ORG)
        one_percent = sim.requests_by_resource()
        run = last_run(env, ORG)
        change_min = {resource: -(-n // 100) if n else 0 for resource, n in changed.items()}
        return {
            "records": sim.counts(),
            "full": {
                "requests": sum(full_by_resource.values()),
                "minimum": total_min,
                "ratio": round(sum(full_by_resource.values()) / total_min, 4),
                "by_resource": full_by_resource,
                "minimum_by_resource": minimum,
                "seconds": round(full.seconds, 1),
            },
            "incremental_nothing_changed": {
                "by_resource": unchanged,
                "max_per_resource": max(unchanged.values()),
            },
            "incremental_one_percent": {
                "changed": changed,
                "by_resource": one_percent,
                "minimum_by_resource": change_min,
                "over_minimum": {r: one_percent[r] - change_min.get(r, 0) for r in one_percent},
                "updated": {r: c["updated"] for r, c in run["stats"].items()},
            },
        }


def _change_one_percent(env: dict[str, str], sim: Simulator) -> dict[str, int]:
    """Edit 1% of patients, appointments and invoices, stamped two minutes ago (so they are
    inside the next sync's window, which ends 30 s before now)."""
    stamp = (datetime.now(UTC) - timedelta(minutes=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    sim.post("clock", {"set": stamp})
    rng = random.Random(4)
    changed = {}
    for resource, table, local in (
        ("patient", "patients", "patients_patient"),
        ("appointment", "individual_appointments", "patients_appointment"),
        ("invoice", "invoices", "patients_invoice"),
    ):
        ids = [
            row[0]
            for row in query(
                env, f"SELECT external_id FROM {local} WHERE deleted_at IS NULL ORDER BY external_id"
            )
        ]
        chosen = rng.sample(ids, max(1, len(ids) // 100))
        for external_id in chosen:
            sim.post(
                "mutations",
                {
                    "op": "edit",
                    "resource": table,
                    "record_id": external_id,
                    "notes": f"benchmark edit {external_id}",
                },
            )
        changed[resource] = len(chosen)
    sim.post("clock", {"thaw": True})
    return changed


# --- throughput and memory -------------------------------------------------------------------
def bench_throughput(server: dict[str, str], patients: int, *, keep: bool) -> dict[str, Any]:
    with (
        fresh_database(server, f"routiq_bench_throughput_{patients}", keep=keep) as env,
        Simulator(patients=patients, env=env) as sim,
    ):
        connect_org(env, ORG, sim, rate_limit=UNLIMITED)
        result = run_sync(env, ORG)
        run = last_run(env, ORG)
        records = sum(c["fetched"] for c in run["stats"].values())
        return {
            "patients": patients,
            "records": records,
            "simulator_startup_seconds": round(sim.startup_seconds, 1),
            "process_seconds": round(result.seconds, 1),
            "run_seconds": round(float(run["seconds"]), 1),
            "records_per_second_process": round(records / result.seconds),
            "records_per_second_run": round(records / float(run["seconds"])),
            "requests": run["requests"],
            "peak_rss_mb": round(result.peak_rss_mb, 1),
        }


# --- under Cliniko's rate limit --------------------------------------------------------------
def bench_paced(server: dict[str, str], patients: int, *, keep: bool) -> dict[str, Any]:
    with (
        fresh_database(server, f"routiq_bench_paced_{patients}", keep=keep) as env,
        Simulator(patients=patients, rate_limit=200, env=env) as sim,
    ):
        connect_org(env, ORG, sim)
        env = {**env, "CLINIKO_RATE_PER_MINUTE": "195"}
        sim.reset_stats()
        result = run_sync(env, ORG)
        run = last_run(env, ORG)
        stats = sim.get("stats")
        floor = run["requests"] / 200 * 60
        return {
            "patients": patients,
            "requests": run["requests"],
            "wall_seconds": round(float(run["seconds"]), 1),
            "process_seconds": round(result.seconds, 1),
            "requests_over_200_per_minute_seconds": round(floor, 1),
            "ratio": round(float(run["seconds"]) / floor, 3),
            "simulator_429s": stats["rate_limited"],
            "client_429s": run["rate_limited"],
        }


# --- faults and SIGKILL --------------------------------------------------------------------------
def bench_faults(server: dict[str, str], patients: int, *, fault_rate: float, keep: bool) -> dict[str, Any]:
    with (
        fresh_database(server, f"routiq_bench_faults_{patients}", keep=keep) as env,
        Simulator(patients=patients, env=env) as sim,
    ):
        orgs = {
            "clean": "org_BenchCleanRun000001",
            "faulty": "org_BenchFaultyRun00001",
            "killed": "org_BenchKilledRun00001",
        }
        for org in orgs.values():
            connect_org(env, org, sim, rate_limit=UNLIMITED)
        run_sync(env, orgs["clean"])
        clean = snapshot(env, orgs["clean"])
        clean_run = last_run(env, orgs["clean"])

        sim.post("faults", {"rates": _spread(fault_rate), "seed": 7, "timeout_seconds": 2.0})
        faulty_env = {**env, "SYNC_READ_TIMEOUT": "1", "SYNC_BACKOFF_BASE": "0.2"}
        faulty_result = run_sync(faulty_env, orgs["faulty"])
        injected = sim.get("faults")["injected"]
        sim.post("faults", {"clear": True})
        faulty_run = last_run(env, orgs["faulty"])

        kills = _kill_and_restart(env, orgs["killed"], clean_run["pages"])
        killed_runs = query(
            env,
            "SELECT id, status, error_code, requests, pages FROM sync_syncrun"
            " WHERE organization_id = %s ORDER BY id",
            (orgs["killed"],),
        )
        return {
            "patients": patients,
            "clean": {"requests": clean_run["requests"], "pages": clean_run["pages"]},
            "faulty": {
                "fault_rate": fault_rate,
                "faults_injected": injected,
                "requests": faulty_run["requests"],
                "retries": faulty_run["retries"],
                "status": faulty_run["status"],
                "seconds": round(faulty_result.seconds, 1),
                "same_rows_as_clean": compare(clean, snapshot(env, orgs["faulty"])),
            },
            "killed": {
                "kills_after_pages": kills,
                "runs": [
                    dict(zip(("id", "status", "error_code", "requests", "pages"), r, strict=True))
                    for r in killed_runs
                ],
                "requests_total": sum(r[3] for r in killed_runs),
                "same_rows_as_clean": compare(clean, snapshot(env, orgs["killed"])),
            },
        }


def _spread(rate: float) -> dict[str, float]:
    kinds = ["429", "500", "502", "503", "timeout", "reset", "truncated", "incomplete", "html"]
    return {kind: rate / len(kinds) for kind in kinds}


def _kill_and_restart(env: dict[str, str], org: str, expected_pages: int) -> list[int]:
    """SIGKILL the syncing process at about 30% and again at 70% of the pages, restart it
    each time; the last start runs to the end. A run is taken over once its heartbeat is
    older than SYNC_STALE_SECONDS (5 s here)."""
    env = {**env, "SYNC_STALE_SECONDS": "5", "SYNC_HEARTBEAT_SECONDS": "1"}
    killed_at = []
    for share in (0.3, 0.7):
        process = start_sync(env, org)
        while True:
            rows = query(
                env, "SELECT coalesce(sum(pages), 0) FROM sync_syncrun WHERE organization_id = %s", (org,)
            )
            pages = int(rows[0][0])
            if pages >= expected_pages * share or process.poll() is not None:
                break
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        killed_at.append(pages)
        time.sleep(6)  # the dead run's heartbeat goes stale
    run_sync(env, org)
    return killed_at


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("which", choices=["requests", "throughput", "paced", "faults"])
    parser.add_argument("--patients", type=int, nargs="+")
    parser.add_argument("--fault-rate", type=float, default=0.2)
    parser.add_argument("--keep", action="store_true", help="keep the databases")
    args = parser.parse_args()
    server = server_settings()
    defaults = {"requests": [10_000], "throughput": [1000, 50_000], "paced": [1000], "faults": [1000]}
    for patients in args.patients or defaults[args.which]:
        started = time.perf_counter()
        if args.which == "requests":
            result = bench_requests(server, patients, keep=args.keep)
        elif args.which == "throughput":
            result = bench_throughput(server, patients, keep=args.keep)
        elif args.which == "paced":
            result = bench_paced(server, patients, keep=args.keep)
        else:
            result = bench_faults(server, patients, fault_rate=args.fault_rate, keep=args.keep)
        result["benchmark_seconds"] = round(time.perf_counter() - started, 1)
        _print(f"{args.which} ({patients:,} patients)", result)


if __name__ == "__main__":
    main()
