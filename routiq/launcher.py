"""`bin/start`: prepare the database, run the server and the worker, and import the demo
clinic from a Cliniko simulator through a real sync.

The demo clinic is served by `manage.py pms_simulator cliniko` (a child process, on
`--simulator-port`), the demo organization's Cliniko connection points at it, and the worker
imports it like any clinic: a full first sync, then the hourly schedule.

This process holds a handle on the embedded PostgreSQL (when no DATABASE_URL is set), so the
database lives exactly as long as the product does and stops when Ctrl-C stops everything.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "routiq.settings")
    started = time.monotonic()
    _step("starting the database")
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    _step("applying migrations")
    # Separate processes: schema changes connect as the owner role, the product as the app role.
    for command in (["migrate", "--no-input", "-v", "0"], ["createcachetable"]):
        subprocess.run([sys.executable, "manage.py", *command], cwd=BASE_DIR, check=True)
    call_command("collectstatic", interactive=False, verbosity=0)
    base_url = f"http://{args.host}:{args.port}"
    children: list[subprocess.Popen[bytes]] = []
    try:
        demo = None
        if args.patients:
            children.append(_start_simulator(args))
            demo = _demo_connected(args)
        children += _start_children(args)
        if not _wait_healthy(base_url, children, timeout=90):
            print("Routiq did not become healthy; see the output above.", file=sys.stderr)
            return 1
        if demo is not None and not _import_demo(demo.organization, children):
            return 1
        token = _dev_token(demo, settings)
        _banner(base_url, demo, token, time.monotonic() - started, args)
        if args.check:
            return _check_pages(base_url, demo, token)
        return _supervise(children)
    finally:
        _stop(children)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bin/start", description=__doc__)
    parser.add_argument("--host", default=os.environ.get("ROUTIQ_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("ROUTIQ_PORT", "8000")))
    parser.add_argument("--patients", type=int, default=2000, help="demo clinic size; 0 skips the demo")
    parser.add_argument(
        "--simulator-port",
        type=int,
        default=int(os.environ.get("ROUTIQ_SIMULATOR_PORT", "8765")),
        help="where the demo clinic's Cliniko simulator listens",
    )
    parser.add_argument("--check", action="store_true", help="start, wait until healthy, then stop")
    return parser.parse_args(argv)


def _step(text: str) -> None:
    print(f"==> {text}", flush=True)


# The demo's simulated Cliniko account allows this many requests a minute (Cliniko raises its
# own 200 on request); the connection says so, and Routiq paces just under it.
DEMO_RATE_LIMIT = 2000
DEMO_SEED = 1


def _start_simulator(args: argparse.Namespace) -> subprocess.Popen[bytes]:
    _step(f"starting the Cliniko simulator with the demo clinic ({args.patients:,} patients)")
    command = [
        sys.executable,
        "manage.py",
        "pms_simulator",
        "cliniko",
        "--host",
        "127.0.0.1",
        "--port",
        str(args.simulator_port),
        "--patients",
        str(args.patients),
        "--seed",
        str(DEMO_SEED),
        "--rate-limit",
        str(DEMO_RATE_LIMIT),
    ]
    child = subprocess.Popen(command, cwd=BASE_DIR, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise SystemExit(f"the Cliniko simulator did not start (port {args.simulator_port} taken?)")
        try:
            with urllib.request.urlopen(f"{_simulator_url(args)}/__sim/health", timeout=5) as response:
                if response.status == 200:
                    return child
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.3)
    child.kill()
    raise SystemExit("the Cliniko simulator did not answer within 120 s")


def _simulator_url(args: argparse.Namespace) -> str:
    return f"http://127.0.0.1:{args.simulator_port}"


def _demo_connected(args: argparse.Namespace) -> object:
    from sync.demo import demo_connection_ensure, demo_organization_ensure
    from sync.pms.cliniko.simulator import default_api_key

    demo = demo_organization_ensure()
    demo_connection_ensure(
        demo.organization,
        base_url=_simulator_url(args),
        api_key=default_api_key(DEMO_SEED),
        rate_limit_per_minute=DEMO_RATE_LIMIT,
    )
    return demo


def _import_demo(organization: object, children: list[subprocess.Popen[bytes]]) -> bool:
    """Queue the demo's sync (or follow the one the schedule already started) until it ends."""
    from clinics.rls import tenant_scope
    from sync import selectors, services
    from sync.models import FINISHED_STATUSES, SyncStatus, SyncTrigger

    with tenant_scope(organization):
        connection = selectors.pms_connection_for(organization, kind="cliniko")
    run, created = services.sync_run_request(
        organization, connection=connection, trigger=SyncTrigger.COMMAND, requested_by="bin/start"
    )
    if created:
        services.sync_run_enqueue(run)
    _step(f"importing the demo clinic from the simulator: sync {run.pk}, carried out by the worker")
    shown = time.monotonic()
    while run.status not in FINISHED_STATUSES:
        if any(child.poll() is not None for child in children):
            print("a child process stopped during the import", file=sys.stderr)
            return False
        time.sleep(0.5)
        with tenant_scope(organization):
            run = selectors.sync_run_get(organization, run_id=run.pk)
        if time.monotonic() - shown > 5:
            shown = time.monotonic()
            fetched = sum(counts.get("fetched", 0) for counts in run.stats.values())
            print(
                f"  {run.current_resource or run.status}: {fetched:,} records, {run.requests:,} requests",
                flush=True,
            )
    fetched = sum(counts.get("fetched", 0) for counts in run.stats.values())
    print(
        f"  sync {run.pk} {run.status}: {fetched:,} records in {run.duration_seconds or 0:.0f} s, "
        f"{run.requests:,} requests",
        flush=True,
    )
    if run.status != SyncStatus.COMPLETED:
        print(f"  {run.error_code}: {run.error_message}", file=sys.stderr)
    return run.status != SyncStatus.FAILED


