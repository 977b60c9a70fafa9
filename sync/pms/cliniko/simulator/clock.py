"""The simulator's clock and Cliniko's timestamp format, on integer Unix seconds."""

from __future__ import annotations

import threading
import time
from datetime import UTC, date, datetime

# Unset timestamps in integer columns; below every real instant, so range filters skip it.
NULL = -(2**63)

_DAY_EPOCHS: dict[str, int] = {}
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


def iso(epoch: float) -> str:
    """Cliniko's `YYYY-MM-DDTHH:MM:SSZ` (UTC, whole seconds)."""
    return datetime.fromtimestamp(int(epoch), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def epoch_of(value: str | None) -> int:
    """Unix seconds of a record timestamp; NULL for null or "" (old records use "")."""
    if not value:
        return NULL
    if len(value) == 20 and value[10] == "T" and value[19] == "Z":
        # The canonical form, which every generated record uses: skip datetime parsing.
        day = _DAY_EPOCHS.get(value[:10])
        if day is None:
            day = (date.fromisoformat(value[:10]).toordinal() - _EPOCH_ORDINAL) * 86_400
            _DAY_EPOCHS[value[:10]] = day
        return day + int(value[11:13]) * 3600 + int(value[14:16]) * 60 + int(value[17:19])
    return int(parse_instant(value))


def parse_instant(value: str) -> float:
    """A client-supplied instant as Unix seconds (fractions kept). A value without an offset
    is UTC, as Cliniko expects every time in UTC. Raises ValueError."""
    parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


class SimClock:
    """When the simulated clinic thinks it is: stamps every change made through the store.

    Real time by default. `set()` freezes it at an instant, `advance()` moves it (frozen or
    not), `thaw()` lets a frozen clock tick again from where it stands.
    """

    def __init__(self, frozen_at: datetime | float | None = None) -> None:
        self._lock = threading.Lock()
        self._offset = 0.0
        self._frozen: float | None = None
        if frozen_at is not None:
            self.set(frozen_at)

    def now(self) -> float:
        with self._lock:
            return self._frozen if self._frozen is not None else time.time() + self._offset

    def now_iso(self) -> str:
        return iso(self.now())

    def set(self, when: datetime | float) -> None:
        if isinstance(when, datetime):
            if when.tzinfo is None:
                raise ValueError("SimClock.set needs an aware datetime")
            when = when.timestamp()
        with self._lock:
            self._frozen = float(when)

    def advance(self, seconds: float) -> None:
        with self._lock:
            if self._frozen is not None:
                self._frozen += seconds
            else:
                self._offset += seconds

    def thaw(self) -> None:
        with self._lock:
            if self._frozen is not None:
                self._offset = self._frozen - time.time()
                self._frozen = None

    @property
    def frozen(self) -> bool:
        return self._frozen is not None
