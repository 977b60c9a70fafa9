"""Addresses, phone numbers and email addresses, written the many ways people enter them.

Email domains are all reserved example domains (RFC 2606), so no generated address can
reach a real mailbox. Phone numbers are random numbers in real Australian ranges, so they
look right to a number parser; they are never dialled.
"""

from __future__ import annotations

import random
from bisect import bisect
from dataclasses import dataclass
from itertools import accumulate

from .names import PersonName


@dataclass(frozen=True)
class Region:
    state: str
    city: str
    area_code: str  # the digit after the trunk 0 in landline numbers
    landline_prefixes: tuple[str, ...]  # first digits of 8-digit local numbers
    suburbs: tuple[tuple[str, str], ...]  # (suburb, post code)


_REGIONS: dict[str, Region] = {
    "VIC": Region("Victoria", "Melbourne", "3", ("9", "8", "95"), (
        ("Fitzroy", "3065"), ("Richmond", "3121"), ("Brunswick", "3056"), ("St Kilda", "3182"),
        ("Footscray", "3011"), ("Box Hill", "3128"), ("Glen Waverley", "3150"),
        ("Frankston", "3199"), ("Carlton", "3053"), ("Coburg", "3058"), ("Preston", "3072"),
        ("Hawthorn", "3122"), ("Camberwell", "3124"), ("Dandenong", "3175"),
        ("Werribee", "3030"), ("Essendon", "3040"))),
    "NSW": Region("New South Wales", "Sydney", "2", ("9", "8"), (
        ("Parramatta", "2150"), ("Bondi", "2026"), ("Newtown", "2042"), ("Chatswood", "2067"),
        ("Manly", "2095"), ("Penrith", "2750"), ("Liverpool", "2170"), ("Hurstville", "2220"),
        ("Marrickville", "2204"), ("Blacktown", "2148"), ("Epping", "2121"))),
    "QLD": Region("Queensland", "Brisbane", "7", ("3", "5"), (
        ("Fortitude Valley", "4006"), ("Paddington", "4064"), ("Chermside", "4032"),
        ("Indooroopilly", "4068"), ("Carindale", "4152"), ("Sunnybank", "4109"),
        ("Toowong", "4066"))),
    "SA": Region("South Australia", "Adelaide", "8", ("8", "7"), (
        ("Norwood", "5067"), ("Glenelg", "5045"), ("Prospect", "5082"),
        ("Unley", "5061"), ("Marion", "5043"), ("Salisbury", "5108"))),
    "WA": Region("Western Australia", "Perth", "8", ("9", "92"), (
        ("Subiaco", "6008"), ("Fremantle", "6160"), ("Joondalup", "6027"),
        ("Cannington", "6107"), ("Scarborough", "6019"), ("Midland", "6056"))),
    "TAS": Region("Tasmania", "Hobart", "3", ("62",), (
        ("Sandy Bay", "7005"), ("Battery Point", "7004"), ("Glenorchy", "7010"),
        ("Kingston", "7050"))),
    "NT": Region("Northern Territory", "Darwin", "8", ("89",), (
        ("Parap", "0820"), ("Casuarina", "0810"), ("Nightcliff", "0810"),
        ("Palmerston", "0830"))),
    "ACT": Region("Australian Capital Territory", "Canberra", "2", ("62", "61"), (
        ("Braddon", "2612"), ("Belconnen", "2617"), ("Woden", "2606"), ("Kingston", "2604"))),
}
_ZONE_STATES = {
    "Australia/Melbourne": "VIC", "Australia/Victoria": "VIC", "Australia/Sydney": "NSW",
    "Australia/NSW": "NSW", "Australia/Broken_Hill": "NSW", "Australia/Lord_Howe": "NSW",
    "Australia/Brisbane": "QLD", "Australia/Queensland": "QLD", "Australia/Lindeman": "QLD",
    "Australia/Adelaide": "SA", "Australia/South": "SA", "Australia/Perth": "WA",
    "Australia/West": "WA", "Australia/Hobart": "TAS", "Australia/Tasmania": "TAS",
    "Australia/Darwin": "NT", "Australia/North": "NT", "Australia/Canberra": "ACT",
    "Australia/ACT": "ACT",
}
STREETS = ("Smith Street", "High Street", "Station Street", "Church Street", "Chapel Street",
           "Victoria Parade", "Sydney Road", "Glenferrie Road", "Bridge Road", "Park Avenue",
           "Elizabeth Street", "King Street", "George Street", "Beach Road", "Hill Crescent",
           "Wattle Grove", "Banksia Court", "Ocean Drive", "Railway Parade", "Albert Street")


def region_for_zone(zone_name: str) -> Region:
    """The region a clinic in `zone_name` sits in; Victoria for zones outside Australia."""
    return _REGIONS[_ZONE_STATES.get(zone_name, "VIC")]


@dataclass(frozen=True)
class Address:
    address_1: str
    address_2: str
    city: str
    state: str
    post_code: str
    country: str


def street_address(rng: random.Random, region: Region, *, suburb_index: int | None = None) -> Address:
    if suburb_index is None:
        suburb_index = int(rng.random() * len(region.suburbs))
    suburb, post_code = region.suburbs[suburb_index % len(region.suburbs)]
    street = STREETS[int(rng.random() * len(STREETS))]
    unit = f"Unit {1 + int(rng.random() * 20)}" if rng.random() < 0.15 else ""
    return Address(f"{1 + int(rng.random() * 250)} {street}", unit, suburb, region.state,
                   post_code, "Australia")


