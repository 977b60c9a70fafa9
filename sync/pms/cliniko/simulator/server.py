"""`ClinikoSimulator`: the store, the gate and the faults behind a real HTTP server on
loopback, served from a background thread (or the foreground, for the CLI)."""

from __future__ import annotations

import hashlib
import re
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime
from http.server import ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal
from zoneinfo import ZoneInfo

from sync.synthetic import ClinicSpec, SyntheticClinic, generate_clinic

from .clock import SimClock
from .faults import FaultInjector, FaultPlan
from .handler import SimulatorHandler
from .store import ClinikoStore
from .traffic import RateLimiter, TrafficStats

# A key's shard is the suffix after its last hyphen (reference §1.2); both forms work.
_SHARD_SUFFIX = re.compile(r"-\w{2}\d{1,2}$")


def default_api_key(seed: int) -> str:
    """A stable key for a seed, shaped like Cliniko's (`<secret>-<shard>`)."""
    secret = hashlib.sha256(f"cliniko-simulator:{seed}".encode()).hexdigest()[:40]
    return f"{secret}-au1"


class SimulatorHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # a handler stalled by a timeout fault must not hold up stop()
    request_queue_size = 128
    sim: ClinikoSimulator

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError | TimeoutError) or not self.sim.verbose:
            return
        super().handle_error(request, client_address)


class ClinikoSimulator:
    """A simulated Cliniko account at `api_url` (`http://127.0.0.1:<port>/v1`).

    Give it a generated `clinic` or a `spec` (default: 2,000 patients, seed 1, today in the
    clinic's time zone). Knobs: `rate_limit` requests per `window_seconds` per user (0: off),
    `faults` (a FaultPlan; change later through `.faults`), `clock` (stamps data changes),
    `user_agent_policy` ("contact": a name and an email, as Cliniko asks; "present": any),
    `require_accept_json`, `stamp_state_changes` (see ClinikoStore). Data changes go through
    `.store`; counters are in `.stats`.
    """

    def __init__(self, *, clinic: SyntheticClinic | None = None, spec: ClinicSpec | None = None,
                 host: str = "127.0.0.1", port: int = 0, api_key: str | None = None,
                 rate_limit: int = 200, window_seconds: float = 60.0,
                 faults: FaultPlan | None = None, clock: SimClock | None = None,
                 user_agent_policy: Literal["contact", "present"] = "contact",
                 require_accept_json: bool = True, stamp_state_changes: bool = True,
                 verbose: bool = False) -> None:
        if clinic is None:
            zone = (spec or ClinicSpec()).time_zone
            spec = spec or ClinicSpec(today=datetime.now(ZoneInfo(zone)).date())
        self._clinic = clinic
        self._spec = spec if clinic is None else clinic.spec
        self.host, self._requested_port = host, port
        self.api_key = api_key or default_api_key(self._spec.seed)
        self._users: dict[str, str] = {}
        self.add_api_key(self.api_key, user="user-1")
        self.rate_limiter = RateLimiter(rate_limit, window_seconds=window_seconds)
        self.faults = FaultInjector(faults)
        self.clock = clock or SimClock()
        self.stats = TrafficStats()
        self.user_agent_policy = user_agent_policy
        self.require_accept_json = require_accept_json
        self.stamp_state_changes = stamp_state_changes
        self.verbose = verbose
        self.stopping = threading.Event()
        self.startup_seconds = 0.0
        self._server: SimulatorHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.store: ClinikoStore

    # --- identity --------------------------------------------------------------------------
    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the simulator is not started")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host
        return f"http://{host}:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/v1"

    def add_api_key(self, key: str, *, user: str | None = None) -> None:
        """Accept another key; keys of the same `user` share one rate-limit budget."""
        self._users[_SHARD_SUFFIX.sub("", key)] = user or f"user-{len(self._users) + 1}"

    def user_for(self, key: str) -> str | None:
        return self._users.get(_SHARD_SUFFIX.sub("", key))

    def set_rate_limit(self, limit: int, *, window_seconds: float | None = None,
                       clock: Callable[[], float] | None = None) -> None:
        self.rate_limiter.configure(limit, window_seconds=window_seconds, clock=clock)

    # --- lifecycle -------------------------------------------------------------------------
    def start(self) -> ClinikoSimulator:
        """Bind, build the store (links need the port), serve from a daemon thread."""
        self._bind_and_load()
        assert self._server is not None
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                                        name=f"cliniko-simulator-{self.port}", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve from the calling thread until stop() or KeyboardInterrupt."""
        if self._server is None:
            self._bind_and_load()
        assert self._server is not None
        try:
            self._server.serve_forever(poll_interval=0.2)
        finally:
            self._close()

    def stop(self) -> None:
        self.stopping.set()
        if self._server is not None and self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._close()

    def __enter__(self) -> ClinikoSimulator:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()

    def _bind_and_load(self) -> None:
        if self._server is not None:
            raise RuntimeError("the simulator is already started")
        started = time.perf_counter()
        self.stopping.clear()
        self._server = SimulatorHTTPServer((self.host, self._requested_port), SimulatorHandler)
        self._server.sim = self
        try:
            clinic = self._clinic or generate_clinic(self._spec)
            self.store = ClinikoStore(clinic, api_root=self.api_url, clock=self.clock,
                                      stamp_state_changes=self.stamp_state_changes)
        except BaseException:
            self._close()
            raise
        self.startup_seconds = time.perf_counter() - started

    def _close(self) -> None:
        if self._server is not None:
            self._server.server_close()
            self._server = None
