"""HTTP handling: the checks a Cliniko request passes (User-Agent, auth, Accept, rate
limit), routing to the store, and fault injection around it all."""

from __future__ import annotations

import base64
import binascii
import logging
import re
import socket
import struct
import time
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from . import admin
from .faults import FaultKind
from .filters import INVALID_QUERY, QueryError
from .responses import (
    Response,
    html_page,
    list_body,
    message,
    not_found_page,
    throttled,
)

if TYPE_CHECKING:
    from .server import ClinikoSimulator

logger = logging.getLogger(__name__)

DEFAULT_PER_PAGE = 50
MAX_PER_PAGE = 100
_EMAIL = re.compile(r"[^\s@()<>,;]+@[^\s@()<>,;]+\.[A-Za-z]{2,}")


def route_label(path: str, sim: ClinikoSimulator) -> str:
    parts = path.removeprefix("/v1/").strip("/").split("/")
    if not path.startswith("/v1/") or parts[0] not in sim.store.tables or len(parts) > 2:
        return "other"
    if len(parts) == 2:
        return f"/v1/{parts[0]}/{{id}}" if parts[1].isdigit() else f"/v1/{parts[0]}/{parts[1]}"
    return f"/v1/{parts[0]}"


class SimulatorHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ClinikoSimulator/1.0"
    server: Any  # SimulatorHTTPServer, which carries `.sim`

    def setup(self) -> None:
        super().setup()
        # Headers and body go out as separate writes; without this, Nagle's algorithm and
        # the client's delayed ACK add ~40 ms to every keep-alive response.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self) -> None:
        self._handle()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.sim.verbose:
            super().log_message(format, *args)

    # --- dispatch --------------------------------------------------------------------------
    def _handle(self) -> None:
        sim: ClinikoSimulator = self.server.sim
        body = self._read_body()
        split = urlsplit(self.path)
        try:
            if split.path.startswith("/__sim/"):
                self._send(admin.handle(sim, self.command, split.path, body))
                return
            self._handle_api(sim, split.path, split.query)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception:
            # A simulator bug: say so loudly rather than leave the client a dropped socket.
            logger.exception("simulator failed on %s %s", self.command, self.path)
            self._send(message(500, "The simulator failed; see its log."))

    def _handle_api(self, sim: ClinikoSimulator, path: str, query: str) -> None:
        # Counters are updated before the answer goes out, so a client that has its answer
        # can rely on the counters including it.
        route = route_label(path, sim)
        fault = sim.faults.draw(path)
        label = None if fault is None else str(fault)
        if fault is FaultKind.RESET:
            sim.stats.record(route=route, status=None, fault=label)
            self._reset()
            return
        if fault is not None and fault.before_handling:
            response = _fault_response(fault)
            sim.stats.record(route=route, status=response.status, fault=label, size=len(response.body))
            self._send(response)
            return
        if fault is FaultKind.TIMEOUT and sim.stopping.wait(sim.faults.plan.timeout_seconds):
            sim.stats.record(route=route, status=None, fault=label)
            self._reset()
            return
        response, limited = self._respond(sim, path, query)
        if fault is FaultKind.TRUNCATED:
            response.body = response.body[: len(response.body) // 2]
        cut = fault is FaultKind.INCOMPLETE
        sent = len(response.body) // 2 if cut else len(response.body)
        sim.stats.record(route=route, status=response.status, rate_limited=limited, fault=label, size=sent)
        self._send(response, cut=cut)

    def _respond(self, sim: ClinikoSimulator, path: str, query: str) -> tuple[Response, bool]:
        refusal = self._refuse(sim)
        if refusal is not None:
            return refusal, False
        decision = sim.rate_limiter.check(sim.user_for(self._api_key() or "") or "")
        if not decision.allowed:
            return throttled(decision.reset), True
        if self.command != "GET":
            return message(405, "The simulator serves GET requests only.", Allow="GET"), False
        try:
            return self._route(sim, path, query), False
        except QueryError as exc:
            return message(400, exc.message), False

    def _refuse(self, sim: ClinikoSimulator) -> Response | None:
        """User-Agent, then the key, then Accept: the gate in front of the API."""
        agent = (self.headers.get("User-Agent") or "").strip()
        if not agent or (sim.user_agent_policy == "contact" and not _EMAIL.search(agent)):
            # Cliniko "may automatically block" a User-Agent without a name and a contact
            # email; the status is UNKNOWN in the reference, 403 is the simulator's choice.
            return message(403, "Requests must send a User-Agent naming the application and a "
                                "contact email, e.g. 'Routiq (devs@example.com)'.")
        key = self._api_key()
        if key is None or sim.user_for(key) is None:
            return message(401, "Unauthorized", **{"WWW-Authenticate": 'Basic realm="Cliniko API"'})
        accept = (self.headers.get("Accept") or "").lower()
        if sim.require_accept_json and "application/json" not in accept:
            return message(406, "Send 'Accept: application/json'.")
        return None

    def _api_key(self) -> str | None:
        scheme, _, credentials = (self.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            decoded = base64.b64decode(credentials.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        key = decoded.partition(":")[0]
        return key or None

    # --- routes ----------------------------------------------------------------------------
    def _route(self, sim: ClinikoSimulator, path: str, query: str) -> Response:
        if not path.startswith("/v1/"):
            return not_found_page()
        parts = path[4:].strip("/").split("/")
        if parts[0] not in sim.store.tables or len(parts) > 2:
            return not_found_page()
        params = parse_qsl(query, keep_blank_values=True)
        filters = [value for key, value in params if key in ("q[]", "q")]
        resource = parts[0]
        if len(parts) == 2 and parts[1].isdigit():
            blob = sim.store.get_blob(resource, parts[1], filters=filters)
            if blob is None:
                return message(404, "Not found")
            return Response(200, blob)
        suffix = parts[1] if len(parts) == 2 else None
        if sim.store.view(resource, suffix) is None:
            return not_found_page()
        return self._list(sim, path, params, resource, suffix, filters)

    def _list(self, sim: ClinikoSimulator, path: str, params: list[tuple[str, str]],
              resource: str, suffix: str | None, filters: list[str]) -> Response:
        values = dict(params)
        page = _whole_number(values.get("page"), 1)
        per_page = min(MAX_PER_PAGE, _whole_number(values.get("per_page"), DEFAULT_PER_PAGE))
        # `sort` is "comma separated" in the spec and typed as an array: accept both forms.
        sort = ",".join(value for key, value in params if key in ("sort", "sort[]")) or None
        result = sim.store.list_page(resource, suffix, filters=filters, sort=sort,
                                     order=values.get("order"), page=page, per_page=per_page)
        rest = [(k, str(per_page) if k == "per_page" else v) for k, v in params if k != "page"]

        def page_url(number: int) -> str:
            return f"{sim.base_url}{path}?{urlencode([('page', str(number)), *rest])}"

        links = {"self": page_url(page)}
        if page * per_page < result.total:
            links["next"] = page_url(page + 1)
        if page > 1:
            links["previous"] = page_url(page - 1)
        return Response(200, list_body(resource, result.items, result.total, links))

    # --- writing ---------------------------------------------------------------------------
    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _send(self, response: Response, *, cut: bool = False) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if cut:
            self.wfile.write(response.body[: len(response.body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(response.body)

    def _reset(self) -> None:
        """Drop the connection with a TCP reset and no response at all."""
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        self.connection.close()


def _whole_number(value: str | None, default: int) -> int:
    if value is None or value == "":
        return default
    try:
        return max(1, int(value))
    except ValueError:
        raise QueryError(INVALID_QUERY) from None


def _fault_response(fault: FaultKind) -> Response:
    if fault is FaultKind.RATE_LIMIT:
        return throttled(int(time.time()) + 1)
    if fault is FaultKind.SERVER_ERROR:
        return message(500, "Internal Server Error")
    if fault is FaultKind.BAD_GATEWAY:
        return html_page(502, "502 Bad Gateway", "nginx")
    if fault is FaultKind.UNAVAILABLE:
        return html_page(503, "503 Service Temporarily Unavailable",
                         "Cliniko is down for scheduled maintenance. Please try again soon.")
    if fault is FaultKind.HTML:
        return html_page(200, "Cliniko", "Please sign in to continue.")
    raise ValueError(fault)
