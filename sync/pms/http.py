"""The one HTTP client every PMS client (Cliniko, Nookal) extends.

Every call has a timeout, bounded attempts, and one classification of what came back:

- 2xx with a JSON object: the answer.
- 401/403 (`PmsAuthFailed`), 404 (`PmsNotFound`), other 4xx (`PmsRequestRejected`): permanent,
  raised at once, never retried.
- 429: every process sharing the credential's token bucket holds until `X-RateLimit-Reset`
  (Unix seconds), this one sleeps until then plus a little jitter, then retries.
- 5xx, timeouts, connection errors, HTML or invalid JSON: retried after exponential backoff
  with full jitter, `random(0, min(cap, base * 2**n))` before retry n+1.
- Attempts exhausted: `PmsRateLimited`, `PmsBadResponse` or `PmsUnavailable`, after the last
  failure's kind.

The circuit breaker counts transient failures only. Permanent answers (and 429s) prove the
server is up and answering, so they count as successes for it: a revoked key must mark the
connection as needing attention, not make the PMS look down for every other call.

Each attempt first asks the breaker, then takes a pacing token. `on_event` receives a `PmsEvent`
for each request sent, retry scheduled, 429, pacing wait and breaker refusal, so a sync run
can count them. Logs and errors name the method, the path (no query string: filters may
hold patient details, and some PMSs put keys there), the status and the attempt, never
credentials or full URLs.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import requests
from django.conf import settings
from requests.auth import AuthBase
from requests.exceptions import ChunkedEncodingError, ContentDecodingError

from sync.pms.errors import (
    PmsAuthFailed,
    PmsBadResponse,
    PmsCircuitOpen,
    PmsError,
    PmsNotFound,
    PmsRateLimited,
    PmsRequestRejected,
    PmsUnavailable,
)

logger = logging.getLogger(__name__)

# Repeated parameters (Cliniko's `q[]` filters) as a list value or as (name, value) pairs.
Params = Mapping[str, Any] | Sequence[tuple[str, Any]] | None
Auth = AuthBase | tuple[str, str] | Callable[[requests.PreparedRequest], requests.PreparedRequest]


class Pacer(Protocol):
    def acquire(self) -> float: ...

    def hold_until(self, until: float) -> None: ...


class Breaker(Protocol):
    def before_call(self) -> None: ...

    def record_success(self) -> None: ...

    def record_failure(self) -> float | None: ...


class EventKind:
    REQUEST = "request"  # an attempt got an answer or failed on the wire (status None)
    RETRY = "retry"  # another attempt follows after `delay` seconds
    RATE_LIMITED = "rate_limited"  # a 429; `retry_at` is the server's reset time if it sent one
    PACED = "paced"  # the shared token bucket made this call wait `delay` seconds
    CIRCUIT_OPEN = "circuit_open"  # refused without a network call
    CIRCUIT_OPENED = "circuit_opened"  # this failure opened the circuit until `retry_at`


@dataclass(frozen=True)
class PmsEvent:
    kind: str
    method: str
    path: str
    attempt: int
    status: int | None = None
    reason: str | None = None
    elapsed: float | None = None
    delay: float | None = None
    retry_at: float | None = None


@dataclass(frozen=True)
class Page:
    number: int
    items: list[Any]
    meta: dict[str, Any]  # the page's body without its items (links, total_entries...)
    next_url: str | None


@dataclass(frozen=True)
class _Failure:
    reason: str
    error: type[PmsUnavailable]
    status: int | None = None
    reset_at: float | None = None


def contact_user_agent(product: str = "Routiq") -> str:
    """`Product (contact@address)`: Cliniko may block callers without a name and an email."""
    return f"{product} ({settings.ROUTIQ_CONTACT_EMAIL})"


class PmsHttpClient:
    """Base of the PMS clients. One instance per thread (a `requests.Session` is not
    thread-safe); the pacer and breaker it is given are what processes share."""

    method = "GET"

    def __init__(
        self,
        *,
        base_url: str,
        user_agent: str,
        pacer: Pacer,
        breaker: Breaker,
        auth: Auth | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        max_attempts: int = 5,
        backoff_base: float = 1.0,
        backoff_cap: float = 30.0,
        max_rate_limit_wait: float = 120.0,
        rate_limit_jitter: float = 1.0,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        on_event: Callable[[PmsEvent], None] | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in {"http", "https"} or not parts.netloc:
            raise ValueError("base_url must be an absolute http(s) URL")
        if "@" not in user_agent:
            raise ValueError("user_agent must name the product and a contact email address")
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.base_url = base_url.rstrip("/")
        self._origin = (parts.scheme, parts.netloc)
        self.pacer = pacer
        self.breaker = breaker
        self.timeout = (connect_timeout, read_timeout)
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.max_rate_limit_wait = max_rate_limit_wait
        self.rate_limit_jitter = rate_limit_jitter
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._on_event = on_event
        self.session = requests.Session()
        self.session.headers.update({"User-Agent": user_agent, "Accept": "application/json"})
        self.session.auth = auth
        self.session.max_redirects = 3

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._origin[1]}>"

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> PmsHttpClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- public ---------------------------------------------------------------------------
    def get_json(self, path_or_url: str, params: Params = None) -> dict[str, Any]:
        """GET a JSON object: a path relative to `base_url`, or an absolute URL on its host."""
        url = self._url(path_or_url)
        path = urlsplit(url).path
        failure: _Failure | None = None
        for attempt in range(1, self.max_attempts + 1):
            if failure is not None:
                self._wait_before_retry(failure, path, attempt)
            self._before_attempt(path, attempt)
            outcome = self._attempt(url, params, path, attempt)
            if not isinstance(outcome, _Failure):
                return outcome
            failure = outcome
        assert failure is not None
        logger.warning(
            "%s %s gave up after %d attempts (%s)", self.method, path, self.max_attempts, failure.reason
        )
        raise failure.error(
            f"{self.method} {path}: {failure.reason} after {self.max_attempts} attempts",
            status=failure.status,
            retry_at=failure.reset_at,
        )

    def iter_pages(self, path: str, params: Params = None, *, items_key: str) -> Iterator[Page]:
        """Every page from `path` on, following `links.next` until a page has none.

        A failure on any page raises: a listing is complete or it is an error, never short."""
        url: str | None = path
        page_params = params
        seen: set[str] = set()
        number = 0
        while url is not None:
            number += 1
            body = self.get_json(url, page_params)
            items = body.get(items_key)
            if not isinstance(items, list):
                raise PmsBadResponse(
                    f"{self.method} {urlsplit(path).path}: page {number} has no {items_key!r} list"
                )
            next_url = self.next_link(body)
            if next_url is not None:
                if next_url in seen:
                    raise PmsBadResponse(f"{self.method} {urlsplit(path).path}: page {number} links back")
                seen.add(next_url)
            yield Page(number, items, {k: v for k, v in body.items() if k != items_key}, next_url)
            url, page_params = next_url, None

    def backoff_delay(self, retry_number: int) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2**retry_number)], retry_number from 0."""
        ceiling = min(self.backoff_cap, self.backoff_base * 2 ** min(retry_number, 32))
        return self._rng.uniform(0.0, ceiling)

    # --- hooks for subclasses ---------------------------------------------------------------
    def next_link(self, body: dict[str, Any]) -> str | None:
        """The next page's URL (Cliniko: `links.next`)."""
        links = body.get("links")
        next_url = links.get("next") if isinstance(links, dict) else None
        return next_url if isinstance(next_url, str) and next_url else None

    def rate_limit_reset(self, response: requests.Response) -> float | None:
        """Unix time the server's rate limit resets (Cliniko: `X-RateLimit-Reset`), if sent."""
        raw = response.headers.get("X-RateLimit-Reset", "").strip()
        try:
            value = float(raw)
        except ValueError:
            return None
        return value if value > 0 else None

    # --- one attempt ------------------------------------------------------------------------
    def _url(self, path_or_url: str) -> str:
        parts = urlsplit(path_or_url)
        if parts.scheme or parts.netloc:
            if (parts.scheme, parts.netloc) != self._origin:
                # The session sends credentials with every request: never to another host.
                raise PmsRequestRejected(f"refusing to call another host than {self._origin[1]}")
            return path_or_url
        return f"{self.base_url}/{path_or_url.lstrip('/')}"

    def _before_attempt(self, path: str, attempt: int) -> None:
        try:
            self.breaker.before_call()
        except PmsCircuitOpen as exc:
            self._emit(EventKind.CIRCUIT_OPEN, path, attempt, retry_at=exc.retry_at)
            raise
        waited = self.pacer.acquire()
        if waited > 0:
            self._emit(EventKind.PACED, path, attempt, delay=waited)

    def _attempt(self, url: str, params: Params, path: str, attempt: int) -> dict[str, Any] | _Failure:
        started = time.monotonic()
        try:
            response = self._send(url, params)
        except requests.Timeout:
            return self._transient(path, attempt, _Failure("timeout", PmsUnavailable), started)
        except (requests.ConnectionError, ChunkedEncodingError, ContentDecodingError):
            return self._transient(path, attempt, _Failure("connection_error", PmsUnavailable), started)
        except requests.RequestException as exc:
            # Invalid URL, too many redirects...: a bug or a misconfiguration, not an outage.
            raise PmsError(f"{self.method} {path}: request not possible ({type(exc).__name__})") from None
        return self._classify(response, path, attempt, started)

    def _send(self, url: str, params: Params) -> requests.Response:
        """One HTTP exchange; a PMS that is not plain GET-with-query overrides only this."""
        return self.session.get(url, params=params, timeout=self.timeout)

    def set_event_listener(self, on_event: Callable[[PmsEvent], None] | None) -> None:
        """Swap the listener, e.g. to count one sync run's requests, 429s and retries."""
        self._on_event = on_event

    def _classify(
        self, response: requests.Response, path: str, attempt: int, started: float
    ) -> dict[str, Any] | _Failure:
        status = response.status_code
        if 200 <= status < 300:
            body = _json_object(response)
            if body is None:
                reason = "html_body" if "html" in response.headers.get("Content-Type", "") else "invalid_json"
                return self._transient(path, attempt, _Failure(reason, PmsBadResponse, status), started)
        elif status == 408 or status >= 500:
            return self._transient(path, attempt, _Failure(f"http_{status}", PmsUnavailable, status), started)
        elif not 400 <= status < 500:
            # 1xx, or a 3xx left over after redirects: not an answer we understand.
            return self._transient(path, attempt, _Failure(f"http_{status}", PmsBadResponse, status), started)
        self._record_request(path, attempt, started, status=status)
        self.breaker.record_success()
        if status < 300:
            return body
        if status == 429:
            return self._rate_limited(response, path, attempt)
        logger.warning("%s %s -> %d (permanent)", self.method, path, status)
        message = f"{self.method} {path}: HTTP {status}"
        if status in (401, 403):
            raise PmsAuthFailed(message, status=status)
        if status == 404:
            raise PmsNotFound(message, status=status)
        raise PmsRequestRejected(message, status=status)

    def _transient(self, path: str, attempt: int, failure: _Failure, started: float) -> _Failure:
        self._record_request(path, attempt, started, status=failure.status, reason=failure.reason)
        opened_until = self.breaker.record_failure()
        if opened_until is not None:
            self._emit(EventKind.CIRCUIT_OPENED, path, attempt, reason=failure.reason, retry_at=opened_until)
            raise PmsCircuitOpen(
                f"{self.method} {path}: {failure.reason}; circuit opened",
                status=failure.status,
                retry_at=opened_until,
            )
        return failure

    def _rate_limited(self, response: requests.Response, path: str, attempt: int) -> _Failure:
        reset_at = self.rate_limit_reset(response)
        self._emit(EventKind.RATE_LIMITED, path, attempt, status=429, retry_at=reset_at)
        if reset_at is not None:
            # Everyone spending this user's budget waits, not only this process.
            self.pacer.hold_until(reset_at)
        return _Failure("rate_limited", PmsRateLimited, 429, reset_at)

    def _wait_before_retry(self, failure: _Failure, path: str, attempt: int) -> None:
        if failure.reset_at is not None:
            until_reset = failure.reset_at - self._clock()
            if until_reset > self.max_rate_limit_wait:
                raise PmsRateLimited(
                    f"{self.method} {path}: rate limited for {until_reset:.0f} s",
                    status=429,
                    retry_at=failure.reset_at,
                )
            delay = max(0.0, until_reset) + self._rng.uniform(0.0, self.rate_limit_jitter)
        else:
            delay = self.backoff_delay(attempt - 2)
            if failure.reason == "rate_limited":
                self.pacer.hold_until(self._clock() + delay)
        logger.info(
            "%s %s failed (%s), attempt %d of %d in %.2f s",
            self.method,
            path,
            failure.reason,
            attempt,
            self.max_attempts,
            delay,
        )
        self._emit(EventKind.RETRY, path, attempt, status=failure.status, reason=failure.reason, delay=delay)
        self._sleep(delay)

    def _record_request(
        self, path: str, attempt: int, started: float, *, status: int | None, reason: str | None = None
    ) -> None:
        elapsed = time.monotonic() - started
        logger.debug(
            "%s %s -> %s (attempt %d, %.0f ms)", self.method, path, status or reason, attempt, elapsed * 1000
        )
        self._emit(EventKind.REQUEST, path, attempt, status=status, reason=reason, elapsed=elapsed)

    def _emit(self, kind: str, path: str, attempt: int, **fields: Any) -> None:
        if self._on_event is not None:
            self._on_event(PmsEvent(kind=kind, method=self.method, path=path, attempt=attempt, **fields))


def _json_object(response: requests.Response) -> dict[str, Any] | None:
    try:
        body = json.loads(response.content)
    except ValueError:  # also UnicodeDecodeError
        return None
    return body if isinstance(body, dict) else None
