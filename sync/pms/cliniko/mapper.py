"""Cliniko payloads to Routiq rows (field dicts), per ../shared/reference/cliniko/README.md.

Ids stay strings, money is Decimal, `""` reads as null, related ids come from link objects,
attendance flags may be null. A mapper never touches the database: it returns the model
fields and the external ids of related rows, for a loader or the sync engine to resolve.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from patients.services import contact_fields
from sync.pms.cliniko.vocabulary import CANCELLATION_REASONS, INVOICE_STATUS_NAMES


class MappingError(ValueError):
    """A payload that cannot become a row; the caller quarantines it with the raw payload."""


@dataclass
class Mapped:
    external_id: str
    fields: dict[str, Any]
    refs: dict[str, str | None] = field(default_factory=dict)

    @property
    def pms_refs(self) -> dict[str, str]:
        """The refs that name something, as stored in `PmsRecord.pms_refs`."""
        return {name: value for name, value in self.refs.items() if value}


def link_id(value: Any) -> str | None:
    """The id at the end of `{"links": {"self": ".../patients/82"}}`; None when absent."""
    if not isinstance(value, dict):
        return None
    href = (value.get("links") or {}).get("self")
    if not href:
        return None
    tail = href.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    return tail if tail.isdigit() else None


def parse_datetime(value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError as exc:
        raise MappingError(f"not a timestamp: {value!r}") from exc
    if parsed.tzinfo is None:
        raise MappingError(f"timestamp without a zone: {value!r}")
    return parsed


def parse_date(value: Any) -> date | None:
    if value in (None, ""):
        return None
    try:
        return date.fromisoformat(str(value))
    except ValueError as exc:
        raise MappingError(f"not a date: {value!r}") from exc


def parse_decimal(value: Any) -> Decimal:
    if value in (None, ""):
        return Decimal("0.00")
    try:
        return Decimal(str(value)).quantize(Decimal("0.01"))
    except InvalidOperation as exc:
        raise MappingError(f"not an amount: {value!r}") from exc


def text(value: Any) -> str:
    # NUL is the one character PostgreSQL text cannot hold; it never means anything in a PMS field.
    return "" if value is None else str(value).replace("\x00", "").strip()


def _id(payload: dict[str, Any]) -> str:
    value = payload.get("id")
    if value in (None, ""):
        raise MappingError("record has no id")
    return str(value)


def _state(payload: dict[str, Any]) -> dict[str, Any]:
    return {
        "pms_created_at": parse_datetime(payload.get("created_at")),
        "pms_updated_at": parse_datetime(payload.get("updated_at")),
        "archived_at": parse_datetime(payload.get("archived_at")),
        "deleted_at": parse_datetime(payload.get("deleted_at")),
    }


def map_business(payload: dict[str, Any]) -> Mapped:
    address = ", ".join(text(payload.get(k)) for k in ("address_1", "address_2") if text(payload.get(k)))
    return Mapped(
        _id(payload),
        {
            **_state(payload),
            "name": text(payload.get("business_name") or payload.get("display_name") or payload.get("label")),
            "time_zone": text(payload.get("time_zone_identifier")),
            "address": address,
            "city": text(payload.get("city")),
            "state": text(payload.get("state")),
            "post_code": text(payload.get("post_code")),
            "country": text(payload.get("country")),
            "phone": text(payload.get("contact_information"))[:50],
        },
    )


def map_practitioner(payload: dict[str, Any]) -> Mapped:
    active = payload.get("active")
    return Mapped(
        _id(payload),
        {
            **_state(payload),
            "first_name": text(payload.get("first_name")),
            "last_name": text(payload.get("last_name")),
            "title": text(payload.get("title")),
            "designation": text(payload.get("designation")),
            "email": text(payload.get("email")),
            "active": True if active is None else bool(active),
        },
    )


def map_appointment_type(payload: dict[str, Any], *, price: Decimal | None = None) -> Mapped:
    return Mapped(
        _id(payload),
        {
            **_state(payload),
            "name": text(payload.get("name")),
            "category": text(payload.get("category")),
            "duration_minutes": payload.get("duration_in_minutes"),
            "max_attendees": payload.get("max_attendees") or 1,
            "price": price,
        },
        {"billable_item": link_id(payload.get("billable_item"))},
    )


def map_patient(payload: dict[str, Any], *, country: str) -> Mapped:
    phones = [
        {"type": text(entry.get("phone_type")), "number": text(entry.get("number"))}
        for entry in payload.get("patient_phone_numbers") or []
        if isinstance(entry, dict)
    ]
    email = text(payload.get("email"))
    return Mapped(
        _id(payload),
        {
            **_state(payload),
            "merged_at": parse_datetime(payload.get("merged_at")),
            "first_name": text(payload.get("first_name")),
            "last_name": text(payload.get("last_name")),
            "preferred_first_name": text(payload.get("preferred_first_name")),
            "title": text(payload.get("title")),
            "date_of_birth": parse_date(payload.get("date_of_birth")),
            "sex": text(payload.get("sex") or payload.get("gender")),
            "email": email,
            "phone_numbers": phones,
            **contact_fields(email=email, phone_numbers=phones, country=country),
            "city": text(payload.get("city")),
            "state": text(payload.get("state")),
            "post_code": text(payload.get("post_code")),
            "accepted_sms_marketing": payload.get("accepted_sms_marketing"),
            "accepted_email_marketing": payload.get("accepted_email_marketing"),
        },
        {"merged_with_patient": link_id(payload.get("merged_with_patient"))},
    )


def map_appointment(payload: dict[str, Any]) -> Mapped:
    starts_at = parse_datetime(payload.get("starts_at"))
    ends_at = parse_datetime(payload.get("ends_at")) or starts_at
    if starts_at is None:
        raise MappingError("appointment has no starts_at")
    if ends_at < starts_at:
        raise MappingError("appointment ends before it starts")
    reason_code = payload.get("cancellation_reason")
    return Mapped(
        _id(payload),
        {
            **_state(payload),
            "starts_at": starts_at,
            "ends_at": ends_at,
            "cancelled_at": parse_datetime(payload.get("cancelled_at")),
            "cancellation_reason_code": reason_code if isinstance(reason_code, int) else None,
            "cancellation_reason": text(payload.get("cancellation_reason_description"))
            or CANCELLATION_REASONS.get(reason_code, ""),
            "cancellation_note": text(payload.get("cancellation_note")),
            # Both flags turn null when a UI toggle is undone: null means "not recorded".
            "did_not_arrive": bool(payload.get("did_not_arrive")),
            "patient_arrived": bool(payload.get("patient_arrived")),
        },
        {
            "patient": link_id(payload.get("patient")),
            "practitioner": link_id(payload.get("practitioner")),
            "appointment_type": link_id(payload.get("appointment_type")),
            "location": link_id(payload.get("business")),
        },
    )


def map_invoice(payload: dict[str, Any]) -> Mapped:
    status = payload.get("status")
    return Mapped(
        _id(payload),
        {
            **_state(payload),
            "number": text(payload.get("number")),
            "issue_date": parse_date(payload.get("issue_date")),
            "status": INVOICE_STATUS_NAMES.get(status, "unknown"),
            "status_code": text(status),
            "total_amount": parse_decimal(payload.get("total_amount")),
            "tax_amount": parse_decimal(payload.get("tax_amount")),
            "net_amount": parse_decimal(payload.get("net_amount")),
            "discounted_amount": parse_decimal(payload.get("discounted_amount")),
            "closed_at": parse_datetime(payload.get("closed_at")),
        },
        {
            "patient": link_id(payload.get("patient")),
            "appointment": link_id(payload.get("appointment")),
            "practitioner": link_id(payload.get("practitioner")),
            "location": link_id(payload.get("business")),
        },
    )
