"""The Nookal API v2 client (../shared/reference/nookal/README.md), on the shared PMS client.

What differs from Cliniko, and is overridden here:

- Every function is a form POST to `/production/v2/<function>` with the key in the body as
  `api_key` (§1); nothing goes in the query string, so no key reaches a log or a proxy.
- Application errors come back as HTTP 200 with `status: "failure"` (§2). A failure whose
  code is `L000_*` (`L000_1`: missing api_key) or whose message names the key or auth is
  `PmsAuthFailed` (the cotwo heuristic: no error catalogue is published); any other failure
  is `PmsRequestRejected`. Both are permanent and raised after that one request.
- Items sit at `data.results.<key>`, and the next page is `settings.nextPage` (a number, or
  null on the last page), sent back as `page` (§3). Pages are capped at 200 items.

Incremental listings send `last_modified` (documented for patients and appointments only,
§3) as `"YYYY-MM-DD HH:MM:SS"` in UTC. Its format, zone and inclusivity are UNKNOWN, so the
client's `lookback` (which the sync engine subtracts from its watermark) is 48 hours, as the
reference suggests.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import requests

from sync.pms.errors import PmsAuthFailed, PmsBadResponse, PmsError, PmsRequestRejected
from sync.pms.http import Page, Params, PmsEvent, PmsHttpClient, _Failure, contact_user_agent
from sync.pms.pacing import CircuitBreaker, TokenBucket, credential_key

DEFAULT_API_ROOT = "https://api.nookal.com"
API_PREFIX = "/production/v2"
MAX_PAGE_LENGTH = 200
MAX_PAGES = 10_000
DEFAULT_LOOKBACK = timedelta(hours=48)
PACING_NAMESPACE = "nookal"
# Rate limits are not published (§3): serial calls about 0.5 s apart, as the reference advises.
DEFAULT_RATE_PER_MINUTE = 120.0
_AUTH_MESSAGE = re.compile(r"api[ _-]?key|auth", re.IGNORECASE)


@dataclass(frozen=True)
class Listing:
    function: str
    items_key: str
    incremental: bool = False


# Keyed by the normalised resource names of sync.pms.base.
LISTINGS: dict[str, Listing] = {
    "location": Listing("getLocations", "locations"),
    "practitioner": Listing("getPractitioners", "practitioners"),
    "appointment_type": Listing("getAppointmentTypes", "services"),  # sic, §4
    "patient": Listing("getPatients", "patients", incremental=True),
    "appointment": Listing("getAppointments", "appointments", incremental=True),
}


def nookal_api_url(override: str = "") -> str:
    """`https://api.nookal.com/production/v2`, or the override (a simulator) with or without
    its `/production/v2`."""
    root = (override or DEFAULT_API_ROOT).rstrip("/")
    return root if root.endswith(API_PREFIX) else f"{root}{API_PREFIX}"


def filter_time(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("filter times must be timezone-aware")
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def failure_error(body: dict[str, Any], label: str) -> PmsError:
    """The permanent error a `status: "failure"` body stands for (copes with any of
    `errorMessage`, `errorDescription`, `alerts` missing, §2)."""
    details = body.get("details") if isinstance(body.get("details"), dict) else {}
    code = str(details.get("errorCode") or "")
    alerts = details.get("alerts") if isinstance(details.get("alerts"), list) else []
    messages = [str(details.get(k) or "") for k in ("errorMessage", "errorDescription")]
    message = "; ".join(m for m in [*messages, *map(str, alerts)] if m)[:200]
    summary = f"{label}: Nookal failure {code or 'without a code'}" + (f" ({message})" if message else "")
    if code.upper().startswith("L000") or _AUTH_MESSAGE.search(message):
        return PmsAuthFailed(summary, status=200)
    return PmsRequestRejected(summary, status=200)


class NookalClient(PmsHttpClient):
    """Nookal over form POSTs with `api_key` in the body. Pacing and breaker rows are keyed by
    the credential, so every worker using this key shares one budget."""

    method = "POST"

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str = "",
        on_event: Callable[[PmsEvent], None] | None = None,
        pacer: Any = None,
        breaker: Any = None,
        lookback: timedelta = DEFAULT_LOOKBACK,
        rate_per_minute: float | None = None,
        failure_threshold: int = 10,
        reset_timeout: float = 60.0,
        **options: Any,
    ) -> None:
        if not api_key:
            raise PmsAuthFailed("the Nookal connection has no API key")
        key = credential_key(api_key, namespace=PACING_NAMESPACE)
        super().__init__(
            base_url=nookal_api_url(base_url),
            user_agent=contact_user_agent(),
            pacer=pacer if pacer is not None else TokenBucket(
                key, rate_per_minute=rate_per_minute or DEFAULT_RATE_PER_MINUTE
            ),
            breaker=breaker if breaker is not None else CircuitBreaker(
                key, failure_threshold=failure_threshold, reset_timeout=reset_timeout
            ),
            on_event=on_event,
            **options,
        )
        self._api_key = api_key
        self.lookback = lookback

    # --- transport: a form POST, and failures inside a 200 --------------------------------
    def _send(self, url: str, params: Params) -> requests.Response:
        # The key travels in the form body, never in a URL that proxies may log.
        form = list(params.items()) if isinstance(params, dict) else list(params or [])
        form.append(("api_key", self._api_key))
        return self.session.post(url, data=form, timeout=self.timeout)

    def _classify(
        self, response: requests.Response, path: str, attempt: int, started: float
    ) -> dict[str, Any] | _Failure:
        outcome = super()._classify(response, path, attempt, started)
        if isinstance(outcome, _Failure):
            return outcome
        status = outcome.get("status")
        if status == "success":
            return outcome
        if status == "failure":
            raise failure_error(outcome, f"{self.method} {path}")
        return _Failure("invalid_envelope", PmsBadResponse, response.status_code)

    # --- paging: settings.nextPage ----------------------------------------------------------
    def next_link(self, body: dict[str, Any]) -> str | None:
        """The next page number as text (`settings.nextPage`), None on the last page."""
        settings = body.get("settings")
        next_page = settings.get("nextPage") if isinstance(settings, dict) else None
        if next_page in (None, "", 0, "0", False):
            return None
        return str(next_page)

    def iter_pages(self, path: str, params: Params = None, *, items_key: str) -> Iterator[Page]:
        """Every page of one function, `page` 1 on, until `settings.nextPage` is null or a
        page is empty. A failure on any page raises: a listing is complete or an error."""
        base_params = dict(params or {})
        number = 1
        while True:
            body = self.get_json(path, {**base_params, "page": str(number)})
            data = body.get("data")
            results = data.get("results") if isinstance(data, dict) else None
            items = results.get(items_key) if isinstance(results, dict) else None
            if items is None and isinstance(results, dict | list) and not results:
                items = []  # an empty listing may come back without its key
            if not isinstance(items, list):
                raise PmsBadResponse(f"{self.method} {path}: page {number} has no {items_key!r} list")
            next_page = self.next_link(body) if items else None
            yield Page(number, items, {k: v for k, v in body.items() if k != "data"}, next_page)
            if next_page is None:
                return
            if not next_page.isdigit() or int(next_page) <= number or number >= MAX_PAGES:
                raise PmsBadResponse(f"{self.method} {path}: page {number} points to page {next_page!r}")
            number = int(next_page)

    # --- listings -----------------------------------------------------------------------------
    @staticmethod
    def listing(resource: str) -> Listing:
        try:
            return LISTINGS[resource]
        except KeyError:
            raise LookupError(f"Nookal has no listing for resource {resource!r}") from None

    def list_params(
        self, listing: Listing, *, updated_since: datetime | None, page_size: int = MAX_PAGE_LENGTH
    ) -> dict[str, str]:
        if not 1 <= page_size <= MAX_PAGE_LENGTH:
            raise ValueError(f"page_size must be between 1 and {MAX_PAGE_LENGTH}")
        params = {"page_length": str(page_size)}
        if updated_since is not None and listing.incremental:
            # The sync engine has already moved `updated_since` back by `self.lookback`.
            params["last_modified"] = filter_time(updated_since)
        return params

    def iter_resource(
        self, resource: str, *, updated_since: datetime | None = None, page_size: int = MAX_PAGE_LENGTH
    ) -> Iterator[Page]:
        listing = self.listing(resource)
        params = self.list_params(listing, updated_since=updated_since, page_size=page_size)
        yield from self.iter_pages(listing.function, params, items_key=listing.items_key)

    def verify(self) -> bool:
        """The key check (`verify`); a bad key raises `PmsAuthFailed`."""
        body = self.get_json("verify")
        results = (body.get("data") or {}).get("results") or {}
        return bool(results.get("verify", True))
