"""The Cliniko API client (../shared/reference/cliniko/README.md), on the shared PMS client.

Which listings make a resource complete, because Cliniko's main lists hide some states:

- businesses: archived and deleted rows are hidden unless a filter names the state field,
  so every listing carries `q[]=archived_at:*` and `q[]=deleted_at:*` (`*` matches any
  value, null included).
- practitioners: no archived state; a practitioner who leaves moves from `/practitioners`
  to `/practitioners/inactive` (§5.6), so both routes are listed.
- appointment types: archived ones are hidden: `q[]=archived_at:*` (§5.5).
- patients: archived (and merged-away) ones are hidden, and `/patients?q[]=updated_at:>T`
  alone never returned them (issue #148): `q[]=archived_at:*`. Patients have no
  `deleted_at` filter, and `/patients/deleted` serves stubs without fields, so soft-deleted
  patients are not listed; reconciliation sees them disappear.
- individual appointments: cancelled, archived and deleted ones are hidden by default
  (§9.10, "make the filter explicit"): `q[]=cancelled_at:*`, `archived_at:*`, `deleted_at:*`.
- invoices: `q[]=archived_at:*` and `q[]=deleted_at:*`.
- billable items (appointment-type prices): `q[]=archived_at:*`.

Every listing is a window of `updated_at` (`after < updated_at < until`, or from the start of
time), sorted `updated_at,id`, oldest change first (whole seconds with `Z`: a `+00:00` would
decode to a space). Cliniko pages by page number, so a record that changes while a listing is
read leaves the window and every later row moves up one place: the row crossing a page
boundary would never be seen. The upper bound makes that visible (`total_entries` shrinks), and
the listing then goes on from the last row of the last page read before the change, which
loses nothing (reference §4.4, recipe step 4). That position, `(updated_at, id)` of a row, is
also the resume token after each page: resuming reads the rest of that second by id
(`updated_at` within the second and `id:>X`), then everything after it, so a block of rows
sharing one second is never read twice. The rows must come sorted as asked; a page that is not
is an error rather than a silent skip. Archiving and cancelling stamp `updated_at`
(UNVERIFIED in the reference; the periodic full reconciliation covers it if not).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.core.exceptions import ValidationError

from clinics.services import cliniko_shard
from sync.pms.errors import PmsAuthFailed, PmsBadResponse
from sync.pms.http import Page, PmsEvent, PmsHttpClient, contact_user_agent
from sync.pms.pacing import DEFAULT_RATE_PER_MINUTE as DEFAULT_RATE
from sync.pms.pacing import CircuitBreaker, TokenBucket, credential_key

logger = logging.getLogger(__name__)

MAX_PER_PAGE = 100
# Cliniko's filters are exact and in UTC, so a completed listing resumes just after its newest
# row; records committed late are covered by the sync's window margin (SYNC_WINDOW_MARGIN_SECONDS).
DEFAULT_LOOKBACK = timedelta(0)
ONE_SECOND = timedelta(seconds=1)
PACING_NAMESPACE = "cliniko"
# A listing whose window keeps changing under it is given up after this many fresh starts
# (each start reads at least one page, so only a PMS under constant churn gets here).
MAX_RESTARTS = 50


@dataclass(frozen=True)
class Listing:
    """One list route and the state filters that make it show every row."""

    path: str
    items_key: str
    state_filters: tuple[str, ...] = ()


_ALL_STATES = ("archived_at:*", "deleted_at:*")

# Keyed by the normalised resource names of sync.pms.base (plus billable_item for prices).
LISTINGS: dict[str, tuple[Listing, ...]] = {
    "location": (Listing("businesses", "businesses", _ALL_STATES),),
    "practitioner": (
        Listing("practitioners", "practitioners"),
        Listing("practitioners/inactive", "practitioners"),
    ),
    "appointment_type": (Listing("appointment_types", "appointment_types", ("archived_at:*",)),),
    "patient": (Listing("patients", "patients", ("archived_at:*",)),),
    "appointment": (
        Listing("individual_appointments", "individual_appointments", ("cancelled_at:*", *_ALL_STATES)),
    ),
    "invoice": (Listing("invoices", "invoices", _ALL_STATES),),
    "billable_item": (Listing("billable_items", "billable_items", ("archived_at:*",)),),
}


def cliniko_api_url(api_key: str, override: str = "") -> str:
    """`https://api.<shard>.cliniko.com/v1` from the key's suffix (au1 without one), or the
    override (a sandbox or simulator), given with or without its `/v1`."""
    try:
        shard = cliniko_shard(api_key)
    except ValidationError:
        raise PmsAuthFailed("the Cliniko API key names an unknown shard") from None
    if override:
        root = override.rstrip("/")
        return root if root.endswith("/v1") else f"{root}/v1"
    return f"https://api.{shard}.cliniko.com/v1"


def filter_time(moment: datetime) -> str:
    """A DateTime filter value: UTC, whole seconds (floored, so nothing is skipped), `Z`."""
    if moment.tzinfo is None:
        raise ValueError("filter times must be timezone-aware")
    return moment.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: Any) -> datetime | None:
    """A Cliniko timestamp (`...Z`), or None for null, "" or anything unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def newest_update(items: list[Any]) -> datetime | None:
    """The newest readable `updated_at` among raw records (unreadable ones are the mapper's
    business: it quarantines them)."""
    stamps = [parse_time(item.get("updated_at")) for item in items if isinstance(item, dict)]
    return max((s for s in stamps if s is not None), default=None)


