"""Cliniko individual-appointment and invoice payloads, rendered from planned visits.

This is the hot path (about a million appointments for the largest clinic), so everything
that does not vary per record is computed once in `RecordContext`.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from .bookings import InvoicePlan, Visit
from .catalog import (
    API_ROOT,
    CANCELLATION_REASONS,
    INVOICE_STATUS_DESCRIPTIONS,
    PER_PATIENT_ID_BLOCK,
    SERVICES,
    IdKind,
    appointment_type_id,
    make_id,
)
from .clock import TimestampFormatter
from .staff import Staff

CONCESSION_DISCOUNT = Decimal("0.15")
_CENT = Decimal("0.01")


@dataclass(frozen=True)
class Amounts:
    """Invoice money fields for one service, as Cliniko's 2-dp decimal strings."""

    net: str
    tax: str
    total: str
    discounted: str


def _amounts(price: Decimal, discount_rate: Decimal) -> Amounts:
    # Health services are GST-free in Australia, so tax is zero and total equals net.
    discount = (price * discount_rate).quantize(_CENT)
    net = price - discount
    return Amounts(f"{net:.2f}", "0.00", f"{net:.2f}", f"{discount:.2f}")


@dataclass(frozen=True)
class RecordContext:
    clock: TimestampFormatter
    type_urls: tuple[str, ...]
    practitioner_urls: tuple[str, ...]
    business_urls: tuple[str, ...]
    full_price: tuple[Amounts, ...]
    concession_price: tuple[Amounts, ...]

    @classmethod
    def build(cls, staff: Staff, clock: TimestampFormatter) -> RecordContext:
        return cls(
            clock=clock,
            type_urls=tuple(f"{API_ROOT}/appointment_types/{appointment_type_id(index)}"
                            for index in range(len(SERVICES))),
            practitioner_urls=tuple(p.url for p in staff.practitioners),
            business_urls=tuple(b.url for b in staff.businesses),
            full_price=tuple(_amounts(s.price, Decimal(0)) for s in SERVICES),
            concession_price=tuple(_amounts(s.price, CONCESSION_DISCOUNT) for s in SERVICES),
        )


@dataclass(frozen=True)
class PatientRef:
    """What every record of one patient repeats."""

    index: int
    url: str
    name: str
    invoice_to: str
    booking_ip: str
    concession: bool


def _per_patient_serial(patient_index: int, position: int) -> int:
    return patient_index * PER_PATIENT_ID_BLOCK + position + 1


def appointment_id(patient_index: int, position: int) -> str:
    return make_id(IdKind.APPOINTMENT, _per_patient_serial(patient_index, position))


def invoice_id(patient_index: int, position: int) -> str:
    return make_id(IdKind.INVOICE, _per_patient_serial(patient_index, position))


def appointment_record(visit: Visit, appointment_key: str, patient: PatientRef,
                       ctx: RecordContext) -> dict[str, Any]:
    iso = ctx.clock.iso
    url = f"{API_ROOT}/individual_appointments/{appointment_key}"
    cancelled = visit.cancelled
    invoice = visit.invoice
    return {
        "id": appointment_key,
        "created_at": iso(visit.created),
        "updated_at": iso(visit.updated),
        "archived_at": None if visit.archived is None else iso(visit.archived),
        "booking_ip_address": patient.booking_ip if visit.online else None,
        "cancellation_note": visit.cancel_note,
        "cancellation_reason": visit.cancel_reason,
        "cancellation_reason_description": (
            "" if visit.cancel_reason is None else CANCELLATION_REASONS[visit.cancel_reason]),
        "conflicts": {"links": {"self": f"{url}/conflicts"}},
        "did_not_arrive": visit.did_not_arrive,
        "email_reminder_sent": visit.email_reminder,
        "invoice_status": (int(invoice.status) if invoice is not None and invoice.deleted is None
                           else None),
        "notes": None,
        "online_booking_policy_accepted": True if visit.online else None,
        "patient_arrived": visit.arrived,
        "patient_name": patient.name,
        "repeat_rule": {},
        "repeats": None,
        "sms_reminder_sent": visit.sms_reminder,
        "treatment_note_status": visit.treatment_note_status,
        "deleted_at": None if visit.deleted is None else iso(visit.deleted),
        "starts_at": iso(visit.start),
        "ends_at": iso(visit.end),
        "cancelled_at": None if cancelled is None else iso(cancelled),
        "appointment_type": {"links": {"self": ctx.type_urls[visit.type_index]}},
        "business": {"links": {"self": ctx.business_urls[visit.business_index]}},
        "practitioner": {"links": {"self": ctx.practitioner_urls[visit.practitioner_index]}},
        "patient": {"links": {"self": patient.url}},
        "attendees": {"links": {"self": f"{url}/attendees"}},
        "links": {"self": url},
    }


def invoice_record(visit: Visit, invoice: InvoicePlan, appointment_key: str, position: int,
                   patient: PatientRef, ctx: RecordContext) -> dict[str, Any]:
    iso = ctx.clock.iso
    key = invoice_id(patient.index, position)
    prices = ctx.concession_price if patient.concession else ctx.full_price
    amounts = prices[visit.type_index]
    status = invoice.status
    updated = max(invoice.created, invoice.closed or 0, invoice.deleted or 0)
    return {
        "id": key,
        "issue_date": ctx.clock.day(visit.day),
        "total_amount": amounts.total,
        "tax_amount": amounts.tax,
        "net_amount": amounts.net,
        "notes": "Did not arrive fee" if invoice.dna_fee else "",
        "status": int(status),
        "invoice_to": patient.invoice_to,
        "patient_extra_information": "",
        # Unique and stable per patient; Cliniko's own numbering is one clinic-wide sequence.
        "number": 1000 + _per_patient_serial(patient.index, position),
        "discounted_amount": amounts.discounted,
        "status_description": INVOICE_STATUS_DESCRIPTIONS[status],
        "created_at": iso(invoice.created),
        "updated_at": iso(updated),
        "deleted_at": None if invoice.deleted is None else iso(invoice.deleted),
        "archived_at": None,
        "closed_at": None if invoice.closed is None else iso(invoice.closed),
        # Cliniko still links invoices to the legacy /appointments route.
        "appointment": {"links": {"self": f"{API_ROOT}/appointments/{appointment_key}"}},
        "business": {"links": {"self": ctx.business_urls[visit.business_index]}},
        "practitioner": {"links": {"self": ctx.practitioner_urls[visit.practitioner_index]}},
        "patient": {"links": {"self": patient.url}},
        "links": {"self": f"{API_ROOT}/invoices/{key}"},
    }
