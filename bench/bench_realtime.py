"""Benchmark live updates (issue 6's figures): 1,000 WebSocket clients and 100 SSE clients on one
server process while a sync commits, and uvicorn against daphne.

    python bench/bench_realtime.py                       # everything, drops its database after
    python bench/bench_realtime.py --only ws --clients 1000
    python bench/bench_realtime.py --only compare --compare-clients 200 1000

Processes, so that each figure belongs to one: the server (uvicorn with one worker, or daphne;
production settings, the Redis channel layer of REDIS_URL, default redis://127.0.0.1:6379/14),
the Cliniko simulator, the worker (`manage.py sync --inline` run in-process by this script's
`worker` step) and one or more client processes (asyncio on uvloop, `websockets` for the
sockets, raw HTTP/1.1 for SSE). All on one machine, so one clock: the worker writes down the
moment each event's transaction committed (the publisher's after-commit send is wrapped), and
clients the moment each event arrived, parsed; latency is the difference. The organization is
synced once before clients connect, so snapshots carry a real clinic's summaries.

Checks, per client: every event after its snapshot's `seq` arrives, once, in order (a second
snapshot mid-stream, the server's answer to a gap it could not fill, is counted separately).
Tokens are Clerk-shaped, signed with a key made here, valid for hours: the verifier does not
bound `exp` (clinics/auth/tokens.py), so the run needs no in-band refresh. The database is
`routiq_bench_realtime` on DATABASE_URL's server (else the embedded one).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from _server import ORIGIN, SERVERS, Server, make_keys, make_token, server_env
from harness import PYTHON, REPO_ROOT, Simulator, connect_org, fresh_database, run_sync, server_settings

DATABASE = "routiq_bench_realtime"
ORG = "org_BenchRealtime0000001"
USERS = 20  # distinct staff tokens among the clients (a clinic's team, many tabs each)
UNLIMITED = 100_000  # the connection's own rate limit, when pacing is off
TARGET_P95_SECONDS = 1.0
SCRIPT = Path(__file__).resolve()


# --- helpers ---------------------------------------------------------------------------------------
def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    ordered = sorted(values)

    def at(share: float) -> float:
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))]

    return {
        "n": len(ordered),
        "p50": round(statistics.median(ordered), 4),
        "p95": round(at(0.95), 4),
        "p99": round(at(0.99), 4),
        "max": round(ordered[-1], 4),
    }


def _load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def _django() -> None:
    sys.path.insert(0, str(REPO_ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "routiq.settings")
    import django

    django.setup()


# --- the worker (a child process): the real sync, or events at a fixed rate -------------------------
def worker(args: argparse.Namespace) -> None:
    """Records when each event's transaction committed, then lets the publisher send it."""
    _django()
    from django.core.management import call_command
    from django.db import transaction

    from realtime import events

    real_send = events._group_send
    out = open(args.out, "a", buffering=1)  # noqa: SIM115 - open for the process's life

    def recorded(org_id: str, message: dict[str, Any]) -> None:
        out.write(json.dumps({"seq": message["seq"], "type": message["type"], "commit": time.time()}) + "\n")
        real_send(org_id, message)

    events._group_send = recorded
    if args.publisher == "sync":
        call_command("sync", args.org, "--inline", "--full", stdout=open(os.devnull, "w"))  # noqa: SIM115
        return
    # A sync page's summary, as sync_progress carries it.
    run = {
        "id": 1, "organization_id": args.org, "pms": "cliniko", "mode": "full", "status": "running",
        "pages": 0, "requests": 0, "current_resource": "appointment",
        "stats": {r: {"fetched": 0, "updated": 0} for r in ("patient", "appointment", "invoice")},
    }  # fmt: skip
    interval = 1.0 / args.rate
    next_at = time.monotonic()
    for page in range(1, args.events + 1):
        run = {**run, "pages": page, "requests": page}
        with transaction.atomic():
            events.publish(args.org, events.EventType.SYNC_PROGRESS, {"run": run})
        next_at += interval
        time.sleep(max(0.0, next_at - time.monotonic()))


