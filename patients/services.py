"""Writes on the clinical-commercial record."""

from __future__ import annotations

from typing import Any

from patients.phones import to_e164

MOBILE_TYPES = {"mobile", "cell", "cellular"}


def contact_fields(*, email: str | None, phone_numbers: list[dict[str, Any]], country: str) -> dict[str, Any]:
    """The derived, searchable forms of a patient's contact details.

    Called by every writer of patients (sync, demo loader) so the normalised columns never
    disagree with the raw ones.
    """
    phones: list[str] = []
    mobile = ""
    for entry in phone_numbers:
        value = to_e164(entry.get("number"), country)
        if value is None or value in phones:
            continue
        phones.append(value)
        is_mobile = str(entry.get("type") or "").lower() in MOBILE_TYPES
        if is_mobile and not mobile:
            mobile = value
    return {
        "email_normalized": (email or "").strip().casefold(),
        "phones_e164": phones,
        "mobile_e164": mobile,
    }
