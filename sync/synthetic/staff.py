"""The clinic's fixed cast: locations (Cliniko businesses), practitioners, services.

Drawn once per clinic from a clinic-level RNG, so they are the same whichever patients are
generated. Patient planning reads the `*Plan` objects; the `*_record` functions render the
Cliniko payloads.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from .catalog import (
    API_ROOT,
    ROLE_INDEX,
    SERVICES,
    IdKind,
    TypeRole,
    appointment_type_id,
    billable_item_id,
    link,
    make_id,
)
from .clock import SECONDS_PER_DAY, TimestampFormatter, day_epoch
from .contacts import Address, Region, landline_number, street_address
from .names import PersonName, person_name

_BRANDS = ("Active Motion", "Harbourside", "Core Balance", "Northside", "Evolve", "Peak Form",
           "Kinetic", "Bayview", "Restore", "Momentum")
_DESIGNATIONS = ("Physiotherapist", "Physiotherapist", "Senior Physiotherapist",
                 "Sports Physiotherapist", "Musculoskeletal Physiotherapist",
                 "Remedial Massage Therapist")
_FEMALE_TITLES = ("Ms", "Dr", "Mrs", "", "Miss")
_MALE_TITLES = ("Mr", "Dr", "")


@dataclass(frozen=True)
class BusinessPlan:
    index: int
    id: str
    url: str
    name: str
    address: Address
    phone: str
    opened_day: int


@dataclass(frozen=True)
class PractitionerPlan:
    index: int
    id: str
    url: str
    business_index: int
    name: PersonName
    title: str
    designation: str
    started_day: int
    left_day: int | None
    # Some practitioners never tick "arrived"; their attended visits keep patient_arrived false.
    marks_arrival: bool

    def works_on(self, day: int) -> bool:
        return self.started_day <= day and (self.left_day is None or day < self.left_day)


@dataclass(frozen=True)
class Staff:
    businesses: tuple[BusinessPlan, ...]
    practitioners: tuple[PractitionerPlan, ...]
    business_weights: tuple[float, ...]
    legacy_type_archived_day: int


def build_staff(rng: random.Random, *, locations: int, practitioners: int, first_day: int,
                today: int, region: Region) -> Staff:
    span = today - first_day
    brand = _BRANDS[int(rng.random() * len(_BRANDS))]
    businesses = tuple(_business(rng, index, locations, brand, first_day, span, region)
                       for index in range(locations))
    leavers = _choose_leavers(rng, practitioners, locations)
    cast = tuple(_practitioner(rng, index, businesses[index % locations], leaves=index in leavers,
                               first_day=first_day, today=today) for index in range(practitioners))
    return Staff(
        businesses=businesses,
        practitioners=cast,
        # The first location is the busiest; later ones are smaller satellites.
        business_weights=tuple(1.0 / (1 + 0.4 * index) for index in range(locations)),
        legacy_type_archived_day=first_day + int(span * 0.4),
    )


def _business(rng: random.Random, index: int, locations: int, brand: str, first_day: int,
              span: int, region: Region) -> BusinessPlan:
    if index == 0:
        opened = first_day - 30 - int(rng.random() * 900)
    else:
        # Later locations open part-way through the history, spaced out.
        opened = first_day + int(span * (0.1 + 0.5 * (index - 1) / max(1, locations - 1)))
    # Each location in its own suburb, so no two share a name.
    address = street_address(rng, region, suburb_index=index)
    business_id = make_id(IdKind.BUSINESS, index + 1)
    return BusinessPlan(index, business_id, f"{API_ROOT}/businesses/{business_id}",
                        f"{brand} Physiotherapy {address.city}", address,
                        landline_number(rng, region), opened)


def _choose_leavers(rng: random.Random, practitioners: int, locations: int) -> set[int]:
    """Who has left by `today`. The first practitioner at each location always stays, so
    every location keeps someone to see its patients."""
    if practitioners < 3:
        return set()
    candidates = list(range(locations, practitioners))
    count = min(len(candidates), max(1, practitioners // 10))
    return set(rng.sample(candidates, count))


def _practitioner(rng: random.Random, index: int, business: BusinessPlan, *, leaves: bool,
                  first_day: int, today: int) -> PractitionerPlan:
    started = max(business.opened_day, first_day - 400)
    if index != business.index:
        # Others join over the first month; the location's first practitioner opens it.
        started += int(rng.random() * 30)
    left = None
    earliest = max(started + 120, first_day + (today - first_day) // 3)
    latest = today - 60
    # A history too short for anyone to have come and gone keeps everyone on.
    if leaves and earliest <= latest:
        left = earliest + int(rng.random() * (latest - earliest + 1))
    practitioner_id = make_id(IdKind.PRACTITIONER, index + 1)
    name = person_name(rng, female=rng.random() < 0.6)
    titles = _FEMALE_TITLES if name.female else _MALE_TITLES
    return PractitionerPlan(
        index=index, id=practitioner_id, url=f"{API_ROOT}/practitioners/{practitioner_id}",
        business_index=business.index, name=name,
        title=titles[int(rng.random() * len(titles))],
        designation=_DESIGNATIONS[int(rng.random() * len(_DESIGNATIONS))],
        started_day=started, left_day=left, marks_arrival=index == 0 or rng.random() < 0.8,
    )


def business_record(plan: BusinessPlan, time_zone: str, clock: TimestampFormatter,
                    active_type_ids: list[str]) -> dict[str, Any]:
    created = clock.iso(day_epoch(plan.opened_day) - 5 * SECONDS_PER_DAY + 36_000)
    address = plan.address
    return {
        "address_1": address.address_1,
        "address_2": address.address_2 or None,
        "business_name": plan.name,
        "business_registration_name": "ABN",
        "business_registration_value": str(51_824_753_556 + plan.index * 7_919),
        "city": address.city,
        "contact_information": f"Phone: {plan.phone}",
        "country": address.country,
        "country_code": "AU",
        "created_at": created,
        "display_name": None,
        "email_reply_to": f"reception{plan.index + 1}@clinic.example.com",
        "id": plan.id,
        "label": plan.name,
        "post_code": address.post_code,
        "show_in_online_bookings": True,
        "state": address.state,
        "time_zone": time_zone.rsplit("/", 1)[-1].replace("_", " "),
        "time_zone_identifier": time_zone,
        "appointment_type_ids": active_type_ids,
        "updated_at": created,
        "archived_at": None,
        "deleted_at": None,
        "website_address": "https://clinic.example.com",
        "practitioners": link(f"{plan.url}/practitioners"),
        "appointments": link(f"{plan.url}/appointments?page=1"),
        "links": {"self": plan.url},
    }


def practitioner_record(plan: PractitionerPlan, clock: TimestampFormatter) -> dict[str, Any]:
    created_epoch = day_epoch(plan.started_day) - 3 * SECONDS_PER_DAY + 30_000
    updated_epoch = created_epoch if plan.left_day is None else day_epoch(plan.left_day) + 28_800
    label = f"{plan.name.first.display} {plan.name.last.display}"
    return {
        "active": plan.left_day is None,
        "created_at": clock.iso(created_epoch),
        "designation": plan.designation,
        "description": None,
        "display_name": label,
        "first_name": plan.name.first.display,
        "id": plan.id,
        "last_name": plan.name.last.display,
        "show_in_online_bookings": plan.left_day is None,
        "title": plan.title or None,
        "label": label,
        "updated_at": clock.iso(updated_epoch),
        "default_appointment_type": link(
            f"{API_ROOT}/appointment_types/{appointment_type_id(ROLE_INDEX[TypeRole.STANDARD])}"),
        "appointment_types": link(f"{plan.url}/appointment_types"),
        "practitioner_reference_numbers": link(f"{plan.url}/practitioner_reference_numbers?page=1"),
        "user": link(f"{API_ROOT}/users/{make_id(IdKind.USER, plan.index + 1)}"),
        "appointments": link(f"{plan.url}/appointments?page=1"),
        "invoices": link(f"{plan.url}/invoices?page=1"),
        "links": {"self": plan.url},
    }


def appointment_type_records(staff: Staff, clock: TimestampFormatter) -> list[dict[str, Any]]:
    created = clock.iso(day_epoch(staff.businesses[0].opened_day) + 40_000)
    records = []
    for index, service in enumerate(SERVICES):
        type_id = appointment_type_id(index)
        url = f"{API_ROOT}/appointment_types/{type_id}"
        archived = None
        if service.role is TypeRole.LEGACY_STANDARD:
            archived = clock.iso(day_epoch(staff.legacy_type_archived_day) + 30_000)
        records.append({
            "id": type_id,
            "category": service.category,
            "color": service.color,
            "created_at": created,
            "duration_in_minutes": service.duration_in_minutes,
            "name": service.name,
            "description": None,
            "max_attendees": 1,
            "show_in_online_bookings": service.role in {TypeRole.INITIAL, TypeRole.STANDARD},
            "telehealth_enabled": service.role is TypeRole.TELEHEALTH,
            "archived_at": archived,
            "updated_at": archived or created,
            "billable_item": link(f"{API_ROOT}/billable_items/{billable_item_id(index)}"),
            "practitioners": link(f"{url}/practitioners"),
            "links": {"self": url},
        })
    return records


def billable_item_records(staff: Staff, clock: TimestampFormatter) -> list[dict[str, Any]]:
    """Cliniko billable items: where the price of each appointment type lives."""
    created = clock.iso(day_epoch(staff.businesses[0].opened_day) + 39_000)
    records = []
    for index, service in enumerate(SERVICES):
        item_id = billable_item_id(index)
        archived = None
        if service.role is TypeRole.LEGACY_STANDARD:
            archived = clock.iso(day_epoch(staff.legacy_type_archived_day) + 30_000)
        records.append({
            "id": item_id,
            "name": service.name,
            "item_code": service.item_code,
            "item_type": "Service",
            "price": f"{service.price:.2f}",
            "created_at": created,
            "updated_at": archived or created,
            "archived_at": archived,
            "links": {"self": f"{API_ROOT}/billable_items/{item_id}"},
        })
    return records