def _start_children(args: argparse.Namespace) -> list[subprocess.Popen[bytes]]:
    python = sys.executable
    server = [
        python,
        "-m",
        "uvicorn",
        "routiq.asgi:application",
        "--host",
        args.host,
        "--port",
        str(args.port),
        "--log-level",
        "warning",
    ]
    worker = [python, "manage.py", "qcluster"]
    _step(f"starting the ASGI server on {args.host}:{args.port} and the worker")
    return [subprocess.Popen(cmd, cwd=BASE_DIR) for cmd in (server, worker)]


def _wait_healthy(base_url: str, children: list[subprocess.Popen[bytes]], *, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(child.poll() is not None for child in children):
            return False
        try:
            with urllib.request.urlopen(f"{base_url}/health", timeout=5) as response:
                if response.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    return False


def _dev_token(demo: object, settings: object) -> str | None:
    if demo is None or not settings.ROUTIQ_DEV_AUTH:
        return None
    from clinics.auth.tokens import mint_dev_token

    return mint_dev_token(
        user_id="user_demo_admin", org_id=demo.organization.pk, role="admin", lifetime_seconds=12 * 3600
    )


def _check_pages(base_url: str, demo: object, token: str | None) -> int:
    """The pages a new user opens first, including a static file served by the app itself."""
    paths = ["/admin/login/", "/static/admin/css/base.css", "/api/schema/", "/health/live"]
    if token:
        paths.append(f"/api/v1/organizations/{demo.organization.pk}")
        paths.append(f"/api/v1/cliniko/status/{demo.organization.pk}")
    for path in paths:
        request = urllib.request.Request(f"{base_url}{path}")
        if token and path.startswith("/api/v1/"):
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                status = response.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        except (urllib.error.URLError, OSError) as exc:
            status = f"unreachable ({exc})"
        print(f"  check {path}: {status}", flush=True)
        if status != 200:
            return 1
    if token:
        return _check_demo_imported(base_url, demo, token)
    return 0


def _check_demo_imported(base_url: str, demo: object, token: str) -> int:
    """The demo clinic's patients arrived through the sync and the API serves them."""
    import json

    request = urllib.request.Request(f"{base_url}/api/v1/cliniko/patients/{demo.organization.pk}/stats")
    request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=10) as response:
        total = json.loads(response.read())["patient_stats"]["stats"]["total"]
    print(f"  check demo patients imported: {total:,}", flush=True)
    return 0 if total > 0 else 1


def _banner(base_url: str, demo: object, token: str | None, elapsed: float, args: argparse.Namespace) -> None:
    lines = [
        "",
        f"Routiq is running (ready in {elapsed:.0f} s).",
        f"  Admin:   {base_url}/admin/",
        f"  Health:  {base_url}/health",
        f"  API docs {base_url}/api/docs/",
    ]
    if demo is not None:
        lines.append(f"  Login:   {demo.admin_username} / {demo.admin_password}")
        lines.append(f"  Demo organization: {demo.organization}")
        lines.append(
            f"  Cliniko simulator: {_simulator_url(args)}/v1 (control: {_simulator_url(args)}/__sim/)"
        )
    if token:
        lines.append("  API (development token, valid 12 h):")
        url = f"{base_url}/api/v1/organizations/{demo.organization.pk}"
        lines.append(f"    curl -H 'Authorization: Bearer {token}' {url}")
    lines.append("Press Ctrl-C to stop the server, the worker and the embedded database.")
    print("\n".join(lines), flush=True)


def _supervise(children: list[subprocess.Popen[bytes]]) -> int:
    stop = {"requested": False}

    def request_stop(signum: int, frame: object) -> None:
        stop["requested"] = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    while not stop["requested"]:
        for child in children:
            if child.poll() is not None:
                print(f"{child.args[2]} exited with {child.returncode}; stopping.", file=sys.stderr)
                return 1
        time.sleep(0.5)
    return 0


def _stop(children: list[subprocess.Popen[bytes]]) -> None:
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    for child in children:
        try:
            child.wait(timeout=20)
        except subprocess.TimeoutExpired:
            child.kill()


if __name__ == "__main__":
    sys.exit(main())
