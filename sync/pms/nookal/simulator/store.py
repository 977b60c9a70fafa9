"""A small deterministic Nookal clinic, as the records `getLocations`, `getPractitioners`,
`getAppointmentTypes`, `getPatients` and `getAppointments` return them (§5 of the reference).

Locations and practitioners have exactly the keys of the recorded examples; the other
records have the SDK's field names. Every value is a string as Nookal sends it (ids, `"1"`/
`"0"` booleans, `"YYYY-MM-DD HH:MM:SS"` stamps), except practitioners' `locations` (ints, as
in the example). Appointments fall on the days around the 2026 DST changes of their
locations (Auckland 27 September, Sydney 4 October), so times cross offsets.
"""

from __future__ import annotations

import random
import threading
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

STAMP = "%Y-%m-%d %H:%M:%S"
FIRST_DAY = date(2026, 9, 24)
DAYS = 14
LOCATIONS = (
    ("1", "Harbour Physio Sydney", "Australia/Sydney", "Sydney", "NSW", "Australia", "2000"),
    ("2", "Harbour Physio Auckland", "Pacific/Auckland", "Auckland", "AUK", "New Zealand", "1010"),
)
PRACTITIONERS = (
    ("1", "Dr", "Ada", "Nguyen", "Physiotherapist", [1]),
    ("2", "Mr", "Ben", "Okafor", "Physiotherapist", [1, 2]),
    ("3", "Ms", "Cleo", "Hart", "Exercise Physiologist", [2]),
)
SERVICES = (
    ("1", "Initial Consultation", "45", "Physio", "120.00"),
    ("2", "Follow-up", "30", "Physio", "85.50"),
    ("3", "Hydrotherapy", "60", "Classes", "40.00"),
)
FIRST_NAMES = ("Mia", "Noah", "Ava", "Leo", "Isla", "Oscar", "Ruby", "Theo", "Zara", "Hugo")
LAST_NAMES = ("Smith", "Tran", "Patel", "Brown", "Wilson", "Kelly", "Singh", "Lee", "Walker", "Young")
# Function name -> result key under data.results.
RESULT_KEYS = {
    "getLocations": "locations",
    "getPractitioners": "practitioners",
    "getAppointmentTypes": "services",
    "getPatients": "patients",
    "getAppointments": "appointments",
}
MODIFIED_FIELDS = {"getPatients": "DateModified", "getAppointments": "lastModified"}


def _flag(value: bool) -> str:  # noqa: FBT001 - a value, not an option
    return "1" if value else "0"


def _location(row: tuple[str, ...]) -> dict[str, Any]:
    location_id, name, zone, city, state, country, postcode = row
    return {
        "AddressLine1": f"{int(location_id) * 10} Harbour Street",
        "AddressLine2": "Level 2",
        "AddressLine3": None,
        "City": city,
        "Country": country,
        "Email": f"front-desk{location_id}@harbour.example",
        "ID": location_id,
        "Name": name,
        "Postcode": postcode,
        "State": state,
        "Telephone": f"0290000{location_id}00",
        "Timezone": zone,
        "Website": None,
        "lockNewPatientsToLocation": "0",
    }


def _practitioner(row: tuple[Any, ...]) -> dict[str, Any]:
    practitioner_id, title, first, last, speciality, locations = row
    return {
        "Email": f"{first.lower()}.{last.lower()}@harbour.example",
        "FirstName": first,
        "ID": practitioner_id,
        "LastName": last,
        "Speciality": speciality,
        "Title": title,
        "locations": list(locations),
    }


def _service(row: tuple[str, ...]) -> dict[str, Any]:
    service_id, name, duration, category, price = row
    return {
        "ID": service_id,
        "Name": name,
        "Description": f"{name} ({duration} min)",
        "Duration": duration,
        "Category": category,
        "Price": price,
        "hasTax": "0",
        "Locations": "1,2",
        "ServiceCode": f"S{service_id}",
        "active": "1",
    }