@dataclass(frozen=True)
class WindowPage:
    """A page of a windowed listing; `resume` continues the listing after it (see module)."""

    items: list[dict[str, Any]]
    resume: dict[str, Any]
    total: int | None


class ClinikoClient(PmsHttpClient):
    """Cliniko over HTTP Basic (the key as user name, an empty password). The token bucket
    and circuit breaker are keyed by the credential, so every worker using this key shares
    Cliniko's per-user budget; pass `pacer`/`breaker` to override them."""

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
        key = credential_key(api_key, namespace=PACING_NAMESPACE)
        super().__init__(
            base_url=cliniko_api_url(api_key, base_url),
            user_agent=contact_user_agent(),
            pacer=pacer
            if pacer is not None
            else TokenBucket(key, rate_per_minute=rate_per_minute or DEFAULT_RATE),
            breaker=breaker
            if breaker is not None
            else CircuitBreaker(key, failure_threshold=failure_threshold, reset_timeout=reset_timeout),
            auth=(api_key, ""),
            on_event=on_event,
            **options,
        )
        self.lookback = lookback

    @staticmethod
    def listings(resource: str) -> tuple[Listing, ...]:
        try:
            return LISTINGS[resource]
        except KeyError:
            raise LookupError(f"Cliniko has no listing for resource {resource!r}") from None

    def list_params(
        self,
        listing: Listing,
        *,
        since: datetime | None = None,
        after: datetime | None = None,
        until: datetime | None = None,
        extra: tuple[str, ...] = (),
        sort: str = "updated_at,id",
        page_size: int = MAX_PER_PAGE,
    ) -> list[tuple[str, str]]:
        """`since` is inclusive, `after` and `until` exclusive; `extra` more `q[]` filters."""
        if not 1 <= page_size <= MAX_PER_PAGE:
            raise ValueError(f"page_size must be between 1 and {MAX_PER_PAGE}")
        params = [("per_page", str(page_size))]
        params += [("q[]", state) for state in listing.state_filters]
        if since is not None:
            params.append(("q[]", f"updated_at:>={filter_time(since)}"))
        if after is not None:
            params.append(("q[]", f"updated_at:>{filter_time(after)}"))
        if until is not None:
            params.append(("q[]", f"updated_at:<{filter_time(until)}"))
        params += [("q[]", condition) for condition in extra]
        params.append(("sort", sort))
        return params

    def iter_resource(
        self, resource: str, *, page_size: int = MAX_PER_PAGE
    ) -> Iterator[tuple[Listing, Page]]:
        """Every page of every listing a resource needs, following `links.next` (no window)."""
        for listing in self.listings(resource):
            params = self.list_params(listing, page_size=page_size)
            for page in self.iter_pages(listing.path, params, items_key=listing.items_key):
                yield listing, page

    def iter_window(
        self,
        resource: str,
        *,
        after: datetime | None,
        until: datetime | None,
        resume: dict[str, Any] | None = None,
        page_size: int = MAX_PER_PAGE,
    ) -> Iterator[WindowPage]:
        """Every record of `resource` with `after < updated_at < until` (no lower bound when
        `after` is None), listing by listing, each page carrying the token that resumes after it."""
        first, position = 0, None
        if resume:
            first = int(resume.get("listing", 0))
            position = Position.from_token(resume)
        for index, listing in enumerate(self.listings(resource)):
            if index < first:
                continue
            start = position if index == first else None
            yield from _Listing(self, index, listing, after, until, page_size).pages(start)

    def fetch_by_ids(self, resource: str, ids: list[str]) -> list[dict[str, Any]]:
        """The records among `ids` that still exist, in any state: `q[]=id:=a,b,c` on every
        listing of the resource, 100 ids a request."""
        wanted = [i for i in dict.fromkeys(ids) if str(i).isdigit()]
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(wanted), MAX_PER_PAGE):
            chunk = ",".join(wanted[start : start + MAX_PER_PAGE])
            for listing in self.listings(resource):
                params = [("per_page", str(MAX_PER_PAGE)), ("q[]", f"id:={chunk}")]
                params += [("q[]", state) for state in listing.state_filters]
                for page in self.iter_pages(listing.path, params, items_key=listing.items_key):
                    for item in page.items:
                        if isinstance(item, dict) and item.get("id") not in (None, ""):
                            found[str(item["id"])] = item
        return list(found.values())


