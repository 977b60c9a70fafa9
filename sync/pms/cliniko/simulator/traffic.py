"""Cliniko's per-user rate limit and the simulator's request counters.

The reference (§3): 200 requests per minute per user; over it, 429 with `X-RateLimit-Reset`
holding the reset time as Unix seconds. A reset *time* means a fixed window, so windows
here are fixed and aligned to multiples of the window length (60 s: each wall-clock
minute). Keys of one user share a budget; the simulator maps each key to a user.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reset: int  # Unix seconds at which the current window ends
    remaining: int


class RateLimiter:
    """`limit` requests per user per fixed window; `limit=0` turns limiting off."""

    def __init__(self, limit: int = 200, *, window_seconds: float = 60.0,
                 clock: Callable[[], float] = time.time) -> None:
        self._lock = threading.Lock()
        self._windows: dict[str, tuple[int, int]] = {}  # user -> (window index, count)
        self.configure(limit, window_seconds=window_seconds, clock=clock)

    def configure(self, limit: int, *, window_seconds: float | None = None,
                  clock: Callable[[], float] | None = None) -> None:
        if limit < 0:
            raise ValueError("limit must not be negative")
        with self._lock:
            self.limit = limit
            if window_seconds is not None:
                if window_seconds <= 0:
                    raise ValueError("window_seconds must be positive")
                self.window_seconds = window_seconds
            if clock is not None:
                self.clock = clock
            self._windows.clear()

    def check(self, user: str) -> Decision:
        """Count one request for `user` and say whether it may be served."""
        with self._lock:
            now = self.clock()
            index = math.floor(now / self.window_seconds)
            reset = math.ceil((index + 1) * self.window_seconds)
            if not self.limit:
                return Decision(allowed=True, reset=reset, remaining=0)
            seen_index, count = self._windows.get(user, (index, 0))
            if seen_index != index:
                count = 0
            if count >= self.limit:
                self._windows[user] = (index, count)
                return Decision(allowed=False, reset=reset, remaining=0)
            self._windows[user] = (index, count + 1)
            return Decision(allowed=True, reset=reset, remaining=self.limit - count - 1)

    def to_json(self) -> dict[str, Any]:
        return {"limit": self.limit, "window_seconds": self.window_seconds}


class TrafficStats:
    """Counters for tests and benchmarks: requests per route and per status, 429s from the
    limiter, faults injected. Admin (`/__sim/...`) requests are not counted."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.requests = 0
            self.rate_limited = 0
            self.by_route: Counter[str] = Counter()
            self.by_status: Counter[int] = Counter()
            self.faults: Counter[str] = Counter()
            self.bytes_sent = 0

    def record(self, *, route: str, status: int | None, fault: str | None = None,
               rate_limited: bool = False, size: int = 0) -> None:
        with self._lock:
            self.requests += 1
            self.by_route[route] += 1
            if status is not None:
                self.by_status[status] += 1
            if fault is not None:
                self.faults[fault] += 1
            if rate_limited:
                self.rate_limited += 1
            self.bytes_sent += size

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": self.requests,
                "rate_limited": self.rate_limited,
                "by_route": dict(self.by_route),
                "by_status": {str(status): n for status, n in sorted(self.by_status.items())},
                "faults": dict(self.faults),
                "bytes_sent": self.bytes_sent,
            }
