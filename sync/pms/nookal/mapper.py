"""Nookal payloads to Routiq rows (field dicts), per ../shared/reference/nookal/README.md.

Same output as the Cliniko mapper (`Mapped`, the same field names), from Nookal's shapes:
ids are strings, booleans are `"1"`/`"0"` (§2), `""` and null read as absent, and date-times
are wall-clock strings without a zone (`"YYYY-MM-DD HH:MM:SS"`). Appointment times are
location-local (§5), so they become UTC through the location's IANA zone; the zone of the
record stamps (`lastModified`, `DateModified`, ...) is UNKNOWN in the reference, so the
caller says which zone to read them in (`stamp_zone`, UTC by default, as cotwo assumes).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, tzinfo
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from patients.services import contact_fields
from sync.pms.cliniko.mapper import Mapped, MappingError

_TRUE = ("1", 1, True)
_FALSE = ("0", 0, False)


def text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def parse_flag(value: Any) -> bool | None:
    """A Nookal boolean: `"1"`/`"0"` (ints and bools accepted too); None when absent."""
    if value in (None, ""):
        return None
    if isinstance(value, str):
        value = value.strip()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise MappingError(f"not a Nookal boolean: {value!r}")


def zone(name: Any) -> tzinfo:
    try:
        return ZoneInfo(text(name))
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise MappingError(f"unknown time zone: {name!r}") from exc


def parse_date(value: Any) -> date | None:
    if value in (None, ""):
        return None
    try:
        return date.fromisoformat(text(value))
    except ValueError as exc:
        raise MappingError(f"not a date: {value!r}") from exc


def local_datetime(day: Any, clock: Any, time_zone: tzinfo) -> datetime | None:
    """A date and an `HH:MM[:SS]` wall-clock time in `time_zone`, as UTC. A time that a DST
    change skips or repeats resolves like zoneinfo's fold=0 (the earlier offset)."""
    parsed_day = parse_date(day)
    if parsed_day is None or clock in (None, ""):
        return None
    try:
        parsed_time = time.fromisoformat(text(clock))
    except ValueError as exc:
        raise MappingError(f"not a time: {clock!r}") from exc
    return datetime.combine(parsed_day, parsed_time, tzinfo=time_zone).astimezone(UTC)


def parse_stamp(value: Any, time_zone: tzinfo = UTC) -> datetime | None:
    """`"YYYY-MM-DD HH:MM:SS"` read in `time_zone` (an explicit offset wins), as UTC."""
    raw = text(value)
    if not raw or raw.startswith("0000-00-00"):
        return None  # MySQL's zero date: "never"
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError as exc:
        raise MappingError(f"not a timestamp: {value!r}") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=time_zone)
    return parsed.astimezone(UTC)


def parse_decimal(value: Any) -> Decimal | None:
    if value in (None, ""):
        return None
    try:
        return Decimal(text(value)).quantize(Decimal("0.01"))
    except InvalidOperation as exc:
        raise MappingError(f"not an amount: {value!r}") from exc


def parse_int(value: Any) -> int | None:
    if value in (None, ""):
        return None
    try:
        return int(text(value))
    except ValueError as exc:
        raise MappingError(f"not a whole number: {value!r}") from exc


def ref(value: Any) -> str | None:
    """A related record's id; Nookal sends `""` or `"0"` for "none"."""
    raw = text(value)
    return None if raw in ("", "0") else raw


def _id(payload: dict[str, Any]) -> str:
    value = ref(payload.get("ID"))
    if value is None:
        raise MappingError("record has no ID")
    return value


def _state(created: Any, modified: Any, stamp_zone: tzinfo) -> dict[str, Any]:
    # Nookal has no archived or deleted timestamps; reconciliation sees removed rows go.
    return {
        "pms_created_at": parse_stamp(created, stamp_zone),
        "pms_updated_at": parse_stamp(modified, stamp_zone),
        "archived_at": None,
        "deleted_at": None,
    }


def _join(payload: dict[str, Any], *keys: str) -> str:
    return ", ".join(text(payload.get(k)) for k in keys if text(payload.get(k)))


def map_location(payload: dict[str, Any], *, stamp_zone: tzinfo = UTC) -> Mapped:
    time_zone = text(payload.get("Timezone"))
    if time_zone:
        zone(time_zone)  # a zone we cannot use would misplace every appointment there
    return Mapped(
        _id(payload),
        {
            **_state(None, None, stamp_zone),
            "name": text(payload.get("Name")),
            "time_zone": time_zone,
            "address": _join(payload, "AddressLine1", "AddressLine2", "AddressLine3"),
            "city": text(payload.get("City")),
            "state": text(payload.get("State")),
            "post_code": text(payload.get("Postcode")),
            "country": text(payload.get("Country")),
            "phone": text(payload.get("Telephone"))[:50],
        },
    )


