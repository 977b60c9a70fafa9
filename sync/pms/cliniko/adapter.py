"""Cliniko as a `sync.pms.base.PmsAdapter`; importing this module registers the `cliniko` kind."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sync.pms import base
from sync.pms.cliniko import mapper
from sync.pms.cliniko.client import ClinikoClient, newest_update
from sync.pms.cliniko.mapper import Mapped, MappingError

if TYPE_CHECKING:
    from clinics.models import PmsConnection
    from sync.pms.pacing import BreakerStatus

KIND = "cliniko"


class ClinikoAdapter:
    kind = KIND
    capabilities = base.Capabilities(
        resources=frozenset(base.RESOURCES),
        incremental=True,
        reports_soft_deletes=True,
        # Hard deletions (and patients' soft deletions) leave no trace in the listings.
        reports_hard_deletes=False,
        lookup_by_id=True,
    )

    def __init__(self, client: ClinikoClient, *, country: str = "AU") -> None:
        self.client = client
        self.country = country
        self.lookback: timedelta = client.lookback
        # Billable item id -> price, read when appointment types are listed (their price lives there).
        self._prices: dict[str, Decimal] = {}
        self._mappers: dict[str, Callable[[dict[str, Any]], Mapped]] = {
            base.LOCATION: mapper.map_business,
            base.PRACTITIONER: mapper.map_practitioner,
            base.APPOINTMENT_TYPE: self._map_appointment_type,
            base.PATIENT: lambda payload: mapper.map_patient(payload, country=self.country),
            base.APPOINTMENT: mapper.map_appointment,
            base.INVOICE: mapper.map_invoice,
        }

    def __repr__(self) -> str:
        return f"<ClinikoAdapter {self.client!r}>"

    def _check(self, resource: str) -> None:
        if resource not in self.capabilities.resources:
            raise base.UnsupportedResource(f"Cliniko adapter does not list {resource!r}")

    def iter_changes(
        self,
        resource: str,
        *,
        after: datetime | None,
        until: datetime | None = None,
        resume: dict[str, Any] | None = None,
        page_size: int = 100,
    ) -> Iterator[base.ChangePage]:
        self._check(resource)
        if resource == base.APPOINTMENT_TYPE:
            self.load_prices()
        pages = self.client.iter_window(
            resource, after=after, until=until, resume=resume, page_size=page_size
        )
        for page in pages:
            yield base.ChangePage(resource, page.items, newest_update(page.items), page.resume, page.total)

    def fetch_by_ids(self, resource: str, ids: list[str]) -> list[dict[str, Any]]:
        self._check(resource)
        if resource == base.APPOINTMENT_TYPE and not self._prices:
            self.load_prices()
        return self.client.fetch_by_ids(resource, ids)

    def map(self, resource: str, payload: dict[str, Any]) -> Mapped:
        self._check(resource)
        return self._mappers[resource](payload)

    def check(self) -> None:
        self.client.get_json("businesses", [("per_page", "1")])

    def circuit_status(self) -> BreakerStatus:
        return self.client.breaker.status()

    def load_prices(self) -> dict[str, Decimal]:
        prices: dict[str, Decimal] = {}
        for _listing, page in self.client.iter_resource("billable_item"):
            for item in page.items:
                if item.get("id") not in (None, ""):
                    try:
                        prices[str(item["id"])] = mapper.parse_decimal(item.get("price"))
                    except MappingError:
                        continue
        self._prices = prices
        return prices

    def _map_appointment_type(self, payload: dict[str, Any]) -> Mapped:
        item_id = mapper.link_id(payload.get("billable_item"))
        price = self._prices.get(item_id) if item_id is not None else None
        return mapper.map_appointment_type(payload, price=price)

    def close(self) -> None:
        self.client.close()


def build_adapter(
    connection: PmsConnection, *, credentials: dict[str, Any], **options: Any
) -> ClinikoAdapter:
    api_key = credentials.get("api_key")
    if not api_key:
        raise base.UnknownPmsKind("the Cliniko connection has no API key")
    client = ClinikoClient(api_key=api_key, base_url=connection.base_url or "", **options)
    return ClinikoAdapter(client, country=connection.organization.country)


base.register(KIND, build_adapter)
