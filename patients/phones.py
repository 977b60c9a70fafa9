"""Phone numbers: kept as the PMS gave them, normalised to E.164 for search and matching."""

from __future__ import annotations

import re

import phonenumbers

_DIGITS = re.compile(r"\d")


def to_e164(raw: str | None, country: str) -> str | None:
    """E.164 form of `raw`, read with `country` (ISO 3166 alpha-2) when it has no prefix.

    Australian records often drop the leading 0 or the +: "412 345 678" and "61412345678"
    are both the mobile +61412345678. None when the text is not a plausible number.
    """
    if not raw or not _DIGITS.search(raw):
        return None
    text = raw.strip()
    for candidate in _readings(text, country):
        try:
            number = phonenumbers.parse(candidate, country)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(number):
            return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return None


def _readings(text: str, country: str) -> list[str]:
    digits = "".join(_DIGITS.findall(text))
    readings = [text]
    if not text.startswith("+"):
        code = str(phonenumbers.country_code_for_region(country))
        if digits.startswith(code):
            readings.append("+" + digits)  # international form without the +
        readings.append("0" + digits)  # national form without the trunk 0
    return readings


def search_variants(query: str, country: str) -> list[str]:
    """E.164 forms a search text may mean; empty when it is not a phone number."""
    value = to_e164(query, country)
    return [value] if value else []
