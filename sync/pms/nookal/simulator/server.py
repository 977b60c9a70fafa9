"""`NookalSimulator`: the store behind a real HTTP server on loopback (stdlib only), speaking
the v2 envelope of ../shared/reference/nookal/README.md §2-§3."""

from __future__ import annotations

import json
import threading
from collections import Counter, deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from .store import MODIFIED_FIELDS, RESULT_KEYS, NookalStore

PREFIX = "/production/v2/"
DEFAULT_PAGE_LENGTH = 100
MAX_PAGE_LENGTH = 200
FAULT_KINDS = ("failure", "500", "502", "503")


def failure_body(code: str, *, message: str = "", alerts: list[str] | None = None) -> dict[str, Any]:
    details: dict[str, Any] = {"errorCode": code}
    if message:
        details["errorMessage"] = message
    if alerts is not None:
        details["alerts"] = alerts
    return {"status": "failure", "details": details}


def success_body(function: str, results: dict[str, Any], *, page: int, page_length: int,
                 total: int, current: int, next_page: int | None) -> dict[str, Any]:
    return {
        "data": {"api_call": function, "results": results},
        "details": {"currentItems": current, "totalItems": total},
        "settings": {"currentPage": str(page), "nextPage": next_page, "pageLength": page_length},
        "status": "success",
    }


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        return

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        self._serve(dict(parse_qsl(urlsplit(self.path).query, keep_blank_values=True)))

    def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode("utf-8", "replace") if length else ""
        self._serve(dict(parse_qsl(raw, keep_blank_values=True)))

    def _serve(self, form: dict[str, str]) -> None:
        path = urlsplit(self.path).path
        sim = self.server.sim
        if not path.startswith(PREFIX):
            self._send(404, b"<html><body>Not Found</body></html>", "text/html")
            return
        function = path[len(PREFIX):]
        sim.count(function, self.command)
        fault = sim.next_fault()
        if fault is not None:
            self._fault(fault)
            return
        status, body = sim.answer(function, form)
        self._send(status, json.dumps(body).encode(), "application/json")

    def _fault(self, kind: str) -> None:
        if kind == "failure":
            body = failure_body("E500", message="Simulated failure", alerts=["Something went wrong"])
            self._send(200, json.dumps(body).encode(), "application/json")
        elif kind == "500":
            self._send(500, b'{"error": "internal"}', "application/json")
        else:
            self._send(int(kind), b"<html><body>Bad gateway</body></html>", "text/html")

    def _send(self, status: int, payload: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", f"{content_type}; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    sim: NookalSimulator


class NookalSimulator:
    """A simulated Nookal account at `base_url` (`http://127.0.0.1:<port>`; functions under
    `/production/v2/`). Faults: `queue_fault(kind, count)` with kind `failure` (HTTP 200,
    `status: "failure"`), `500` (JSON) or `502`/`503` (HTML); each answers one request."""

    def __init__(self, *, store: NookalStore | None = None, api_key: str = "nookal-sim-key-0001",
                 host: str = "127.0.0.1", port: int = 0) -> None:
        self.store = store or NookalStore()
        self.api_key = api_key
        self.host, self._port = host, port
        self.requests: Counter[str] = Counter()
        self.methods: Counter[str] = Counter()
        self._faults: deque[str] = deque()
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle -------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the simulator is not started")
        return f"http://{self.host}:{self._server.server_address[1]}"

    @property
    def api_url(self) -> str:
        return f"{self.base_url}{PREFIX.rstrip('/')}"

    def start(self) -> NookalSimulator:
        self._server = _Server((self.host, self._port), _Handler)
        self._server.sim = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="nookal-sim", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> NookalSimulator:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # --- control ---------------------------------------------------------------------------
    def queue_fault(self, kind: str, count: int = 1) -> None:
        if kind not in FAULT_KINDS:
            raise ValueError(f"fault kind must be one of {', '.join(FAULT_KINDS)}")
        with self._lock:
            self._faults.extend([kind] * count)

    def next_fault(self) -> str | None:
        with self._lock:
            return self._faults.popleft() if self._faults else None

    def count(self, function: str, method: str) -> None:
        with self._lock:
            self.requests[function] += 1
            self.methods[method] += 1

    @property
    def total_requests(self) -> int:
        with self._lock:
            return sum(self.requests.values())

    # --- answers ---------------------------------------------------------------------------
    def answer(self, function: str, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        """(HTTP status, body) for one call. Application errors are HTTP 200 (§2)."""
        key = form.get("api_key", "")
        if not key:
            return 200, failure_body("L000_1", alerts=["Missing variable: api_key"])
        if key != self.api_key:
            # The code and wording for a wrong key are not documented: invented here.
            return 200, failure_body("L000_2", message="Invalid API key", alerts=["Invalid API key"])
        if function == "verify":
            return 200, success_body("verify", {"verify": True}, page=1, page_length=1, total=1,
                                     current=1, next_page=None)
        if function not in RESULT_KEYS:
            return 404, failure_body("F404", message=f"Unknown function {function}")
        try:
            page = int(form.get("page") or 1)
            page_length = min(int(form.get("page_length") or DEFAULT_PAGE_LENGTH), MAX_PAGE_LENGTH)
        except ValueError:
            return 200, failure_body("V001", message="page and page_length must be numbers")
        if page < 1 or page_length < 1:
            return 200, failure_body("V001", message="page and page_length must be positive")
        return 200, self._listing(function, form, page, page_length)

    def _listing(self, function: str, form: dict[str, str], page: int, page_length: int) -> dict[str, Any]:
        records = self.store.records(function)
        since = form.get("last_modified", "")
        if since and function in MODIFIED_FIELDS:
            # Same fixed-width format on both sides, so text order is time order.
            records = [r for r in records if r[MODIFIED_FIELDS[function]] >= since]
        chunk = records[(page - 1) * page_length : page * page_length]
        next_page = page + 1 if page * page_length < len(records) else None
        return success_body(function, {RESULT_KEYS[function]: chunk}, page=page, page_length=page_length,
                            total=len(records), current=len(chunk), next_page=next_page)
