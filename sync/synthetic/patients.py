"""Who a patient is (identity and contact details) and their Cliniko patient record."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date
from typing import Any

from .bookings import Visit
from .catalog import API_ROOT, link
from .clock import SECONDS_PER_DAY, UNIX_EPOCH_ORDINAL, TimestampFormatter, day_epoch
from .contacts import Address, Region, email_address, patient_address, phone_numbers
from .names import PersonName, person_name
from .schedule import ClinicContext, weighted_choice

# Cliniko replaced `gender` with `sex` and `gender_identity` on this day; older records
# still carry the old field.
_GENDER_FIELD_RETIRED = date(2018, 12, 3).toordinal()
_FEMALE_TITLES = (("", 0.4), ("Ms", 0.25), ("Mrs", 0.2), ("Miss", 0.08), ("Dr", 0.05),
                  ("Mx", 0.02))
_MALE_TITLES = (("", 0.4), ("Mr", 0.53), ("Dr", 0.05), ("Mx", 0.02))
_OCCUPATIONS = ("Teacher", "Nurse", "Software engineer", "Retired", "Student", "Electrician",
                "Accountant", "Barista", "Carpenter", "Office manager", "Plumber", "Chef",
                "Tradie", "Self-employed", "Physio student")
_REFERRAL_SOURCES = ("Google", "GP referral", "Friend or family", "Instagram", "Walk-in",
                     "Health fund", "Sports club")
_GENDER_IDENTITIES = ("Woman", "Man", "Non-binary", "Prefer not to say")


@dataclass(frozen=True)
class Identity:
    name: PersonName
    sex: str | None
    birth_day: int | None
    email: str | None
    phones: list[dict[str, str]]
    address: Address
    title: str
    lowercase_entry: bool  # typed all in lower case at the desk, as some records are

    @property
    def has_mobile(self) -> bool:
        return any(phone["phone_type"] == "Mobile" for phone in self.phones)

    @property
    def first_name(self) -> str:
        text = self.name.first.display
        return text.lower() if self.lowercase_entry else text

    @property
    def last_name(self) -> str:
        text = self.name.last.display
        return text.lower() if self.lowercase_entry else text


def draw_identity(rng: random.Random, region: Region, today: int) -> Identity:
    female = rng.random() < 0.58
    name = person_name(rng, female=female)
    sex_roll = rng.random()
    sex = None if sex_roll < 0.03 else ("Female" if female else "Male")
    birth_day = _birth_day(rng, today)
    adult = birth_day is None or today - birth_day >= 18 * 365
    title = weighted_choice(rng, _FEMALE_TITLES if female else _MALE_TITLES) if adult else ""
    return Identity(
        name=name, sex=sex, birth_day=birth_day, email=email_address(rng, name),
        phones=phone_numbers(rng, region), address=patient_address(rng, region),
        title=title, lowercase_entry=rng.random() < 0.01,
    )


def _birth_day(rng: random.Random, today: int) -> int | None:
    """Physiotherapy caseloads: mostly working-age adults, some children and retirees."""
    roll = rng.random()
    if roll < 0.03:
        return None
    if roll < 0.12:
        age = 5 + rng.random() * 13
    elif roll < 0.45:
        age = 18 + rng.random() * 22
    elif roll < 0.83:
        age = 40 + rng.random() * 25
    else:
        age = 65 + rng.random() * 28
    return today - int(age * 365.25)


@dataclass(frozen=True)
class PatientTimes:
    created: int
    updated: int
    archived: int | None


def patient_times(rng: random.Random, ctx: ClinicContext, first_day: int,
                  visits: list[Visit]) -> PatientTimes:
    """Record created just before the first booking; archived long after the last visit."""
    if visits:
        first_booked = min(visit.created for visit in visits)
        created = first_booked - 60 - int(rng.random() * 2 * SECONDS_PER_DAY)
        last_touch = max(visit.updated for visit in visits)
    else:
        created = min(day_epoch(first_day) + int(rng.random() * SECONDS_PER_DAY), ctx.now - 3600)
        last_touch = created
    archived = None
    upcoming = any(visit.start >= ctx.now and visit.kept for visit in visits)
    last_day = visits[-1].day if visits else first_day
    if not upcoming and last_day < ctx.today - 365 and rng.random() < 0.3:
        candidate = day_epoch(last_day + 120 + int(rng.random() * 480)) + 30_000
        archived = candidate if candidate < ctx.now - 3600 else None
    updated = created + int(rng.random() * (last_touch - created))
    return PatientTimes(created, max(updated, archived or 0), archived)


def patient_record(patient_id: str, identity: Identity, times: PatientTimes, *,
                   concession: bool, time_zone: str | None, rng: random.Random,
                   clock: TimestampFormatter) -> dict[str, Any]:
    url = f"{API_ROOT}/patients/{patient_id}"
    address = identity.address
    birth_day = identity.birth_day
    medicare = _medicare_number(rng)
    created_day = times.created // SECONDS_PER_DAY + UNIX_EPOCH_ORDINAL
    return {
        "accepted_privacy_policy": True if rng.random() < 0.8 else None,
        "accepted_email_marketing": rng.random() < 0.3,
        "accepted_sms_marketing": rng.random() < 0.2,
        "address_1": address.address_1,
        "address_2": address.address_2,
        "address_3": "",
        "archived_at": clock.iso_or_none(times.archived),
        "city": address.city,
        "country": address.country,
        "created_at": clock.iso(times.created),
        "custom_fields": None,
        "date_of_birth": None if birth_day is None else clock.day(birth_day),
        "deleted_at": None,
        "dva_card_number": "",
        "email": identity.email,
        "emergency_contact": _emergency_contact(rng),
        "first_name": identity.first_name,
        "invoice_default_to": "",
        "invoice_email": "",
        "invoice_extra_information": "Pensioner concession" if concession else "",
        "gender": identity.sex if created_day < _GENDER_FIELD_RETIRED else None,
        "gender_identity": _sometimes(rng, 0.08, _GENDER_IDENTITIES) or None,
        "id": patient_id,
        "last_name": identity.last_name,
        "medicare": medicare,
        "medicare_reference_number": str(1 + int(rng.random() * 4)) if medicare else "",
        "notes": "",
        "appointment_notes": "",
        "occupation": _sometimes(rng, 0.4, _OCCUPATIONS),
        "old_reference_id": "",
        "patient_phone_numbers": identity.phones,
        "post_code": address.post_code,
        "preferred_first_name": identity.name.preferred_first,
        "pronouns": None,
        "receives_confirmation_emails": bool(identity.email) and rng.random() < 0.8,
        "referral_source": _sometimes(rng, 0.5, _REFERRAL_SOURCES),
        "reminder_type": reminder_type(identity),
        "sex": identity.sex,
        "state": address.state,
        "title": identity.title or None,
        "time_zone": time_zone,
        "updated_at": clock.iso(times.updated),
        "medical_alerts": link(f"{url}/medical_alerts?page=1"),
        "invoices": link(f"{url}/invoices?page=1"),
        "appointments": link(f"{url}/appointments?page=1"),
        "links": {"self": url},
    }


def _sometimes(rng: random.Random, share: float, values: tuple[str, ...]) -> str:
    """One of `values` for `share` of patients, else "" (Cliniko's blank text field)."""
    if rng.random() >= share:
        return ""
    return values[int(rng.random() * len(values))]


def reminder_type(identity: Identity) -> str:
    if identity.email and identity.has_mobile:
        return "SMS & Email"
    if identity.has_mobile:
        return "SMS"
    return "Email" if identity.email else "None"


def _medicare_number(rng: random.Random) -> str:
    if rng.random() < 0.6:
        return ""
    digits = "2" + str(int(rng.random() * 10**9)).zfill(9)
    return f"{digits[:4]} {digits[4:9]} {digits[9]}" if rng.random() < 0.5 else digits


def _emergency_contact(rng: random.Random) -> str:
    if rng.random() < 0.7:
        return ""
    relation = ("partner", "mum", "dad", "friend", "son", "daughter")[int(rng.random() * 6)]
    return f"{person_name(rng, female=rng.random() < 0.5).first.display} ({relation})"