def snapshot_cost(args: argparse.Namespace) -> None:
    """What one connection's snapshot costs the server: snapshot_build, timed here, built
    afresh and shared (what clients connecting together within SNAPSHOT_REUSE_SECONDS get)."""
    _django()
    from realtime.snapshot import snapshot_build, snapshots_forget

    snapshot_build(args.org)  # warm: connections, cached answers
    built, shared = [], []
    for _ in range(args.n):
        snapshots_forget()
        started = time.perf_counter()
        _, text = snapshot_build(args.org)
        built.append(time.perf_counter() - started)
        started = time.perf_counter()
        snapshot_build(args.org)
        shared.append(time.perf_counter() - started)
    print(
        json.dumps(
            {
                "ms": _percentiles([t * 1000 for t in built]),
                "shared_ms": _percentiles([t * 1000 for t in shared]),
                "bytes": len(text),
            }
        )
    )


# --- the fan-out before realtime.hub, patched into a server process for a side-by-side run ----------
VARIANTS = {
    "as-is": "routiq.asgi:application",
    "per-connection": "bench_realtime:per_connection_application",  # bench/ on the server's PYTHONPATH
}


def __getattr__(name: str) -> Any:
    """`bench_realtime:per_connection_application`: the production application with a hub of
    its own for every connection, so that each connection is its own member of the group (one
    layer message per connection per event), as before realtime.hub."""
    if name != "per_connection_application":
        raise AttributeError(name)
    from routiq.asgi import application  # sets Django up first

    # isort: split
    from realtime import consumers, hub, stream

    consumers.hub_for = stream.hub_for = hub.Hub
    return application


# --- the clients (a child process) ---------------------------------------------------------------------
class Client:
    def __init__(self) -> None:
        self.snapshot_seq: int | None = None
        self.connect_seconds: float | None = None
        self.events: list[tuple[int, float]] = []
        self.snapshots = 0  # after the first: the server could not fill a gap
        self.error: str | None = None
        self.closed: int | None = None

    @property
    def last_seq(self) -> int:
        return self.events[-1][0] if self.events else (self.snapshot_seq or 0)

    def result(self) -> dict[str, Any]:
        return {
            "snapshot_seq": self.snapshot_seq,
            "connect_seconds": self.connect_seconds,
            "events": self.events,
            "snapshots": self.snapshots,
            "error": self.error,
            "closed": self.closed,
        }


def _on_message(client: Client, seq: int | None, kind: str, now: float) -> None:
    if kind == "snapshot":
        client.snapshots += 1
        if client.snapshot_seq is None:
            client.snapshot_seq = seq
        else:  # a fresh start: later events count from it
            client.events.append((-(seq or 0), now))
    elif seq is not None and kind not in ("heartbeat", "pong", "resynced"):
        client.events.append((seq, now))


async def _ws_client(
    client: Client, url: str, token: str, gate: asyncio.Semaphore, compression: str | None
) -> None:
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    started = time.time()
    try:
        async with gate:
            socket = await connect(
                url,
                subprotocols=["routiq.v1", f"bearer.{token}"],
                origin=ORIGIN,
                compression=compression,
                ping_interval=None,  # as a browser: the server pings
                open_timeout=300,
                max_size=2**23,
                proxy=None,
            )
            first = json.loads(await socket.recv())
            client.connect_seconds = time.time() - started
            _on_message(client, first.get("seq"), first.get("type"), time.time())
    except Exception as exc:  # counted and reported, never fatal to the other clients
        client.error = f"connect: {type(exc).__name__}: {exc}"[:200]
        return

    async def keep_alive() -> None:  # the idle timeout counts client messages
        await asyncio.sleep(random.uniform(5, 25))
        while True:
            await socket.send('{"type":"ping"}')
            await asyncio.sleep(25)

    pinger = asyncio.ensure_future(keep_alive())
    try:
        async for text in socket:
            now = time.time()
            message = json.loads(text)
            _on_message(client, message.get("seq"), message.get("type"), now)
    except ConnectionClosed:
        pass
    finally:
        pinger.cancel()
        client.closed = socket.close_code


