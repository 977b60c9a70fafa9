"""Request pacing and circuit breaking shared by every process that uses one PMS credential.

Cliniko allows 200 requests per minute per user (../shared/reference/cliniko/README.md §3),
however many workers spend them, so the budget lives in PostgreSQL, not in a process: one
`PacingState` row per credential hash, one `BreakerState` row per breaker key. Every change
is read-modify-write under `SELECT ... FOR UPDATE`, which serializes processes on that row
only. The same code therefore works whether the cache is Redis or the database, and needs
nothing but the database the product already requires.

The rows are written on a private connection in their own short transaction, never on the
caller's: a sync that fetches inside `tenant_scope()` must neither hold the row lock until it
commits (that would serialize every worker behind it) nor roll back a breaker failure or a
server-given hold when its own transaction fails (the moment they matter most).

Times are Unix seconds from an injectable clock; the processes sharing a row are assumed to
have NTP-synchronised clocks (a skew of a few hundred milliseconds only shifts the pacing).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections

from sync.models import BreakerState, PacingState
from sync.pms.errors import PmsCircuitOpen, PmsRateLimited

logger = logging.getLogger(__name__)

Clock = Callable[[], float]
Sleep = Callable[[float], None]

# Below Cliniko's 200/min: with burst b, any 60 s window sees at most b + 60 * rate requests.
DEFAULT_RATE_PER_MINUTE = 195.0
DEFAULT_BURST = 3
_MIN_WAIT = 0.001


def credential_key(secret: str, *, namespace: str) -> str:
    """A stable row key for a credential that reveals nothing about it (API keys are long
    random strings, so a plain SHA-256 cannot be reversed). `namespace` separates PMSs."""
    return hashlib.sha256(f"{namespace}\x00{secret}".encode()).hexdigest()


_thread_state = threading.local()
# Connections a forked child inherited from its parent: kept referenced, because finalizing
# them would end the parent's session over the shared socket.
_inherited: list[Any] = []


def _private_connection() -> tuple[Any, bool]:
    """A connection that is not the caller's, and whether to keep it for the next call.

    With the psycopg pool configured, borrow and return a pooled one each time (a web thread
    must not sit on a pool slot). Without it (forking job workers), connecting per call would
    cost ~8 ms and a server process each time, so each thread keeps one of its own."""
    if connections.settings[DEFAULT_DB_ALIAS].get("OPTIONS", {}).get("pool"):
        return connections.create_connection(DEFAULT_DB_ALIAS), False
    cached = getattr(_thread_state, "connection", None)
    if cached is not None and cached[0] != os.getpid():
        _inherited.append(cached)
        cached = None
    if cached is None:
        cached = (os.getpid(), connections.create_connection(DEFAULT_DB_ALIAS))
        _thread_state.connection = cached
    return cached[1], True


@contextmanager
def _locked_transaction() -> Iterator[Any]:
    """A cursor in a short transaction on a private connection (see the module docstring)."""
    connection, keep = _private_connection()
    try:
        connection.set_autocommit(False)
        with connection.cursor() as cursor:
            yield cursor
        connection.commit()
    except DatabaseError:
        keep = False  # the connection may be broken: start afresh next time
        _thread_state.connection = None
        raise
    except BaseException:
        with contextlib.suppress(DatabaseError):
            connection.rollback()
        raise
    finally:
        if not keep:
            connection.close()


def _lock_row(cursor: Any, table: str, key: str, columns: str, defaults: dict[str, Any]) -> tuple[Any, ...]:
    names = ", ".join(["key", *defaults])
    placeholders = ", ".join(["%s"] * (len(defaults) + 1))
    cursor.execute(
        f'INSERT INTO "{table}" ({names}) VALUES ({placeholders}) ON CONFLICT (key) DO NOTHING',
        [key, *defaults.values()],
    )
    cursor.execute(f'SELECT {columns} FROM "{table}" WHERE key = %s FOR UPDATE', [key])
    return cursor.fetchone()


class TokenBucket:
    """A token bucket whose tokens every process holding the same `key` draws from.

    `acquire()` blocks until a token is taken (at most `max_wait` seconds, else
    `PmsRateLimited`). `hold_until(ts)` stops every process until a server-given reset time,
    then lets tokens accrue from zero so that workers resume at the paced rate instead of
    all at once.
    """

    def __init__(
        self,
        key: str,
        *,
        rate_per_minute: float = DEFAULT_RATE_PER_MINUTE,
        burst: int = DEFAULT_BURST,
        max_wait: float = 90.0,
        clock: Clock = time.time,
        sleep: Sleep = time.sleep,
    ) -> None:
        if rate_per_minute <= 0 or burst < 1:
            raise ValueError("rate_per_minute must be positive and burst at least 1")
        self.key = key
        self.rate_per_second = rate_per_minute / 60.0
        self.burst = float(burst)
        self.max_wait = max_wait
        self._clock = clock
        self._sleep = sleep

    def __repr__(self) -> str:
        return f"<TokenBucket {self.key[:12]}… {self.rate_per_second * 60:g}/min burst {self.burst:g}>"

    def try_acquire(self) -> float:
        """Take a token if one is there: 0.0. Otherwise the seconds until one may be."""
        table = PacingState._meta.db_table
        with _locked_transaction() as cursor:
            now = self._clock()
            tokens, updated_at, hold_until = _lock_row(
                cursor,
                table,
                self.key,
                "tokens, updated_at, hold_until",
                {"tokens": self.burst, "updated_at": now, "hold_until": 0.0},
            )
            if now < hold_until:
                return hold_until - now
            tokens = min(self.burst, tokens + max(0.0, now - updated_at) * self.rate_per_second)
            wait = 0.0
            if tokens >= 1.0:
                tokens -= 1.0
            else:
                wait = max(_MIN_WAIT, (1.0 - tokens) / self.rate_per_second)
            # A hold moves updated_at into the future; never move it back, or the hold would refill.
            cursor.execute(
                f'UPDATE "{table}" SET tokens = %s, updated_at = %s WHERE key = %s',
                [tokens, max(updated_at, now), self.key],
            )
            return wait

    def acquire(self) -> float:
        """Block until a token is taken; the seconds spent waiting."""
        start = self._clock()
        deadline = start + self.max_wait
        while True:
            wait = self.try_acquire()
            now = self._clock()
            if wait <= 0:
                return now - start
            if now + wait > deadline:
                raise PmsRateLimited(
                    f"request budget exhausted; next request possible in {wait:.1f} s", retry_at=now + wait
                )
            self._sleep(wait)

    def hold_until(self, until: float) -> None:
        """Nobody sharing this bucket calls before `until` (Unix seconds); tokens restart from zero."""
        table = PacingState._meta.db_table
        with _locked_transaction() as cursor:
            _tokens, updated_at, hold_until = _lock_row(
                cursor,
                table,
                self.key,
                "tokens, updated_at, hold_until",
                {"tokens": 0.0, "updated_at": until, "hold_until": until},
            )
            cursor.execute(
                f'UPDATE "{table}" SET tokens = 0, updated_at = %s, hold_until = %s WHERE key = %s',
                [max(updated_at, until), max(hold_until, until), self.key],
            )


class CircuitState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True)
class BreakerStatus:
    state: CircuitState
    consecutive_failures: int
    retry_at: float | None  # when an open circuit lets a trial call through


_CLOSED = {"consecutive_failures": 0, "open_until": None, "trial_until": None}


class CircuitBreaker:
    """Closed, open, half-open; state shared by every process holding the same `key`.

    `failure_threshold` consecutive transient failures open it. While open, `before_call()`
    refuses at once (`PmsCircuitOpen`). After `reset_timeout` seconds it is half-open: the
    first caller claims the single trial call (a claim that lapses after `reset_timeout`, in
    case that process dies); success closes the circuit, failure opens it again.
    """

    def __init__(
        self,
        key: str,
        *,
        failure_threshold: int = 5,
        reset_timeout: float = 60.0,
        clock: Clock = time.time,
    ) -> None:
        if failure_threshold < 1 or reset_timeout <= 0:
            raise ValueError("failure_threshold must be at least 1 and reset_timeout positive")
        self.key = key
        self.failure_threshold = failure_threshold
        self.reset_timeout = reset_timeout
        self._clock = clock

    def __repr__(self) -> str:
        return f"<CircuitBreaker {self.key[:12]}… threshold {self.failure_threshold}>"

    def _read(self) -> tuple[int, float | None, float | None] | None:
        with _locked_transaction() as cursor:
            cursor.execute(
                f'SELECT consecutive_failures, open_until, trial_until FROM "{BreakerState._meta.db_table}"'
                " WHERE key = %s",
                [self.key],
            )
            return cursor.fetchone()

    def status(self) -> BreakerStatus:
        row = self._read()
        if row is None or row[1] is None:
            return BreakerStatus(CircuitState.CLOSED, row[0] if row else 0, None)
        failures, open_until, trial_until = row
        now = self._clock()
        if now < open_until:
            return BreakerStatus(CircuitState.OPEN, failures, open_until)
        trial_pending = trial_until is not None and now < trial_until
        return BreakerStatus(CircuitState.HALF_OPEN, failures, trial_until if trial_pending else None)

    def state(self) -> CircuitState:
        return self.status().state

    def before_call(self) -> None:
        """Return if a call may go out now; raise `PmsCircuitOpen` if not."""
        row = self._read()
        if row is None or row[1] is None:
            return  # closed: the common case costs one unlocked read
        table = BreakerState._meta.db_table
        with _locked_transaction() as cursor:
            now = self._clock()
            _failures, open_until, trial_until = _lock_row(
                cursor, table, self.key, "consecutive_failures, open_until, trial_until", _CLOSED
            )
            if open_until is None:
                return
            if now < open_until:
                raise PmsCircuitOpen("circuit open after repeated failures", retry_at=open_until)
            if trial_until is not None and now < trial_until:
                raise PmsCircuitOpen("circuit half-open, a trial call is in flight", retry_at=trial_until)
            cursor.execute(
                f'UPDATE "{table}" SET trial_until = %s WHERE key = %s', [now + self.reset_timeout, self.key]
            )

    def record_success(self) -> None:
        with _locked_transaction() as cursor:
            cursor.execute(
                f'UPDATE "{BreakerState._meta.db_table}"'
                " SET consecutive_failures = 0, open_until = NULL, trial_until = NULL"
                " WHERE key = %s AND (consecutive_failures <> 0 OR open_until IS NOT NULL)",
                [self.key],
            )

    def record_failure(self) -> float | None:
        """Count a transient failure. If it (re)opened the circuit, the time a trial may go."""
        table = BreakerState._meta.db_table
        with _locked_transaction() as cursor:
            now = self._clock()
            failures, open_until, trial_until = _lock_row(
                cursor, table, self.key, "consecutive_failures, open_until, trial_until", _CLOSED
            )
            failures += 1
            # Closed and at the threshold, or a failed trial: open. Late failures of calls that
            # started before the circuit opened only add to the count.
            opens = (open_until is None and failures >= self.failure_threshold) or trial_until is not None
            new_open_until = now + self.reset_timeout if opens else open_until
            cursor.execute(
                f'UPDATE "{table}" SET consecutive_failures = %s, open_until = %s, trial_until = %s'
                " WHERE key = %s",
                [failures, new_open_until, None if opens else trial_until, self.key],
            )
        if opens:
            logger.warning("PMS circuit %s… opened after %d failures", self.key[:12], failures)
            return new_open_until
        return None