@dataclass(frozen=True, order=True)
class Position:
    """A row of a listing sorted `updated_at,id`: everything up to and including it was read."""

    updated_at: datetime
    id: int

    @classmethod
    def of(cls, item: Any) -> Position | None:
        if not isinstance(item, dict):
            return None
        stamp, raw_id = parse_time(item.get("updated_at")), str(item.get("id") or "")
        return cls(stamp, int(raw_id)) if stamp is not None and raw_id.isdigit() else None

    @classmethod
    def from_token(cls, token: dict[str, Any]) -> Position | None:
        stamp, raw_id = parse_time(token.get("since")), str(token.get("after_id") or "")
        return cls(stamp, int(raw_id)) if stamp is not None and raw_id.isdigit() else None

    def token(self, listing: int) -> dict[str, Any]:
        return {"listing": listing, "since": filter_time(self.updated_at), "after_id": str(self.id)}


class _Listing:
    """One windowed listing, read to the end: restarts after a shift, resumes at a position."""

    def __init__(
        self,
        client: ClinikoClient,
        index: int,
        listing: Listing,
        after: datetime | None,
        until: datetime | None,
        page_size: int,
    ) -> None:
        self.client, self.index, self.listing = client, index, listing
        self.after, self.until, self.page_size = after, until, page_size

    def pages(self, position: Position | None) -> Iterator[WindowPage]:
        for _start in range(MAX_RESTARTS):
            if position is not None:
                # The rest of the position's second, by id; then everything after that second.
                tie = self.client.list_params(
                    self.listing,
                    since=position.updated_at,
                    until=position.updated_at + ONE_SECOND,
                    extra=(f"id:>{position.id}",),
                    sort="id",
                    page_size=self.page_size,
                )
                position, shifted = yield from self._read(tie, position, by_id=True)
                if shifted:
                    continue
            lower = position.updated_at if position is not None else self.after
            main = self.client.list_params(
                self.listing, after=lower, until=self.until, page_size=self.page_size
            )
            position, shifted = yield from self._read(main, position, by_id=False)
            if not shifted:
                return
        raise PmsBadResponse(f"GET /{self.listing.path}: the listing kept changing while being read")

    def _read(
        self, params: list[tuple[str, str]], position: Position | None, *, by_id: bool
    ) -> Generator[WindowPage, None, tuple[Position | None, bool]]:
        """Pages of one query; returns (position after the last unshifted page, shifted)."""
        expected: Any = None
        for page in self.client.iter_pages(self.listing.path, params, items_key=self.listing.items_key):
            total = page.meta.get("total_entries")
            shifted = page.number > 1 and total != expected
            expected = total
            if not shifted:
                position = self._advance(position, page.items, by_id=by_id)
            token = position.token(self.index) if position is not None else {"listing": self.index}
            yield WindowPage(page.items, token, total if isinstance(total, int) else None)
            if shifted:
                logger.info(
                    "%s changed while listed; reading on from the last complete page", self.listing.path
                )
                return position, True
        return position, False

    def _advance(self, position: Position | None, items: list[Any], *, by_id: bool) -> Position | None:
        """The last row of a page, after checking the page came in the order asked for."""
        for item in items:
            current = Position.of(item)
            if current is None:
                continue  # unreadable: the mapper quarantines it; it does not move the position
            in_order = position is None or (current.id > position.id if by_id else current > position)
            if not in_order:
                raise PmsBadResponse(f"GET /{self.listing.path}: rows are not in the order asked for")
            position = current
        return position