async def _sse_client(client: Client, port: int, path: str, token: str, gate: asyncio.Semaphore) -> None:
    started = time.time()
    try:
        async with gate:
            reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=2**23)
            writer.write(
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n"
                "Accept: text/event-stream\r\n\r\n".encode()
            )
            status = await reader.readline()
            if b" 200 " not in status:
                raise RuntimeError(status.decode(errors="replace").strip())
            headers = {}
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode().partition(":")
                headers[name.strip().lower()] = value.strip().lower()
            chunked = headers.get("transfer-encoding") == "chunked"
    except Exception as exc:
        client.error = f"connect: {type(exc).__name__}: {exc}"[:200]
        return
    buffer = b""
    try:
        while True:
            if chunked:
                size = int((await reader.readline()).strip() or b"0", 16)
                if size == 0:
                    break
                data = await reader.readexactly(size + 2)
                data = data[:-2]
            else:
                data = await reader.read(65536)
                if not data:
                    break
            now = time.time()
            buffer += data
            while b"\n\n" in buffer:
                frame, buffer = buffer.split(b"\n\n", 1)
                fields = dict(
                    line.split(": ", 1) for line in frame.decode().splitlines() if not line.startswith(":")
                )
                if "id" not in fields:
                    continue  # retry:, heartbeat comments
                if client.connect_seconds is None:
                    client.connect_seconds = now - started
                _on_message(client, int(fields["id"]), fields.get("event", "message"), now)
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    client.closed = 0


async def _clients(args: argparse.Namespace) -> None:
    tokens = json.loads(Path(args.tokens).read_text())
    gate = asyncio.Semaphore(args.concurrency)
    clients = [Client() for _ in range(args.count)]
    if args.kind == "ws":
        url = f"ws://127.0.0.1:{args.port}/ws/clinics/{args.org}/metrics"
        compression = None if args.no_compression else "deflate"
        tasks = [
            asyncio.ensure_future(_ws_client(c, url, tokens[i % len(tokens)], gate, compression))
            for i, c in enumerate(clients)
        ]
    else:
        path = f"/api/v1/events/{args.org}/stream"
        tasks = [
            asyncio.ensure_future(_sse_client(c, args.port, path, tokens[i % len(tokens)], gate))
            for i, c in enumerate(clients)
        ]
    started = time.time()
    while any(c.snapshot_seq is None and c.error is None for c in clients):
        await asyncio.sleep(0.05)
    ready = {
        "seconds": time.time() - started,
        "connected": sum(c.snapshot_seq is not None for c in clients),
        "errors": [c.error for c in clients if c.error][:5],
    }
    print("ready " + json.dumps(ready), flush=True)
    line = await asyncio.to_thread(sys.stdin.readline)  # "stop <last seq>"
    final = int(line.split()[1])
    deadline = time.monotonic() + args.drain_seconds
    while time.monotonic() < deadline and any(
        c.error is None and c.closed is None and c.last_seq < final for c in clients
    ):
        await asyncio.sleep(0.05)
    Path(args.out).write_text(json.dumps([c.result() for c in clients]))
    for task in tasks:
        task.cancel()
    print("done", flush=True)


def clients_main(args: argparse.Namespace) -> None:
    _raise_fd_limit()
    import uvloop

    uvloop.run(_clients(args))


