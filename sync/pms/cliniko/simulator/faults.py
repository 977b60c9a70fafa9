"""Failures on demand, the way a client meets them on the internet: throttling, 5xx, HTML
where JSON was expected, cut-off bodies, dropped connections and hangs.

Each API request draws once from a seeded RNG (so a run with the same seed and the same
request order fails the same way), after any faults queued for the next requests.
"""

from __future__ import annotations

import random
import threading
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class FaultKind(StrEnum):
    RATE_LIMIT = "429"  # 429 with X-RateLimit-Reset, whatever the real budget says
    SERVER_ERROR = "500"  # JSON {"message": ...}
    BAD_GATEWAY = "502"  # a proxy's HTML page
    UNAVAILABLE = "503"  # a maintenance HTML page
    TIMEOUT = "timeout"  # answer only after `timeout_seconds` (longer than a client waits)
    RESET = "reset"  # close the socket with a TCP reset, no response
    TRUNCATED = "truncated"  # 200 JSON cut in half, Content-Length matching the cut body
    INCOMPLETE = "incomplete"  # Content-Length of the whole body, half sent, then closed
    HTML = "html"  # 200 with a text/html page instead of JSON

    @property
    def before_handling(self) -> bool:
        """Faults that answer instead of the API; the others change or delay its answer."""
        return self not in (FaultKind.TIMEOUT, FaultKind.TRUNCATED, FaultKind.INCOMPLETE)


@dataclass
class FaultPlan:
    """Probability per kind (summing to at most 1), the RNG seed, and how long a timeout
    fault stalls. `paths` limits faults to request paths starting with one of the prefixes
    (empty: every /v1 request)."""

    rates: dict[FaultKind, float] = field(default_factory=dict)
    seed: int = 0
    timeout_seconds: float = 30.0
    paths: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.rates = {FaultKind(kind): float(rate) for kind, rate in self.rates.items()}
        if any(not 0.0 <= rate <= 1.0 for rate in self.rates.values()):
            raise ValueError("fault rates must be between 0 and 1")
        if sum(self.rates.values()) > 1.0 + 1e-9:
            raise ValueError("fault rates must add up to at most 1")
        if self.timeout_seconds < 0:
            raise ValueError("timeout_seconds must not be negative")
        self.paths = tuple(self.paths)

    @classmethod
    def spread(cls, total: float, kinds: Iterable[FaultKind | str] | None = None,
               **options: Any) -> FaultPlan:
        """`total` split evenly over `kinds` (default: every kind but TIMEOUT, which would
        stall a run for `timeout_seconds` each time)."""
        chosen = [FaultKind(k) for k in kinds] if kinds is not None else [
            k for k in FaultKind if k is not FaultKind.TIMEOUT]
        if not chosen:
            return cls(**options)
        return cls(rates={kind: total / len(chosen) for kind in chosen}, **options)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FaultPlan:
        return cls(rates=dict(data.get("rates") or {}), seed=int(data.get("seed", 0)),
                   timeout_seconds=float(data.get("timeout_seconds", 30.0)),
                   paths=tuple(data.get("paths") or ()))

    def to_json(self) -> dict[str, Any]:
        return {"rates": {str(kind): rate for kind, rate in self.rates.items()}, "seed": self.seed,
                "timeout_seconds": self.timeout_seconds, "paths": list(self.paths)}


class FaultInjector:
    """Decides, per API request, which fault (if any) it gets. Thread-safe."""

    def __init__(self, plan: FaultPlan | None = None) -> None:
        self._lock = threading.Lock()
        self._queue: deque[FaultKind] = deque()
        self.injected: Counter[str] = Counter()
        self.configure(plan or FaultPlan())

    @property
    def plan(self) -> FaultPlan:
        return self._plan

    def configure(self, plan: FaultPlan) -> None:
        """Replace the plan and restart its RNG from the plan's seed."""
        with self._lock:
            self._plan = plan
            self._rng = random.Random(plan.seed)
            self._order = [(kind, plan.rates[kind]) for kind in FaultKind if plan.rates.get(kind)]

    def set_rates(self, rates: Mapping[FaultKind | str, float], **options: Any) -> None:
        current = self._plan
        self.configure(FaultPlan(rates=dict(rates), seed=options.get("seed", current.seed),
                                 timeout_seconds=options.get("timeout_seconds", current.timeout_seconds),
                                 paths=options.get("paths", current.paths)))

    def clear(self) -> None:
        """No faults: no rates and an empty queue."""
        with self._lock:
            self._queue.clear()
        self.configure(FaultPlan(seed=self._plan.seed, timeout_seconds=self._plan.timeout_seconds))

    def queue(self, *kinds: FaultKind | str) -> None:
        """Give the next API requests these faults, in order, before any random draw."""
        with self._lock:
            self._queue.extend(FaultKind(kind) for kind in kinds)

    @property
    def queued(self) -> list[str]:
        with self._lock:
            return [str(kind) for kind in self._queue]

    def draw(self, path: str) -> FaultKind | None:
        with self._lock:
            plan = self._plan
            if plan.paths and not path.startswith(plan.paths):
                return None
            if self._queue:
                kind: FaultKind | None = self._queue.popleft()
            else:
                kind = self._draw_random()
            if kind is not None:
                self.injected[str(kind)] += 1
            return kind

    def _draw_random(self) -> FaultKind | None:
        if not self._order:
            return None
        roll = self._rng.random()
        for kind, rate in self._order:
            if roll < rate:
                return kind
            roll -= rate
        return None
