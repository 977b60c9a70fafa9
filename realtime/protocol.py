"""The metrics stream's protocol constants and limits (described in realtime/PROTOCOL.md)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from django.conf import settings

from clinics.auth.websocket import (  # noqa: F401  (re-exported: the stream's close codes in one place)
    APP_PROTOCOL,
    CLOSE_FORBIDDEN,
    CLOSE_NOT_FOUND,
    CLOSE_TOKEN_EXPIRED,
    CLOSE_UNAUTHENTICATED,
)

CLOSE_IDLE = 4000  # no client message within REALTIME_IDLE_TIMEOUT_SECONDS
CLOSE_MAX_AGE = 4001  # the connection reached REALTIME_MAX_CONNECTION_AGE_SECONDS: reconnect
CLOSE_AUTH_TIMEOUT = 4408  # no credentials within REALTIME_AUTH_TIMEOUT_SECONDS
CLOSE_RATE_LIMITED = 4429  # more client messages than the rate limit allows
CLOSE_UNSUPPORTED = 1003  # a binary frame
CLOSE_TOO_BIG = 1009  # a client message over MAX_CLIENT_MESSAGE_BYTES
CLOSE_SERVER_ERROR = 1011

# A Clerk token is 1-3 KB; nothing a client sends needs more.
MAX_CLIENT_MESSAGE_BYTES = 16 * 1024


@dataclass(frozen=True)
class Limits:
    heartbeat: float
    idle_timeout: float
    auth_timeout: float
    token_grace: float
    max_age: float
    burst: int
    per_second: float
    resync_max_events: int
    sse_max_age: float
    sse_poll: float

    @classmethod
    def from_settings(cls) -> Limits:
        """Read when a connection opens, so tests (and a settings change) take effect at once."""
        return cls(
            heartbeat=settings.REALTIME_HEARTBEAT_SECONDS,
            idle_timeout=settings.REALTIME_IDLE_TIMEOUT_SECONDS,
            auth_timeout=settings.REALTIME_AUTH_TIMEOUT_SECONDS,
            token_grace=settings.REALTIME_TOKEN_GRACE_SECONDS,
            max_age=settings.REALTIME_MAX_CONNECTION_AGE_SECONDS,
            burst=settings.REALTIME_CLIENT_MESSAGE_BURST,
            per_second=settings.REALTIME_CLIENT_MESSAGES_PER_SECOND,
            resync_max_events=settings.REALTIME_RESYNC_MAX_EVENTS,
            sse_max_age=settings.REALTIME_SSE_MAX_AGE_SECONDS,
            sse_poll=settings.REALTIME_SSE_POLL_SECONDS,
        )


class MessageBudget:
    """A token bucket: `burst` messages at once, refilled at `per_second`."""

    def __init__(self, *, burst: int, per_second: float) -> None:
        self.capacity = float(burst)
        self.rate = per_second
        self.tokens = float(burst)
        self.updated = time.monotonic()

    def spend(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True
