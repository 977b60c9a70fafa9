"""What can go wrong talking to a practice-management system, split the way a caller acts on it.

Permanent errors (`PmsAuthFailed`, `PmsNotFound`, `PmsRequestRejected`) are never retried:
asking again gives the same answer. Everything under `PmsUnavailable` is transient: the client
already retried, and the caller should try again later (`retry_at` says when, if known).

Each type carries the API error code it becomes (`routiq.api.errors.ERROR_CODES`) in `code`, so
the web layer can translate it without `sync/` importing the web layer. Messages never contain
credentials, query strings or full URLs: only a method, a path and a status.
"""

from __future__ import annotations


class PmsError(Exception):
    """Base of every PMS failure."""

    code = "PMS_UNAVAILABLE"
    transient = False

    def __init__(self, message: str, *, status: int | None = None, retry_at: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        # Unix time after which a new attempt may succeed; None when unknown.
        self.retry_at = retry_at


class PmsAuthFailed(PmsError):
    """401 or 403: the stored credentials are wrong, revoked or lack a permission."""

    code = "PMS_AUTH_FAILED"


class PmsNotFound(PmsError):
    """404. In Cliniko this can also mean the key's user may not see the resource, so the
    connection needs attention; it is not a Routiq resource that is missing (hence not NOT_FOUND)."""

    code = "PMS_UNAVAILABLE"


class PmsRequestRejected(PmsError):
    """Another 4xx (400, 405, 422...): the request itself is wrong, asking again will not help."""

    code = "PMS_UNAVAILABLE"


class PmsUnavailable(PmsError):
    """Transient failures (5xx, timeouts, connection errors) outlasted the retries."""

    transient = True


class PmsRateLimited(PmsUnavailable):
    """429 still answered after the retries, or the server's reset is too far away to wait for."""


class PmsBadResponse(PmsUnavailable):
    """A body that is not the JSON promised: HTML error pages, truncated or invalid JSON, a
    missing items key. Retried like a 5xx while attempts remain."""


class PmsCircuitOpen(PmsUnavailable):
    """Refused without a network call: recent calls with this credential kept failing."""
