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

Incremental listings add `q[]=updated_at:>=<since - lookback>` (whole seconds with `Z`: a
`+00:00` would decode to a space) and `sort=updated_at,id`, oldest change first, so a cursor
taken from finished pages never passes a record not yet seen. Archiving and cancelling stamp
`updated_at` (UNVERIFIED in the reference; the lookback and reconciliation cover it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.core.exceptions import ValidationError

from clinics.services import cliniko_shard
from sync.pms.errors import PmsAuthFailed
from sync.pms.http import Page, PmsEvent, PmsHttpClient, contact_user_agent
from sync.pms.pacing import CircuitBreaker, TokenBucket, credential_key

MAX_PER_PAGE = 100
DEFAULT_LOOKBACK = timedelta(minutes=5)
PACING_NAMESPACE = "cliniko"


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
        **options: Any,
    ) -> None:
        key = credential_key(api_key, namespace=PACING_NAMESPACE)
        super().__init__(
            base_url=cliniko_api_url(api_key, base_url),
            user_agent=contact_user_agent(),
            pacer=pacer if pacer is not None else TokenBucket(key),
            breaker=breaker if breaker is not None else CircuitBreaker(key),
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
        self, listing: Listing, *, updated_since: datetime | None, page_size: int = MAX_PER_PAGE
    ) -> list[tuple[str, str]]:
        if not 1 <= page_size <= MAX_PER_PAGE:
            raise ValueError(f"page_size must be between 1 and {MAX_PER_PAGE}")
        params = [("per_page", str(page_size))]
        params += [("q[]", state) for state in listing.state_filters]
        if updated_since is not None:
            params.append(("q[]", f"updated_at:>={filter_time(updated_since - self.lookback)}"))
            params.append(("sort", "updated_at,id"))
        return params

    def iter_resource(
        self, resource: str, *, updated_since: datetime | None = None, page_size: int = MAX_PER_PAGE
    ) -> Iterator[tuple[Listing, Page]]:
        """Every page of every listing a resource needs, following `links.next`."""
        for listing in self.listings(resource):
            params = self.list_params(listing, updated_since=updated_since, page_size=page_size)
            for page in self.iter_pages(listing.path, params, items_key=listing.items_key):
                yield listing, page