# --- one measurement -------------------------------------------------------------------------------------
class ClientProcess:
    def __init__(
        self, *, kind: str, port: int, tokens: Path, count: int, out: Path, options: list[str]
    ) -> None:
        command = [
            PYTHON, str(SCRIPT), "clients", "--kind", kind, "--port", str(port), "--org", ORG,
            "--tokens", str(tokens), "--count", str(count), "--out", str(out), *options,
        ]  # fmt: skip
        self.out = out
        self.process = subprocess.Popen(
            command, cwd=SCRIPT.parent, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )

    def ready(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith("ready "):
            raise RuntimeError(f"a client process failed: {line!r}")
        return json.loads(line[6:])

    def stop(self, final_seq: int) -> list[dict[str, Any]]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(f"stop {final_seq}\n")
        self.process.stdin.flush()
        self.process.stdout.readline()  # "done"
        self.process.wait(timeout=60)
        return json.loads(self.out.read_text())


def _check(
    clients: list[dict[str, Any]], commits: dict[int, float], first_seq: int, final_seq: int
) -> dict[str, Any]:
    """Latencies and the per-client order check."""
    latencies = []
    by_seq: dict[int, list[float]] = {}
    missed = out_of_order = duplicated = resnapshots = errors = closed = 0
    for client in clients:
        if client["error"]:
            errors += 1
            continue
        if client["closed"] not in (None, 0):
            closed += 1
        resnapshots += max(0, client["snapshots"] - 1)
        last = newest_snapshot = client["snapshot_seq"]
        seen: set[int] = set()
        for seq, received in client["events"]:
            if seq <= 0:  # a later snapshot as of -seq: it stands for every event up to it
                last = newest_snapshot = max(last, -seq)
                continue
            if seq in seen:
                duplicated += 1
            elif seq <= last:
                out_of_order += 1
            seen.add(seq)
            last = max(last, seq)
            if seq in commits:
                latencies.append(received - commits[seq])
                by_seq.setdefault(seq, []).append(received - commits[seq])
        missed += len({seq for seq in commits if seq > newest_snapshot} - seen)
    return {
        "events_published": len(commits),
        "seq_range": [first_seq, final_seq],
        "commit_to_client_s": _percentiles(latencies),
        "deliveries": len(latencies),
        # Median latency of every tenth event in publishing order: a backlog shows as a rise.
        "p50_by_event_s": [round(statistics.median(by_seq[seq]), 2) for seq in sorted(by_seq)[::10]],
        "missed": missed,
        "out_of_order": out_of_order,
        "duplicated": duplicated,
        "resnapshots": resnapshots,
        "connect_errors": errors,
        "closed_early": closed,
    }


def measure(
    *,
    kind: str,
    server_kind: str,
    clients: int,
    client_procs: int,
    concurrency: int,
    publisher: list[str],
    bench: dict[str, Any],
    variant: str = "as-is",
    no_compression: bool = False,
) -> dict[str, Any]:
    """One server process, `clients` clients connected, then the worker publishes; figures."""
    work = Path(tempfile.mkdtemp(prefix="bench_realtime_"))
    env = {**bench["server_env"], "PYTHONPATH": str(SCRIPT.parent)}
    server = Server(env, kind=server_kind, app=VARIANTS[variant])
    procs: list[ClientProcess] = []
    try:
        server.wait()
        server.get(bench["tokens"][0], f"/api/v1/dashboard/{ORG}")  # warm: imports, pool, cache
        _warm_socket(server.port, bench["tokens"][0])
        time.sleep(1.0)
        rss_before = server.rss_kib()
        options = ["--concurrency", str(max(1, concurrency // client_procs))]
        if no_compression:
            options.append("--no-compression")
        started = time.time()
        for index in range(client_procs):
            share = clients // client_procs + (index < clients % client_procs)
            procs.append(
                ClientProcess(
                    kind=kind, port=server.port, tokens=bench["tokens_file"], count=share,
                    out=work / f"clients{index}.json", options=options,
                )
            )  # fmt: skip
        readiness = [proc.ready() for proc in procs]
        connect_wall = time.time() - started
        time.sleep(2.0)
        rss_connected = server.rss_kib()
        cpu_connected = _cpu_seconds(server.process.pid), [_cpu_seconds(p.process.pid) for p in procs]
        commits_file = work / "commits.jsonl"
        profiler = _profile(server, bench.get("py_spy"), f"{server_kind}_{variant}_{kind}_{clients}")
        worker_started = time.time()
        subprocess.run(
            [PYTHON, str(SCRIPT), "worker", "--org", ORG, "--out", str(commits_file), *publisher],
            cwd=SCRIPT.parent, env=bench["worker_env"], check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        worker_seconds = time.time() - worker_started
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)
            profiler.wait(timeout=60)
        lines = [json.loads(line) for line in commits_file.read_text().splitlines()]
        commits = {line["seq"]: line["commit"] for line in lines}
        final = max(commits)
        cpu_events = _cpu_seconds(server.process.pid), [_cpu_seconds(p.process.pid) for p in procs]
        results = [client for proc in procs for client in proc.stop(final)]
        rss_after = server.rss_kib()
    finally:
        for proc in procs:
            if proc.process.poll() is None:
                proc.process.kill()
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    connected = [c for c in results if not c["error"]]
    figures = _check(results, commits, min(commits), final)
    figures.update(
        server=server_kind,
        variant=variant,
        transport=kind,
        clients=clients,
        connected=len(connected),
        connect_wall_s=round(connect_wall, 2),
        connects_per_s=round(len(connected) / connect_wall, 1),
        connect_s=_percentiles([c["connect_seconds"] for c in connected]),
        worker_s=round(worker_seconds, 1),
        events_per_s=round(len(commits) / worker_seconds, 2),
        event_types=_count(line["type"] for line in lines),
        rss_mib={
            "before": round(rss_before / 1024, 1),
            "connected": round(rss_connected / 1024, 1),
            "after": round(rss_after / 1024, 1),
        },
        kib_per_connection=round((rss_connected - rss_before) / max(1, len(connected)), 1),
        # CPU while the worker published, per second of it: 1.0 is one core busy throughout.
        cpu_share_during_events={
            "server": round((cpu_events[0] - cpu_connected[0]) / worker_seconds, 2),
            "clients": round((sum(cpu_events[1]) - sum(cpu_connected[1])) / worker_seconds, 2),
        },
        connect_errors_sample=[error for r in readiness for error in r["errors"]][:3],
        load=_load(),
    )
    return figures


def _profile(server: Server, directory: str | None, name: str) -> subprocess.Popen[bytes] | None:
    """py-spy on the server while the worker publishes (--py-spy DIR; py-spy must be on PATH)."""
    if not directory:
        return None
    output = Path(directory) / f"{name}.txt"
    command = ["py-spy", "record", "--pid", str(server.process.pid), "--format", "raw", "-o", str(output)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _count(items: Iterator[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for item in items:
        counts[item] = counts.get(item, 0) + 1
    return counts


def _warm_socket(port: int, token: str) -> None:
    from websockets.sync.client import connect

    url = f"ws://127.0.0.1:{port}/ws/clinics/{ORG}/metrics"
    with connect(url, subprotocols=["routiq.v1", f"bearer.{token}"], origin=ORIGIN, proxy=None) as socket:
        socket.recv(timeout=30)


def wrk_http(server_kind: str, bench: dict[str, Any], seconds: int) -> dict[str, Any]:
    from bench_api import wrk

    server = Server(bench["server_env"], kind=server_kind)
    try:
        server.wait()
        token = bench["tokens"][0]
        figures = {}
        for name, path, clients in (
            ("health_live@50", "/health/live", 50),
            ("dashboard_cached@10", f"/api/v1/dashboard/{ORG}", 10),
        ):
            for _ in range(3):
                server.get(token, path)
            figures[name] = wrk(server.base, path, token, clients=clients, seconds=seconds)
            figures[name]["load"] = _load()
        return figures
    finally:
        server.stop()


# --- the run ------------------------------------------------------------------------------------------
def _print(title: str, figures: dict[str, Any]) -> None:
    print(f"\n== {title}", flush=True)
    print(json.dumps(figures, indent=2), flush=True)


def _set_rate_limit(env: dict[str, str], per_minute: int) -> None:
    import psycopg

    with psycopg.connect(env["DATABASE_URL"], autocommit=True) as conn:
        conn.execute(
            "UPDATE clinics_pmsconnection SET rate_limit_per_minute = %s WHERE organization_id = %s",
            (per_minute, ORG),
        )


@contextlib.contextmanager
def prepared(args: argparse.Namespace) -> Iterator[dict[str, Any]]:
    """A database with a synced clinic, a simulator to sync it from, keys and tokens."""
    os.environ["REDIS_URL"] = args.redis_url
    import redis

    layer = redis.Redis.from_url(args.redis_url)
    for key in layer.scan_iter("routiq*"):  # an earlier run's groups and channels
        layer.delete(key)
    with (
        fresh_database(server_settings(), DATABASE, keep=args.keep) as env,
        Simulator(patients=args.patients, env=env) as sim,
    ):
        connect_org(env, ORG, sim, rate_limit=UNLIMITED)
        first = run_sync(env, ORG)
        print(f"initial sync of {args.patients} patients: {first.seconds:.1f} s", flush=True)
        if args.paced:  # the measured syncs at Cliniko's real 200 requests a minute (paced at 195)
            _set_rate_limit(env, 200)
        private_pem, public_pem = make_keys()
        tokens = [make_token(private_pem, ORG, user=f"user_bench_{n:03d}") for n in range(USERS)]
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
            json.dump(tokens, handle)
        worker_env = {**env, "REDIS_URL": args.redis_url, "LOG_LEVEL": "WARNING"}
        try:
            yield {
                "env": env,
                "server_env": server_env(env["DATABASE_URL"], public_pem, workers=1),
                "worker_env": worker_env,
                "tokens": tokens,
                "tokens_file": Path(handle.name),
                "py_spy": args.py_spy,
            }
        finally:
            os.unlink(handle.name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="step")
    step = sub.add_parser("worker")
    step.add_argument("--org", required=True)
    step.add_argument("--out", required=True)
    step.add_argument("--publisher", choices=["sync", "synthetic"], default="sync")
    step.add_argument("--rate", type=float, default=4.0, help="synthetic events per second")
    step.add_argument("--events", type=int, default=60)
    step = sub.add_parser("snapshot-cost")
    step.add_argument("--org", required=True)
    step.add_argument("--n", type=int, default=200)
    step = sub.add_parser("clients")
    step.add_argument("--kind", choices=["ws", "sse"], required=True)
    for name in ("--port", "--count"):
        step.add_argument(name, type=int, required=True)
    for name in ("--org", "--tokens", "--out"):
        step.add_argument(name, required=True)
    step.add_argument("--concurrency", type=int, default=50)
    step.add_argument("--drain-seconds", type=float, default=60.0)
    step.add_argument("--no-compression", action="store_true")

    parser.add_argument("--only", action="append", choices=["ws", "sse", "compare", "http"])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--sse-clients", type=int, default=100)
    parser.add_argument("--client-procs", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=100, help="connects in flight at once")
    parser.add_argument("--patients", type=int, default=500)
    parser.add_argument(
        "--paced",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="measured syncs at Cliniko's 200 requests/min (paced at 195); --no-paced: flat out",
    )
    parser.add_argument("--compare-clients", type=int, nargs="+", default=[200, 1000])
    parser.add_argument("--servers", nargs="+", choices=SERVERS, default=list(SERVERS))
    parser.add_argument("--compare-events", type=int, default=60)
    parser.add_argument("--compare-rate", type=float, default=4.0)
    parser.add_argument("--http-seconds", type=int, default=10)
    parser.add_argument("--no-compression", action="store_true", help="clients offer no permessage-deflate")
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/14")
    parser.add_argument("--keep", action="store_true", help="keep the database")
    parser.add_argument("--py-spy", metavar="DIR", help="profile the server while events flow (py-spy)")
    parser.add_argument(
        "--variants",
        nargs="+",
        choices=list(VARIANTS),
        default=list(VARIANTS),
        help="as-is: the code as it is; per-connection: each connection a group member (before the hub)",
    )
    args = parser.parse_args()
    if args.step == "worker":
        return worker(args)
    if args.step == "snapshot-cost":
        return snapshot_cost(args)
    if args.step == "clients":
        return clients_main(args)
    _raise_fd_limit()
    only = set(args.only or ["ws", "sse", "compare", "http"])
    report: dict[str, Any] = {}
    with prepared(args) as bench:
        cost = subprocess.run(
            [PYTHON, str(SCRIPT), "snapshot-cost", "--org", ORG],
            cwd=SCRIPT.parent, env={**bench["worker_env"], "ANSWER_CACHE_SECONDS": "900"},
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        report["snapshot_build"] = json.loads(cost.stdout.strip().splitlines()[-1])
        _print("snapshot_build in one process (what a connect costs the server)", report["snapshot_build"])
        common = {"client_procs": args.client_procs, "concurrency": args.concurrency, "bench": bench}
        synthetic = ["--publisher", "synthetic", "--events", str(args.compare_events)]
        synthetic += ["--rate", str(args.compare_rate)]
        sync = ["--publisher", "sync"]
        for variant in args.variants:
            if "ws" in only:
                key = f"ws_{variant}"
                report[key] = measure(
                    kind="ws", server_kind="uvicorn", clients=args.clients, publisher=sync, variant=variant,
                    no_compression=args.no_compression, **common,
                )  # fmt: skip
                _print(
                    f"{args.clients} WebSocket clients, uvicorn, {variant}, during a full sync", report[key]
                )
            if "sse" in only:
                key = f"sse_{variant}"
                report[key] = measure(
                    kind="sse", server_kind="uvicorn", clients=args.sse_clients, publisher=sync,
                    variant=variant, **{**common, "client_procs": 1},
                )  # fmt: skip
                _print(f"{args.sse_clients} SSE clients, uvicorn, {variant}, during a full sync", report[key])
            if "compare" in only:
                for count in args.compare_clients:
                    for server_kind in args.servers:
                        key = f"compare_{server_kind}_{variant}_{count}"
                        report[key] = measure(
                            kind="ws", server_kind=server_kind, clients=count, publisher=synthetic,
                            variant=variant, no_compression=args.no_compression, **common,
                        )  # fmt: skip
                        _print(f"{count} WebSocket clients, {server_kind}, {variant}, synthetic", report[key])
        if "http" in only:
            for server_kind in args.servers:
                report[f"http_{server_kind}"] = wrk_http(server_kind, bench, args.http_seconds)
                _print(f"HTTP, {server_kind}, one process", report[f"http_{server_kind}"])
    _summary(report)
    print(json.dumps(report))


def _summary(report: dict[str, Any]) -> None:
    print("\n== summary (target: commit-to-client p95 <= 1 s, nothing missed or out of order)")
    for name, fig in report.items():
        if "commit_to_client_s" not in fig:
            continue
        lat, conn = fig["commit_to_client_s"], fig["connect_s"]
        faults = fig["missed"] + fig["out_of_order"] + fig["duplicated"] + fig["connect_errors"]
        ok = lat.get("p95", 99.0) <= TARGET_P95_SECONDS and not faults
        print(
            f"  {name:<27} {fig['transport']:<3} {fig['connected']:>4}/{fig['clients']:<4}"
            f" connect/s {fig['connects_per_s']:>6}"
            f" (p50 {conn.get('p50', 0):.3f} p95 {conn.get('p95', 0):.3f} s)"
            f"  {fig['events_published']:>3} events at {fig['events_per_s']}/s"
            f"  latency s p50 {lat.get('p50', 0):.3f}"
            f" p95 {lat.get('p95', 0):.3f} p99 {lat.get('p99', 0):.3f} max {lat.get('max', 0):.3f}"
            f"  missed {fig['missed']} ooo {fig['out_of_order']} dup {fig['duplicated']}"
            f" resnap {fig['resnapshots']}  KiB/conn {fig['kib_per_connection']}"
            f"  load {fig['load']}  {'ok' if ok else 'MISSES TARGET'}"
        )
    for name, figures in report.items():
        if name.startswith("http_"):
            for scenario, result in figures.items():
                print(
                    f"  {name:<21} {scenario:<22} rps {result['rps']:8.1f}  p50 {result['p50_ms']:6.1f} ms"
                    f"  p99 {result['p99_ms']:6.1f} ms  errors {result['errors']}  load {result['load']}"
                )


if __name__ == "__main__":
    main()
