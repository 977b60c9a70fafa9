"""The base PMS client against a real HTTP server on loopback that answers from a script.

Nothing in `requests` is mocked: timeouts, resets and cut-short bodies happen on a socket.
Time spent backing off runs on a fake clock, so the waits are asserted, not slept.
"""

from __future__ import annotations

import json
import logging
import random
import socket
import struct
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from sync.pms.errors import (
    PmsAuthFailed,
    PmsBadResponse,
    PmsCircuitOpen,
    PmsNotFound,
    PmsRateLimited,
    PmsRequestRejected,
    PmsUnavailable,
)
from sync.pms.http import EventKind, PmsEvent, PmsHttpClient, contact_user_agent
from sync.pms.pacing import CircuitBreaker, CircuitState, TokenBucket, credential_key
from sync.tests.fakes import FakeClock

pytestmark = pytest.mark.django_db

API_KEY = "MS0xMjM0NTY3ODkwYWJjZGVmZ2hpamtsbW5vcA-au2"
USER_AGENT = "Routiq tests (dev@routiq.example)"


# --- a scripted server ------------------------------------------------------------------------
@dataclass
class Reply:
    status: int = 200
    body: Any = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    action: str | None = None  # "reset": drop the connection; "cut": send half the body


@dataclass
class Received:
    path: str
    headers: dict[str, str]