def _patient(index: int, rng: random.Random, created: datetime) -> dict[str, Any]:
    first, last = FIRST_NAMES[index % 10], LAST_NAMES[(index * 7) % 10]
    modified = created + timedelta(days=rng.randint(0, 30), minutes=rng.randint(0, 600))
    location = LOCATIONS[index % len(LOCATIONS)]
    return {
        "ID": str(index + 1),
        "Title": "",
        "FirstName": first,
        "MiddleName": "",
        "Nickname": first[:2] if index % 4 == 0 else "",
        "LastName": last,
        "DOB": date(1950 + index % 50, 1 + index % 12, 1 + index % 28).isoformat(),
        "Gender": "F" if index % 2 else "M",
        "Notes": "",
        "Alerts": "",
        "category": "",
        "LocationID": location[0],
        "Email": f"{first.lower()}.{last.lower()}{index}@mail.example",
        "Mobile": f"04{12345000 + index:08d}",
        "Home": "" if index % 3 else f"02{93000000 + index:08d}",
        "Work": "",
        "Addr1": f"{index + 1} Beach Road",
        "Addr2": "",
        "Addr3": "",
        "City": location[3],
        "State": location[4],
        "Country": location[5],
        "Postcode": location[6],
        "DateCreated": created.strftime(STAMP),
        "DateModified": modified.strftime(STAMP),
        "active": "1",
        "deceased": "0",
    }


def _appointment(index: int, rng: random.Random, patients: int) -> dict[str, Any]:
    practitioner = PRACTITIONERS[index % len(PRACTITIONERS)]
    location_id = str(practitioner[5][index % len(practitioner[5])])
    zone = ZoneInfo(LOCATIONS[int(location_id) - 1][2])
    service = SERVICES[index % len(SERVICES)]
    day = FIRST_DAY + timedelta(days=index % DAYS)
    start = time(8 + index % 9, 15 * (index % 4))
    local_start = datetime.combine(day, start, tzinfo=zone)
    local_end = local_start + timedelta(minutes=int(service[2]))
    created = datetime(2026, 9, 1, 9, tzinfo=UTC) + timedelta(hours=index * 5)
    modified = created + timedelta(days=rng.randint(0, 20), minutes=rng.randint(0, 300))
    cancelled, dna = index % 9 == 4, index % 11 == 6
    return {
        "ID": str(1000 + index),
        "patientID": str(1 + rng.randrange(patients)),
        "practitionerID": practitioner[0],
        "locationID": location_id,
        "appointmentDate": day.isoformat(),
        "appointmentStartTime": local_start.strftime("%H:%M:%S"),
        "appointmentEndTime": local_end.strftime("%H:%M:%S"),
        "appointmentStartDateTimeUTC": local_start.astimezone(UTC).strftime(STAMP),
        "appointmentEndDateTimeUTC": local_end.astimezone(UTC).strftime(STAMP),
        "appointmentType": "Consultation",
        "appointmentTypeID": service[0],
        "arrived": _flag(not cancelled and not dna and day < FIRST_DAY + timedelta(days=7)),
        "DNA": _flag(dna),
        "cancelled": _flag(cancelled),
        "cancellationDate": modified.strftime(STAMP) if cancelled else "",
        "invoiceGenerated": "0",
        "emailReminderSent": "1",
        "Notes": "",
        "dateCreated": created.strftime(STAMP),
        "lastModified": modified.strftime(STAMP),
    }


class NookalStore:
    """The records behind each list function, in ID order; thread-safe reads and edits."""

    def __init__(self, *, seed: int = 7, patients: int = 25, appointments: int = 40) -> None:
        rng = random.Random(seed)
        created = datetime(2026, 8, 1, 8, tzinfo=UTC)
        self._lock = threading.Lock()
        self._records: dict[str, list[dict[str, Any]]] = {
            "getLocations": [_location(row) for row in LOCATIONS],
            "getPractitioners": [_practitioner(row) for row in PRACTITIONERS],
            "getAppointmentTypes": [_service(row) for row in SERVICES],
            "getPatients": [
                _patient(i, rng, created + timedelta(hours=7 * i)) for i in range(patients)
            ],
            "getAppointments": [_appointment(i, rng, max(patients, 1)) for i in range(appointments)],
        }

    def records(self, function: str) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(record) for record in self._records[function]]

    def ids(self, function: str) -> list[str]:
        return [record["ID"] for record in self.records(function)]

    def edit(self, function: str, record_id: str, *, modified: datetime | None = None, **fields: Any) -> None:
        """Change a record; stamps its modified field (if it has one) with `modified` or now."""
        with self._lock:
            for record in self._records[function]:
                if record["ID"] == record_id:
                    record.update(fields)
                    if function in MODIFIED_FIELDS:
                        stamp = (modified or datetime.now(UTC)).astimezone(UTC).strftime(STAMP)
                        record[MODIFIED_FIELDS[function]] = stamp
                    return
        raise KeyError(f"{function} has no record {record_id!r}")
