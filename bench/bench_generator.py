"""Benchmark the synthetic clinic generator: time and peak memory of a full iteration.

    python bench/bench_generator.py --patients 2000 50000

Each size runs in a fresh subprocess so its peak RSS is its own. No Django needed.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def run_child(patients: int, seed: int) -> None:
    """Generate and fully iterate one clinic; print the figures as one JSON line."""
    sys.path.insert(0, str(REPO_ROOT))
    from sync.synthetic import ClinicSpec, generate_clinic

    started = time.perf_counter()
    clinic = generate_clinic(ClinicSpec(seed=seed, patients=patients))
    setup_seconds = time.perf_counter() - started
    appointments = invoices = count = 0
    for bundle in clinic.iter_patients():
        count += 1
        appointments += len(bundle.appointments)
        invoices += len(bundle.invoices)
    # ru_maxrss is in kilobytes on Linux (bytes on macOS).
    scale = 1024 * 1024 if sys.platform == "darwin" else 1024
    print(json.dumps({
        "patients": count,
        "appointments": appointments,
        "invoices": invoices,
        "expected_appointments": clinic.expected_appointments,
        "practitioners": len(clinic.practitioners),
        "businesses": len(clinic.businesses),
        "setup_seconds": setup_seconds,
        "wall_seconds": time.perf_counter() - started,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale,
    }))


def measure(patients: int, seed: int) -> dict[str, float]:
    completed = subprocess.run(
        [sys.executable, __file__, "--child", str(patients), "--seed", str(seed)],
        check=True, capture_output=True, text=True,
    )
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, nargs="+", default=[2000, 50_000])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        run_child(args.child, args.seed)
        return
    results = []
    print(f"{'patients':>9} {'appointments':>13} {'invoices':>10} {'practitioners':>13} "
          f"{'setup s':>8} {'wall s':>8} {'peak RSS MB':>12}")
    for patients in args.patients:
        result = measure(patients, args.seed)
        results.append(result)
        print(f"{result['patients']:>9,} {result['appointments']:>13,} {result['invoices']:>10,} "
              f"{result['practitioners']:>13} {result['setup_seconds']:>8.2f} "
              f"{result['wall_seconds']:>8.2f} {result['peak_rss_mb']:>12.1f}", flush=True)
    if len(results) > 1:
        smallest, largest = results[0], results[-1]
        size_ratio = largest["patients"] / smallest["patients"]
        memory_ratio = largest["peak_rss_mb"] / smallest["peak_rss_mb"]
        print(f"peak RSS: {largest['peak_rss_mb']:.1f} MB at {largest['patients']:,} patients vs "
              f"{smallest['peak_rss_mb']:.1f} MB at {smallest['patients']:,} "
              f"(x{memory_ratio:.2f} memory for x{size_ratio:.0f} patients)")


if __name__ == "__main__":
    main()
