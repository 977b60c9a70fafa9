"""Nookal as a `sync.pms.base.PmsAdapter`; importing this module registers the `nookal` kind.

Appointments carry location-local times, so the adapter keeps each location's `Timezone`
(read from `getLocations` once, refreshed whenever locations are listed) and maps each
appointment in its location's zone; an unknown location falls back to the organization's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Any

from sync.pms import base
from sync.pms.cliniko.mapper import Mapped, MappingError
from sync.pms.nookal import mapper
from sync.pms.nookal.client import LISTINGS, NookalClient

if TYPE_CHECKING:
    from clinics.models import PmsConnection
    from sync.pms.pacing import BreakerStatus

KIND = "nookal"
_MODIFIED_FIELDS = ("lastModified", "DateModified")


def _max_updated_at(items: list[dict[str, Any]], stamp_zone: tzinfo) -> datetime | None:
    newest: datetime | None = None
    for item in items:
        for name in _MODIFIED_FIELDS:
            try:
                stamp = mapper.parse_stamp(item.get(name), stamp_zone)
            except MappingError:
                continue  # the mapper quarantines the record; the cursor ignores it
            if stamp is not None and (newest is None or stamp > newest):
                newest = stamp
    return newest


class NookalAdapter:
    kind = KIND
    capabilities = base.Capabilities(
        # Invoices: the reference names the fields but not how they link to appointments.
        resources=frozenset(LISTINGS),
        incremental=True,  # patients and appointments; the small lists are read in full
        reports_soft_deletes=False,
        reports_hard_deletes=False,
    )

    def __init__(
        self, client: NookalClient, *, country: str = "AU", default_zone: str = "UTC", stamp_zone: str = "UTC"
    ) -> None:
        self.client = client
        self.country = country
        self.lookback: timedelta = client.lookback
        self.default_zone = mapper.zone(default_zone)
        self.stamp_zone = mapper.zone(stamp_zone)
        self._zones: dict[str, tzinfo] | None = None
        self._mappers: dict[str, Callable[[dict[str, Any]], Mapped]] = {
            base.LOCATION: lambda p: mapper.map_location(p, stamp_zone=self.stamp_zone),
            base.PRACTITIONER: lambda p: mapper.map_practitioner(p, stamp_zone=self.stamp_zone),
            base.APPOINTMENT_TYPE: lambda p: mapper.map_appointment_type(p, stamp_zone=self.stamp_zone),
            base.PATIENT: lambda p: mapper.map_patient(p, country=self.country, stamp_zone=self.stamp_zone),
            base.APPOINTMENT: self._map_appointment,
        }

    def __repr__(self) -> str:
        return f"<NookalAdapter {self.client!r}>"

    def _check(self, resource: str) -> None:
        if resource not in self.capabilities.resources:
            raise base.UnsupportedResource(f"Nookal adapter does not list {resource!r}")

    def iter_changes(
        self,
        resource: str,
        *,
        after: datetime | None,
        until: datetime | None = None,
        resume: dict[str, Any] | None = None,
        page_size: int = 100,
    ) -> Iterator[base.ChangePage]:
        """`after` is sent as the inclusive `last_modified` (a superset); `until` is not sent
        (Nookal has no upper bound; newer rows are harmless repeats); `resume` is ignored:
        pages are numbered in an order the reference does not give, so a listing that stopped
        half-way is read again from its start."""
        self._check(resource)
        for page in self.client.iter_resource(resource, updated_since=after, page_size=page_size):
            if resource == base.LOCATION:
                self._remember_zones(page.items)
            yield base.ChangePage(resource, page.items, _max_updated_at(page.items, self.stamp_zone))

    def fetch_by_ids(self, resource: str, ids: list[str]) -> list[dict[str, Any]]:
        raise base.UnsupportedResource("Nookal records cannot be looked up by id in bulk")

    def map(self, resource: str, payload: dict[str, Any]) -> Mapped:
        self._check(resource)
        return self._mappers[resource](payload)

    def check(self) -> None:
        self.client.verify()

    def circuit_status(self) -> BreakerStatus:
        return self.client.breaker.status()

    def location_zones(self) -> dict[str, tzinfo]:
        if self._zones is None:
            for page in self.client.iter_resource(base.LOCATION):
                self._remember_zones(page.items)
        return self._zones or {}

    def _remember_zones(self, items: list[dict[str, Any]]) -> None:
        zones = self._zones if self._zones is not None else {}
        for item in items:
            location_id, name = mapper.ref(item.get("ID")), mapper.text(item.get("Timezone"))
            if location_id is None or not name:
                continue
            try:
                zones[location_id] = mapper.zone(name)
            except MappingError:
                continue  # mapping that location quarantines it
        self._zones = zones

    def _map_appointment(self, payload: dict[str, Any]) -> Mapped:
        location_id = mapper.ref(payload.get("locationID"))
        time_zone = self.location_zones().get(location_id or "", self.default_zone)
        return mapper.map_appointment(payload, time_zone=time_zone, stamp_zone=self.stamp_zone)

    def close(self) -> None:
        self.client.close()


def build_adapter(connection: PmsConnection, *, credentials: dict[str, Any], **options: Any) -> NookalAdapter:
    api_key = credentials.get("api_key")
    if not api_key:
        raise base.UnknownPmsKind("the Nookal connection has no API key")
    client = NookalClient(api_key=api_key, base_url=connection.base_url or "", **options)
    organization = connection.organization
    return NookalAdapter(
        client, country=organization.country, default_zone=organization.time_zone or "UTC"
    )


base.register(KIND, build_adapter)