def map_practitioner(payload: dict[str, Any], *, stamp_zone: tzinfo = UTC) -> Mapped:
    # `status` is read by the SDK with no documented values: only "1"/"0" are trusted.
    status = payload.get("status")
    active = parse_flag(status) if text(status) in ("0", "1") else None
    return Mapped(
        _id(payload),
        {
            **_state(None, None, stamp_zone),
            "first_name": text(payload.get("FirstName")),
            "last_name": text(payload.get("LastName")),
            "title": text(payload.get("Title")),
            "designation": text(payload.get("Speciality")),
            "email": text(payload.get("Email")),
            "active": True if active is None else active,
        },
    )


def map_appointment_type(payload: dict[str, Any], *, stamp_zone: tzinfo = UTC) -> Mapped:
    return Mapped(
        _id(payload),
        {
            **_state(None, None, stamp_zone),
            "name": text(payload.get("Name")),
            "category": text(payload.get("Category")),
            # Units are not stated (§5); minutes, as cotwo reads them (UNVERIFIED).
            "duration_minutes": parse_int(payload.get("Duration")),
            "max_attendees": 1,
            "price": parse_decimal(payload.get("Price")),
        },
    )


_PHONE_FIELDS = (("Mobile", "Mobile"), ("Home", "Home"), ("Work", "Work"), ("Fax", "Fax"))


def map_patient(payload: dict[str, Any], *, country: str, stamp_zone: tzinfo = UTC) -> Mapped:
    phones = [
        {"type": label, "number": text(payload.get(key))}
        for key, label in _PHONE_FIELDS
        if text(payload.get(key))
    ]
    email = text(payload.get("Email"))
    return Mapped(
        _id(payload),
        {
            **_state(payload.get("DateCreated"), payload.get("DateModified"), stamp_zone),
            "merged_at": None,
            "first_name": text(payload.get("FirstName")),
            "last_name": text(payload.get("LastName")),
            "preferred_first_name": text(payload.get("Nickname")),
            "title": text(payload.get("Title")),
            "date_of_birth": parse_date(payload.get("DOB")),
            "sex": text(payload.get("Gender")),
            "email": email,
            "phone_numbers": phones,
            **contact_fields(email=email, phone_numbers=phones, country=country),
            "city": text(payload.get("City")),
            "state": text(payload.get("State")),
            "post_code": text(payload.get("Postcode")),
            "accepted_sms_marketing": None,
            "accepted_email_marketing": None,
        },
    )


def appointment_times(payload: dict[str, Any], time_zone: tzinfo) -> tuple[datetime, datetime]:
    """Start and end in UTC: the location-local date and times (both reference clients read
    them), else the `…DateTimeUTC` fields cotwo reports (format unstated)."""
    day = payload.get("appointmentDate")
    starts_at = local_datetime(day, payload.get("appointmentStartTime"), time_zone)
    ends_at = local_datetime(day, payload.get("appointmentEndTime"), time_zone)
    if starts_at is None:
        starts_at = parse_stamp(payload.get("appointmentStartDateTimeUTC"))
        ends_at = parse_stamp(payload.get("appointmentEndDateTimeUTC"))
    if starts_at is None:
        raise MappingError("appointment has no start")
    ends_at = ends_at or starts_at
    if ends_at < starts_at:
        raise MappingError("appointment ends before it starts")
    return starts_at, ends_at


def map_appointment(payload: dict[str, Any], *, time_zone: tzinfo, stamp_zone: tzinfo = UTC) -> Mapped:
    """`time_zone` is the appointment's location's zone (its `Timezone`)."""
    starts_at, ends_at = appointment_times(payload, time_zone)
    state = _state(payload.get("dateCreated"), payload.get("lastModified"), stamp_zone)
    cancelled_at = None
    if parse_flag(payload.get("cancelled")):
        # No cancellation date recorded: the last change is the best bound we have.
        cancelled_at = parse_stamp(payload.get("cancellationDate"), stamp_zone) or state["pms_updated_at"]
        cancelled_at = cancelled_at or starts_at
    return Mapped(
        _id(payload),
        {
            **state,
            "starts_at": starts_at,
            "ends_at": ends_at,
            "cancelled_at": cancelled_at,
            # Nookal exposes no cancellation reason or note (§5).
            "cancellation_reason_code": None,
            "cancellation_reason": "",
            "cancellation_note": "",
            "did_not_arrive": bool(parse_flag(payload.get("DNA"))),
            "patient_arrived": bool(parse_flag(payload.get("arrived"))),
        },
        {
            "patient": ref(payload.get("patientID")),
            "practitioner": ref(payload.get("practitionerID")),
            "appointment_type": ref(payload.get("appointmentTypeID")),
            "location": ref(payload.get("locationID")),
        },
    )