def patient_address(rng: random.Random, region: Region) -> Address:
    """A home address; some patients give only a suburb and some none at all."""
    roll = rng.random()
    if roll < 0.12:
        return Address("", "", "", "", "", "")
    address = street_address(rng, region)
    if roll < 0.18:
        return Address("", "", address.city, address.state, address.post_code, "Australia")
    return address


# Spellings of the mobile 0412 345 678 (digits "412345678") as patients enter them.
_MOBILE_STYLES: tuple[tuple[float, str], ...] = (
    (0.36, "0{a} {b} {c}"), (0.28, "0{a}{b}{c}"), (0.10, "+61 {a} {b} {c}"),
    (0.09, "+61{a}{b}{c}"), (0.08, "61{a}{b}{c}"), (0.09, "{a} {b} {c}"),
)
# Spellings of the landline (03) 9123 4567; the last leaves out the area code, as locals do.
_LANDLINE_STYLES: tuple[tuple[float, str], ...] = (
    (0.34, "(0{area}) {head} {tail}"), (0.30, "0{area} {head} {tail}"),
    (0.12, "+61 {area} {head} {tail}"), (0.12, "0{area}{head}{tail}"),
    (0.07, "61{area}{head}{tail}"), (0.05, "{head} {tail}"),
)
_MOBILE_CUMULATIVE = tuple(accumulate(weight for weight, _ in _MOBILE_STYLES))
_LANDLINE_CUMULATIVE = tuple(accumulate(weight for weight, _ in _LANDLINE_STYLES))
# 04xx blocks that are unallocated (or only partly allocated) in the numbering plan.
_UNALLOCATED_MOBILE_BLOCKS = {41, 42, 43, 45, 46, 53, 71, 79, 83, 95, 96}
_MOBILE_BLOCKS = tuple(block for block in range(100) if block not in _UNALLOCATED_MOBILE_BLOCKS)


def _digits(rng: random.Random, count: int) -> str:
    return str(int(rng.random() * 10**count)).zfill(count)


def mobile_number(rng: random.Random) -> str:
    block = _MOBILE_BLOCKS[int(rng.random() * len(_MOBILE_BLOCKS))]
    digits = f"4{block:02d}{_digits(rng, 6)}"
    style = _MOBILE_STYLES[bisect(_MOBILE_CUMULATIVE, rng.random() * _MOBILE_CUMULATIVE[-1])][1]
    return style.format(a=digits[:3], b=digits[3:6], c=digits[6:])


def landline_number(rng: random.Random, region: Region) -> str:
    prefix = region.landline_prefixes[int(rng.random() * len(region.landline_prefixes))]
    local = prefix + _digits(rng, 8 - len(prefix))
    style = _LANDLINE_STYLES[bisect(_LANDLINE_CUMULATIVE, rng.random() * _LANDLINE_CUMULATIVE[-1])][1]
    return style.format(area=region.area_code, head=local[:4], tail=local[4:])


def phone_numbers(rng: random.Random, region: Region) -> list[dict[str, str]]:
    """Cliniko `patient_phone_numbers`: none, a mobile, a landline, or both."""
    roll = rng.random()
    numbers: list[dict[str, str]] = []
    if roll < 0.07:
        return numbers
    if roll < 0.92:
        # Some people file their mobile under "Home"; Cliniko lets them.
        mobile_type = "Home" if rng.random() < 0.05 else "Mobile"
        numbers.append({"phone_type": mobile_type, "number": mobile_number(rng)})
    if roll >= 0.67:
        landline_type = "Work" if rng.random() < 0.2 else "Home"
        numbers.append({"phone_type": landline_type, "number": landline_number(rng, region)})
    return numbers


_EMAIL_DOMAINS = ("example.com", "example.net", "example.org", "mail.example.com",
                  "inbox.example.net")
_EMAIL_PATTERNS = ("{first}.{last}", "{first}{last}", "{initial}{last}", "{first}_{last}{number}",
                   "{first}{number}", "{last}.{first}")


def _email_token(text: str) -> str:
    return "".join(char for char in text if char.isalnum())


def email_address(rng: random.Random, name: PersonName) -> str | None:
    """An address for the name, sometimes in mixed case; None or "" when they gave none."""
    roll = rng.random()
    if roll < 0.07:
        return None
    if roll < 0.09:
        return ""
    first = _email_token(name.first.ascii) or "patient"
    last = _email_token(name.last.ascii) or "mail"
    pattern = _EMAIL_PATTERNS[int(rng.random() * len(_EMAIL_PATTERNS))]
    local = pattern.format(first=first, last=last, initial=first[0],
                           number=10 + int(rng.random() * 90))
    domain = _EMAIL_DOMAINS[int(rng.random() * len(_EMAIL_DOMAINS))]
    case_roll = rng.random()
    if case_roll < 0.12:
        # "Zoe.Nguyen@Example.com": phones and browsers capitalise what people type.
        return f"{local}@{domain.capitalize()}"
    if case_roll < 0.15:
        return f"{local}@{domain}".upper()
    return f"{local}@{domain}".lower()
