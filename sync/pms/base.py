"""What the sync engine asks of any practice-management system, and how it finds the adapter.

An adapter speaks one PMS and answers in normalised resource names (`RESOURCES`). It lists a
resource's records changed in a window, page by page, and says after each page how to resume
the listing there (`iter_changes`); it looks records up by id, to tell a hard deletion from a
row that merely moved out of a listing (`fetch_by_ids`); and it maps one raw payload to a
`Mapped` row (`map`). The sync engine (`sync/engine/`) owns cursors, storage and counting.

Adding a PMS: create the package `sync/pms/<kind>/` with a module `adapter.py` that calls
`register("<kind>", factory)` at import time. `adapter_for(connection)` imports
`sync.pms.<connection.kind>.adapter` on first use, so nothing needs to be listed in an
`AppConfig.ready()`, and a PMS that is never connected is never imported.
"""

from __future__ import annotations

import importlib
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from sync.pms.http import EventKind, PmsEvent

if TYPE_CHECKING:
    from clinics.models import PmsConnection
    from sync.pms.cliniko.mapper import Mapped
    from sync.pms.pacing import BreakerStatus

LOCATION = "location"
PRACTITIONER = "practitioner"
APPOINTMENT_TYPE = "appointment_type"
PATIENT = "patient"
APPOINTMENT = "appointment"
INVOICE = "invoice"
# In dependency order: a loader that follows it always finds the rows a record refers to.
RESOURCES: tuple[str, ...] = (LOCATION, PRACTITIONER, APPOINTMENT_TYPE, PATIENT, APPOINTMENT, INVOICE)


class UnknownPmsKind(LookupError):
    """No adapter is registered (or importable) for a connection's kind."""


class UnsupportedResource(LookupError):
    """The adapter does not list this resource (see its `capabilities.resources`)."""


@dataclass(frozen=True)
class Capabilities:
    resources: frozenset[str]
    # Records changed since a cursor can be asked for, instead of a full listing each time.
    incremental: bool = True
    # Soft deletions (a `deleted_at`) show up in the listings.
    reports_soft_deletes: bool = False
    # Hard deletions leave a trace; when False, only a full reconciliation finds them.
    reports_hard_deletes: bool = False
    # `fetch_by_ids` works, so a reconciliation can check each missing id before removing it.
    lookup_by_id: bool = False


@dataclass(frozen=True)
class ChangePage:
    """One page of raw payloads.

    `max_updated_at` is the newest `updated_at` on it (None for an empty page). `resume` is
    a small JSON-able token: once this page and every earlier one are stored, passing it back
    to `iter_changes` continues the listing without losing a record not yet yielded (None:
    the listing cannot resume mid-way and starts again). `total` is the listing's size when
    the PMS says it (progress only).
    """

    resource: str
    items: list[dict[str, Any]]
    max_updated_at: datetime | None
    resume: dict[str, Any] | None = None
    total: int | None = None


@runtime_checkable
class PmsAdapter(Protocol):
    kind: str
    capabilities: Capabilities
    # How far before a stored watermark a new listing starts again, for a PMS whose change
    # filter is imprecise (Nookal: its zone and inclusivity are unknown). Records committed
    # late are the sync's window margin's business, not this.
    lookback: timedelta

    def iter_changes(
        self,
        resource: str,
        *,
        after: datetime | None,
        until: datetime | None = None,
        resume: dict[str, Any] | None = None,
        page_size: int = 100,
    ) -> Iterator[ChangePage]:
        """Pages of every record of `resource` (whatever its state: archived, cancelled and
        deleted rows included) with `after < updated_at < until`, oldest change first; no
        lower bound when `after` is None (a PMS whose filters are loose may return more, never
        less). With `resume` (a page's token), continue there."""
        ...

    def fetch_by_ids(self, resource: str, ids: list[str]) -> list[dict[str, Any]]:
        """The raw payloads of those of `ids` the PMS still has, in any state (only when
        `capabilities.lookup_by_id`)."""
        ...

    def map(self, resource: str, payload: dict[str, Any]) -> Mapped:
        """One raw payload as model fields (raises the mapper's `MappingError`)."""
        ...

    def check(self) -> None:
        """One cheap read proving the PMS answers these credentials (raises `PmsError`)."""
        ...

    def circuit_status(self) -> BreakerStatus:
        """The shared circuit breaker of these credentials, as every process sees it."""
        ...

    def close(self) -> None: ...


AdapterFactory = Callable[..., PmsAdapter]

_registry: dict[str, AdapterFactory] = {}
_registry_lock = threading.Lock()


def register(kind: str, factory: AdapterFactory) -> None:
    """Make `adapter_for` build `kind` connections with `factory(connection, credentials=...,
    **options)`. Registering a kind again replaces its factory (tests use this)."""
    with _registry_lock:
        _registry[kind] = factory


def registered_kinds() -> frozenset[str]:
    with _registry_lock:
        return frozenset(_registry)


def _factory_for(kind: str) -> AdapterFactory:
    with _registry_lock:
        factory = _registry.get(kind)
    if factory is not None:
        return factory
    if not kind.isidentifier():
        raise UnknownPmsKind(f"no PMS adapter for kind {kind!r}")
    module = f"sync.pms.{kind}.adapter"
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module.startswith(exc.name):
            raise UnknownPmsKind(f"no PMS adapter for kind {kind!r} (no module {module})") from None
        raise
    with _registry_lock:
        factory = _registry.get(kind)
    if factory is None:
        raise UnknownPmsKind(f"{module} did not register an adapter for kind {kind!r}")
    return factory


def adapter_for(connection: PmsConnection, **options: Any) -> PmsAdapter:
    """The adapter for an organization's PMS connection, credentials decrypted, the
    connection's `base_url` override honoured. `options` go to the factory (`on_event`,
    pacing and retry settings...)."""
    from clinics.selectors import pms_connection_credentials

    factory = _factory_for(connection.kind)
    return factory(connection, credentials=pms_connection_credentials(connection), **options)


@dataclass
class EventCounter:
    """An `on_event` listener that counts what a sync run's HTTP calls went through."""

    counts: Counter[str] = field(default_factory=Counter)
    waited_seconds: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __call__(self, event: PmsEvent) -> None:
        with self._lock:
            self.counts[event.kind] += 1
            if event.kind in (EventKind.PACED, EventKind.RETRY) and event.delay:
                self.waited_seconds += event.delay

    @property
    def requests(self) -> int:
        return self.counts[EventKind.REQUEST]

    @property
    def rate_limited(self) -> int:
        return self.counts[EventKind.RATE_LIMITED]

    @property
    def retries(self) -> int:
        return self.counts[EventKind.RETRY]
