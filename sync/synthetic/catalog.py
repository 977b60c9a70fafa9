"""Fixed vocabulary of the synthetic clinic: id scheme, links, services, prices, Cliniko codes."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import IntEnum
from typing import Any

from sync.pms.cliniko.vocabulary import (  # noqa: F401 - re-exported for the generator
    CANCELLATION_REASONS,
    INVOICE_STATUS_DESCRIPTIONS,
    InvoiceStatus,
)

API_ROOT = "https://api.au1.cliniko.com/v1"

# Cliniko ids are int64 sent as strings; accounts created since 2022 get 18-digit ones.
_ID_FLOOR = 500_000_000_000_000_000
_ID_KIND_STRIDE = 10**16
# Per-patient serials leave room for this many appointments (and invoices) per patient.
PER_PATIENT_ID_BLOCK = 1000


class IdKind(IntEnum):
    BUSINESS = 1
    PRACTITIONER = 2
    APPOINTMENT_TYPE = 3
    BILLABLE_ITEM = 4
    PATIENT = 5
    APPOINTMENT = 6
    INVOICE = 7
    USER = 8


def make_id(kind: IdKind, serial: int) -> str:
    """A Cliniko-like id, unique across every resource kind for serials below 10**16."""
    return str(_ID_FLOOR + kind * _ID_KIND_STRIDE + serial)


def link(url: str) -> dict[str, Any]:
    """Cliniko's relation shape: `{"links": {"self": url}}`. A fresh dict each call."""
    return {"links": {"self": url}}


class TypeRole(IntEnum):
    INITIAL = 1
    STANDARD = 2
    SHORT = 3
    EXTENDED = 4
    MASSAGE = 5
    TELEHEALTH = 6
    LEGACY_STANDARD = 7


@dataclass(frozen=True)
class ServiceDefinition:
    role: TypeRole
    name: str
    category: str
    duration_in_minutes: int
    price: Decimal
    item_code: str
    color: str


# Index in this tuple is the appointment type's serial (and its billable item's).
SERVICES: tuple[ServiceDefinition, ...] = (
    ServiceDefinition(
        TypeRole.INITIAL,
        "Initial Consultation",
        "Physiotherapy",
        45,
        Decimal("120.00"),
        "PHY-IC",
        "#1f77b4",
    ),
    ServiceDefinition(
        TypeRole.STANDARD,
        "Standard Consultation",
        "Physiotherapy",
        30,
        Decimal("95.00"),
        "PHY-SC",
        "#2ca02c",
    ),
    ServiceDefinition(
        TypeRole.SHORT,
        "Follow-up Consultation (Short)",
        "Physiotherapy",
        15,
        Decimal("65.50"),
        "PHY-FS",
        "#98df8a",
    ),
    ServiceDefinition(
        TypeRole.EXTENDED,
        "Extended Consultation",
        "Physiotherapy",
        60,
        Decimal("160.00"),
        "PHY-EC",
        "#d62728",
    ),
    ServiceDefinition(
        TypeRole.MASSAGE,
        "Remedial Massage (60 min)",
        "Massage",
        60,
        Decimal("110.00"),
        "MAS-60",
        "#9467bd",
    ),
    ServiceDefinition(
        TypeRole.TELEHEALTH,
        "Telehealth Consultation",
        "Telehealth",
        30,
        Decimal("85.00"),
        "TEL-30",
        "#17becf",
    ),
    # Archived part-way through the history: old appointments still link to it.
    ServiceDefinition(
        TypeRole.LEGACY_STANDARD,
        "Standard Consultation (old pricing)",
        "Physiotherapy",
        30,
        Decimal("89.50"),
        "PHY-SC-OLD",
        "#7f7f7f",
    ),
)
ROLE_INDEX: dict[TypeRole, int] = {service.role: index for index, service in enumerate(SERVICES)}


def appointment_type_id(index: int) -> str:
    return make_id(IdKind.APPOINTMENT_TYPE, index + 1)


def billable_item_id(index: int) -> str:
    return make_id(IdKind.BILLABLE_ITEM, index + 1)


def appointment_type_prices() -> dict[str, Decimal]:
    """Appointment type id -> the price Cliniko would charge for it.

    Cliniko keeps prices on billable items (each appointment type links its item through
    `billable_item`); this is the same fact flattened for loaders and tests. The catalogue is
    fixed, so the mapping holds for every generated clinic.
    """
    return {appointment_type_id(index): service.price for index, service in enumerate(SERVICES)}


TREATMENT_NOTE_DRAFT = 10
TREATMENT_NOTE_FINAL = 90