class ScriptedServer:
    def __init__(self) -> None:
        self.replies: list[Reply] = []
        self.repeat_last = False
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.block_on_close = False
        self._httpd.script = self  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05})

    def script(self, *replies: Reply, forever: bool = False) -> None:
        self.replies = list(replies)
        self.repeat_last = forever

    def next_reply(self, path: str, headers: dict[str, str]) -> Reply:
        with self._lock:
            self.received.append(Received(path, headers))
            if not self.replies:
                return Reply(599, {"error": "unscripted request"})
            return self.replies[0] if self.repeat_last and len(self.replies) == 1 else self.replies.pop(0)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 (stdlib naming)
        reply = self.server.script.next_reply(self.path, dict(self.headers))  # type: ignore[attr-defined]
        time.sleep(reply.delay)
        if reply.action == "reset":
            # Linger 0: close() sends a RST instead of a FIN.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            return
        body = reply.body if isinstance(reply.body, bytes | str) else json.dumps(reply.body)
        payload = body.encode() if isinstance(body, str) else body
        try:
            self.send_response(reply.status)
            headers = {"Content-Type": "application/json", **reply.headers}
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if reply.action == "cut":
                self.wfile.write(payload[: len(payload) // 2])
                self.close_connection = True
            else:
                self.wfile.write(payload)
        except OSError:
            self.close_connection = True  # the client gave up waiting (timeout tests)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    scripted = ScriptedServer()
    scripted.start()
    yield scripted
    scripted.stop()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def events() -> list[PmsEvent]:
    return []


@pytest.fixture
def key() -> str:
    return credential_key(f"{API_KEY}{uuid.uuid4()}", namespace="test")


@pytest.fixture
def make_client(server, clock, events, key) -> Iterator[Any]:
    clients: list[PmsHttpClient] = []

    def make(**overrides: Any) -> PmsHttpClient:
        options: dict[str, Any] = {
            "base_url": f"{server.url}/v1",
            "user_agent": USER_AGENT,
            "auth": (API_KEY, ""),
            "pacer": TokenBucket(key, rate_per_minute=6000, burst=10, clock=clock, sleep=clock.sleep),
            "breaker": CircuitBreaker(key, failure_threshold=50, clock=clock),
            "connect_timeout": 1.0,
            "read_timeout": 1.0,
            "max_attempts": 4,
            "backoff_base": 0.5,
            "backoff_cap": 3.0,
            "clock": clock,
            "sleep": clock.sleep,
            "rng": random.Random(5),
            "on_event": events.append,
        }
        options.update(overrides)
        client = PmsHttpClient(**options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def kinds(events: list[PmsEvent]) -> list[str]:
    return [event.kind for event in events]


PATIENTS = {"patients": [{"id": "1"}], "total_entries": 1, "links": {"self": "/v1/patients"}}


# --- answers ----------------------------------------------------------------------------------
def test_success_returns_the_object_and_sends_the_headers(server, make_client, events):
    server.script(Reply(200, PATIENTS))
    body = make_client().get_json("patients", {"per_page": 100})
    assert body == PATIENTS
    [received] = server.received
    assert received.path == "/v1/patients?per_page=100"
    assert received.headers["User-Agent"] == USER_AGENT
    assert received.headers["Accept"] == "application/json"
    assert received.headers["Authorization"].startswith("Basic ")
    assert kinds(events) == [EventKind.REQUEST]
    assert events[0].status == 200 and events[0].path == "/v1/patients" and events[0].attempt == 1


def test_repeated_filters_are_sent_as_repeated_parameters(server, make_client):
    server.script(Reply(200, PATIENTS))
    make_client().get_json("patients", {"q[]": ["updated_at:>=2025-01-01T00:00:00Z", "archived_at:?"]})
    query = parse_qs(urlsplit(server.received[0].path).query)
    assert query == {"q[]": ["updated_at:>=2025-01-01T00:00:00Z", "archived_at:?"]}


def test_the_user_agent_names_product_and_contact(settings):
    settings.ROUTIQ_CONTACT_EMAIL = "integrations@routiq.example"
    assert contact_user_agent("Routiq") == "Routiq (integrations@routiq.example)"
    with pytest.raises(ValueError, match="contact"):
        PmsHttpClient(
            base_url="https://api.au1.cliniko.com/v1",
            user_agent="Routiq",
            pacer=TokenBucket("k"),
            breaker=CircuitBreaker("k"),
        )


@pytest.mark.parametrize("status", [401, 403])
def test_auth_failure_is_permanent_after_exactly_one_request(server, make_client, events, key, status):
    server.script(Reply(status, {"message": "nope"}), forever=True)
    with pytest.raises(PmsAuthFailed) as raised:
        make_client().get_json("patients")
    assert raised.value.status == status
    assert raised.value.code == "PMS_AUTH_FAILED"
    assert len(server.received) == 1
    assert EventKind.RETRY not in kinds(events)


def test_auth_failures_never_trip_the_breaker(server, make_client, key, clock):
    breaker = CircuitBreaker(key, failure_threshold=1, clock=clock)
    server.script(Reply(401), forever=True)
    client = make_client(breaker=breaker)
    for _ in range(3):
        with pytest.raises(PmsAuthFailed):
            client.get_json("patients")
    assert breaker.state() == CircuitState.CLOSED


def test_not_found_is_permanent(server, make_client):
    server.script(Reply(404, {"message": "Not found"}), forever=True)
    with pytest.raises(PmsNotFound) as raised:
        make_client().get_json("appointment_types")
    assert raised.value.status == 404
    assert len(server.received) == 1


def test_other_client_errors_are_permanent(server, make_client):
    server.script(Reply(422, {"errors": {}}), forever=True)
    with pytest.raises(PmsRequestRejected):
        make_client().get_json("patients")
    assert len(server.received) == 1


# --- transient failures -----------------------------------------------------------------------
def test_server_error_then_success_after_one_retry(server, make_client, events, clock):
    server.script(Reply(500, "oops"), Reply(200, PATIENTS))
    assert make_client().get_json("patients") == PATIENTS
    assert len(server.received) == 2
    assert kinds(events) == [EventKind.REQUEST, EventKind.RETRY, EventKind.REQUEST]
    retry = events[1]
    assert retry.reason == "http_500" and retry.attempt == 2
    assert clock.sleeps == [retry.delay]
    assert 0 <= retry.delay <= 0.5  # first retry: [0, base]


def test_server_errors_forever_exhaust_the_attempts(server, make_client, clock):
    server.script(Reply(503, "<html>down</html>", {"Content-Type": "text/html"}), forever=True)
    with pytest.raises(PmsUnavailable) as raised:
        make_client(max_attempts=4).get_json("patients")
    assert type(raised.value) is PmsUnavailable
    assert raised.value.status == 503
    assert raised.value.code == "PMS_UNAVAILABLE"
    assert len(server.received) == 4
    assert len(clock.sleeps) == 3
    for n, slept in enumerate(clock.sleeps):
        assert 0 <= slept <= min(3.0, 0.5 * 2**n)


def test_a_read_timeout_is_retried(server, make_client, events):
    server.script(Reply(200, PATIENTS, delay=0.6), Reply(200, PATIENTS))
    started = time.monotonic()
    assert make_client(read_timeout=0.2).get_json("patients") == PATIENTS
    assert time.monotonic() - started < 0.6  # gave up on the first answer, did not wait for it
    assert len(server.received) == 2
    assert events[0].reason == "timeout" and events[0].status is None


def test_a_connection_reset_is_retried(server, make_client, events):
    server.script(Reply(action="reset"), Reply(200, PATIENTS))
    assert make_client().get_json("patients") == PATIENTS
    assert events[0].reason == "connection_error"


def test_a_body_cut_short_on_the_wire_is_retried(server, make_client, events):
    server.script(Reply(200, PATIENTS, action="cut"), Reply(200, PATIENTS))
    assert make_client().get_json("patients") == PATIENTS
    assert events[0].reason == "connection_error"


def test_truncated_json_is_retried_then_unavailable(server, make_client, events):
    server.script(Reply(200, '{"patients": [{"id": "1"'), forever=True)
    with pytest.raises(PmsBadResponse) as raised:
        make_client(max_attempts=3).get_json("patients")
    assert isinstance(raised.value, PmsUnavailable)
    assert len(server.received) == 3
    assert {e.reason for e in events if e.kind == EventKind.REQUEST} == {"invalid_json"}


def test_an_html_page_is_retried_then_unavailable(server, make_client, events):
    page = "<!DOCTYPE html><html><body>Maintenance</body></html>"
    server.script(Reply(200, page, {"Content-Type": "text/html; charset=utf-8"}), forever=True)
    with pytest.raises(PmsUnavailable):
        make_client(max_attempts=2).get_json("patients")
    assert len(server.received) == 2
    assert events[0].reason == "html_body"


def test_an_html_page_then_json_succeeds(server, make_client):
    server.script(Reply(200, "<html></html>", {"Content-Type": "text/html"}), Reply(200, PATIENTS))
    assert make_client().get_json("patients") == PATIENTS


def test_full_jitter_stays_within_its_bounds(make_client):
    client = make_client(backoff_base=0.5, backoff_cap=8.0, rng=random.Random(11))
    for n in range(12):
        ceiling = min(8.0, 0.5 * 2**n)
        samples = [client.backoff_delay(n) for _ in range(300)]
        assert all(0 <= s <= ceiling for s in samples)
        # Really jittered across the whole range, not a fixed or half-range delay.
        assert min(samples) < 0.1 * ceiling and max(samples) > 0.9 * ceiling


# --- 429 --------------------------------------------------------------------------------------
def test_rate_limited_waits_for_the_reset_then_succeeds(server, make_client, events, clock, key):
    reset = int(clock.now) + 2
    server.script(Reply(429, "", {"X-RateLimit-Reset": str(reset)}), Reply(200, PATIENTS))
    seen_by_other_process: list[float] = []

    def on_event(event: PmsEvent) -> None:
        events.append(event)
        if event.kind == EventKind.RETRY:
            # Anyone else spending this user's budget is held until the reset too.
            seen_by_other_process.append(TokenBucket(key, clock=clock).try_acquire())

    assert make_client(on_event=on_event).get_json("patients") == PATIENTS
    assert kinds(events) == [EventKind.REQUEST, EventKind.RATE_LIMITED, EventKind.RETRY, EventKind.REQUEST]
    assert events[1].retry_at == reset
    wait = events[2].delay
    assert 2.0 <= wait <= 3.0  # until the reset, plus at most a second of jitter
    assert clock.sleeps[0] == wait
    assert seen_by_other_process[0] == pytest.approx(2.0)
    assert len(server.received) == 2


def test_a_distant_reset_is_not_waited_for(server, make_client, clock):
    reset = int(clock.now) + 3600
    server.script(Reply(429, "", {"X-RateLimit-Reset": str(reset)}), forever=True)
    with pytest.raises(PmsRateLimited) as raised:
        make_client(max_rate_limit_wait=120).get_json("patients")
    assert raised.value.retry_at == reset
    assert len(server.received) == 1
    assert clock.sleeps == []


def test_rate_limited_without_a_reset_backs_off_then_gives_up(server, make_client, clock):
    server.script(Reply(429, "Too Many Requests", {"Content-Type": "text/plain"}), forever=True)
    with pytest.raises(PmsRateLimited) as raised:
        make_client(max_attempts=3).get_json("patients")
    assert raised.value.status == 429
    assert len(server.received) == 3
    assert len(clock.sleeps) >= 2


# --- circuit breaker --------------------------------------------------------------------------
def test_open_circuit_refuses_without_a_network_call(server, make_client, events, clock, key):
    breaker = CircuitBreaker(key, failure_threshold=2, reset_timeout=60, clock=clock)
    client = make_client(breaker=breaker, max_attempts=1)
    server.script(Reply(502), forever=True)
    with pytest.raises(PmsUnavailable):
        client.get_json("patients")
    with pytest.raises(PmsCircuitOpen):  # the failure that opens it says so
        client.get_json("patients")
    assert EventKind.CIRCUIT_OPENED in kinds(events)

    sent = len(server.received)
    with pytest.raises(PmsCircuitOpen) as raised:
        client.get_json("patients")
    assert isinstance(raised.value, PmsUnavailable)
    assert raised.value.retry_at == pytest.approx(clock.now + 60)
    assert len(server.received) == sent
    assert events[-1].kind == EventKind.CIRCUIT_OPEN

    clock.now += 60
    assert breaker.state() == CircuitState.HALF_OPEN
    server.script(Reply(200, PATIENTS))
    assert client.get_json("patients") == PATIENTS
    assert breaker.state() == CircuitState.CLOSED


def test_retries_stop_once_the_circuit_opens(server, make_client, key, clock):
    breaker = CircuitBreaker(key, failure_threshold=2, clock=clock)
    server.script(Reply(500), forever=True)
    with pytest.raises(PmsCircuitOpen):
        make_client(breaker=breaker, max_attempts=5).get_json("patients")
    assert len(server.received) == 2


# --- pagination -------------------------------------------------------------------------------
def page(server, number: int, last: int) -> Reply:
    links = {"self": f"{server.url}/v1/patients?page={number}&per_page=2"}
    if number < last:
        links["next"] = f"{server.url}/v1/patients?page={number + 1}&per_page=2"
    items = [{"id": str(2 * number - 1)}, {"id": str(2 * number)}]
    return Reply(200, {"patients": items, "total_entries": 2 * last, "links": links})


def test_pages_follow_links_next_and_yield_every_item_once(server, make_client):
    server.script(page(server, 1, 3), page(server, 2, 3), page(server, 3, 3))
    pages = list(make_client().iter_pages("patients", {"per_page": 2}, items_key="patients"))
    assert [p.number for p in pages] == [1, 2, 3]
    ids = [item["id"] for p in pages for item in p.items]
    assert ids == ["1", "2", "3", "4", "5", "6"]
    assert pages[0].meta["total_entries"] == 6 and "patients" not in pages[0].meta
    assert pages[-1].next_url is None
    assert [r.path for r in server.received] == [
        "/v1/patients?per_page=2",
        "/v1/patients?page=2&per_page=2",
        "/v1/patients?page=3&per_page=2",
    ]


def test_a_failure_mid_way_raises_instead_of_truncating(server, make_client):
    server.script(page(server, 1, 3), Reply(500), Reply(500), Reply(500), Reply(500))
    seen: list[str] = []
    with pytest.raises(PmsUnavailable):
        for p in make_client(max_attempts=4).iter_pages("patients", items_key="patients"):
            seen.extend(item["id"] for item in p.items)
    assert seen == ["1", "2"]


def test_a_page_without_its_items_raises(server, make_client):
    server.script(page(server, 1, 2), Reply(200, {"links": {}}))
    with pytest.raises(PmsBadResponse):
        list(make_client().iter_pages("patients", items_key="patients"))


def test_a_next_link_to_another_host_is_refused(server, make_client):
    body = {"patients": [], "links": {"next": "https://attacker.example/v1/patients?page=2"}}
    server.script(Reply(200, body))
    with pytest.raises(PmsRequestRejected):
        list(make_client().iter_pages("patients", items_key="patients"))
    assert len(server.received) == 1


def test_a_next_link_loop_raises(server, make_client):
    looping = {"patients": [{"id": "1"}], "links": {"next": f"{server.url}/v1/patients?page=2"}}
    server.script(Reply(200, looping), forever=True)
    with pytest.raises(PmsBadResponse, match="links back"):
        list(make_client().iter_pages("patients", items_key="patients"))
    assert len(server.received) == 2


# --- secrets ----------------------------------------------------------------------------------
def test_logs_and_errors_hold_no_credentials_or_query(server, make_client, caplog, clock):
    caplog.set_level(logging.DEBUG, logger="sync.pms")
    secret_filter = "email:=jane.citizen@example.com"
    server.script(Reply(503), Reply(503), Reply(action="reset"), Reply(200, action="cut"), forever=False)
    with pytest.raises(PmsUnavailable) as raised:
        make_client(max_attempts=4).get_json("patients", {"q[]": secret_filter})
    text = caplog.text + str(raised.value) + repr(raised.value.__cause__) + repr(raised.value.__context__)
    assert "/v1/patients" in caplog.text
    for secret in (API_KEY, "jane.citizen", "Basic "):
        assert secret not in text
