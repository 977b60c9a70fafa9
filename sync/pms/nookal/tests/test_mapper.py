"""The Nookal mapper on the recorded example payloads (../shared/reference/nookal/examples)
and on SDK-shaped patients and appointments: "1"/"0" booleans, string ids, and
location-local times turned into UTC through the location's zone, across DST changes."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from sync.pms.cliniko.mapper import Mapped, MappingError
from sync.pms.nookal import mapper
from sync.pms.nookal.tests.conftest import example

SYDNEY = ZoneInfo("Australia/Sydney")
NEW_YORK = ZoneInfo("America/New_York")


def appointment(**overrides: str) -> dict[str, str]:
    payload = {
        "ID": "501",
        "patientID": "82",
        "practitionerID": "3",
        "locationID": "1",
        "appointmentDate": "2026-10-03",
        "appointmentStartTime": "09:30:00",
        "appointmentEndTime": "10:15:00",
        "appointmentType": "Consultation",
        "appointmentTypeID": "7",
        "arrived": "1",
        "DNA": "0",
        "cancelled": "0",
        "cancellationDate": "",
        "invoiceGenerated": "0",
        "emailReminderSent": "1",
        "Notes": "",
        "dateCreated": "2026-09-01 08:00:00",
        "lastModified": "2026-10-02 23:10:05",
    }
    payload.update(overrides)
    return payload


def test_location_example():
    payload = example("get_locations.json")["data"]["results"]["locations"][0]
    mapped = mapper.map_location(payload)
    assert isinstance(mapped, Mapped) and mapped.external_id == "1"
    assert mapped.fields["name"] == "Foo"
    assert mapped.fields["time_zone"] == "UTC"
    assert mapped.fields["address"] == "42 Foo Street, Azusa New York"  # AddressLine3 is null
    assert mapped.fields["state"] == "" and mapped.fields["post_code"] == "123456"
    assert mapped.fields["country"] == "USA" and mapped.fields["phone"] == "62749939"
    assert mapped.fields["pms_updated_at"] is None and mapped.refs == {}


def test_location_with_an_unknown_zone_is_refused():
    with pytest.raises(MappingError):
        mapper.map_location({"ID": "2", "Name": "Nowhere", "Timezone": "Mars/Olympus"})


def test_practitioner_example():
    payload = example("get_practitioners.json")["data"]["results"]["practitioners"][0]
    mapped = mapper.map_practitioner(payload)
    assert mapped.external_id == "1"
    assert mapped.fields == {
        "pms_created_at": None,
        "pms_updated_at": None,
        "archived_at": None,
        "deleted_at": None,
        "first_name": "John",
        "last_name": "Doe",
        "title": "Dr",
        "designation": "Doctor",
        "email": "john.doe@example.com",
        "active": True,
    }
    assert mapper.map_practitioner({**payload, "status": "0"}).fields["active"] is False


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("1", True), ("0", False), (1, True), (0, False), (" 1 ", True), ("", None), (None, None)],
)
def test_flags(raw, expected):
    assert mapper.parse_flag(raw) is expected


def test_a_flag_that_is_neither_one_nor_zero_is_refused():
    with pytest.raises(MappingError):
        mapper.parse_flag("yes")


def test_appointment_local_times_become_utc_in_the_location_zone():
    mapped = mapper.map_appointment(appointment(), time_zone=SYDNEY)
    # 3 October 2026 is the last day of Sydney standard time (+10:00).
    assert mapped.fields["starts_at"] == datetime(2026, 10, 2, 23, 30, tzinfo=UTC)
    assert mapped.fields["ends_at"] == datetime(2026, 10, 3, 0, 15, tzinfo=UTC)
    assert mapped.fields["patient_arrived"] is True and mapped.fields["did_not_arrive"] is False
    assert mapped.fields["cancelled_at"] is None
    assert mapped.fields["pms_updated_at"] == datetime(2026, 10, 2, 23, 10, 5, tzinfo=UTC)
    assert mapped.refs == {"patient": "82", "practitioner": "3", "appointment_type": "7", "location": "1"}


def test_the_same_wall_clock_after_the_dst_change_is_an_hour_earlier_in_utc():
    before = mapper.map_appointment(appointment(appointmentDate="2026-10-03"), time_zone=SYDNEY)
    after = mapper.map_appointment(appointment(appointmentDate="2026-10-05"), time_zone=SYDNEY)
    assert before.fields["starts_at"].hour == 23  # +10:00
    assert after.fields["starts_at"] == datetime(2026, 10, 4, 22, 30, tzinfo=UTC)  # +11:00
    # Northern autumn: New York leaves daylight time on 1 November 2026.
    ny_before = mapper.map_appointment(appointment(appointmentDate="2026-10-31"), time_zone=NEW_YORK)
    ny_after = mapper.map_appointment(appointment(appointmentDate="2026-11-02"), time_zone=NEW_YORK)
    assert ny_before.fields["starts_at"] == datetime(2026, 10, 31, 13, 30, tzinfo=UTC)
    assert ny_after.fields["starts_at"] == datetime(2026, 11, 2, 14, 30, tzinfo=UTC)


def test_an_appointment_spanning_the_dst_change_keeps_its_real_length():
    # 01:30 to 03:30 on 4 October 2026 in Sydney is one hour: 02:00 jumps to 03:00.
    mapped = mapper.map_appointment(
        appointment(appointmentDate="2026-10-04", appointmentStartTime="01:30:00", appointmentEndTime="03:30:00"),
        time_zone=SYDNEY,
    )
    assert mapped.fields["ends_at"] - mapped.fields["starts_at"] == (
        datetime(2026, 10, 3, 16, 30, tzinfo=UTC) - datetime(2026, 10, 3, 15, 30, tzinfo=UTC)
    )


def test_cancelled_and_did_not_arrive():
    cancelled = mapper.map_appointment(
        appointment(cancelled="1", cancellationDate="2026-10-01 04:00:00", arrived="0"), time_zone=SYDNEY
    )
    assert cancelled.fields["cancelled_at"] == datetime(2026, 10, 1, 4, tzinfo=UTC)
    assert cancelled.fields["patient_arrived"] is False
    undated = mapper.map_appointment(appointment(cancelled="1"), time_zone=SYDNEY)
    assert undated.fields["cancelled_at"] == undated.fields["pms_updated_at"]
    no_show = mapper.map_appointment(appointment(DNA="1", arrived="0"), time_zone=SYDNEY)
    assert no_show.fields["did_not_arrive"] is True and no_show.fields["cancelled_at"] is None


def test_stamps_are_read_in_the_stamp_zone():
    mapped = mapper.map_appointment(appointment(), time_zone=SYDNEY, stamp_zone=SYDNEY)
    assert mapped.fields["pms_updated_at"] == datetime(2026, 10, 2, 13, 10, 5, tzinfo=UTC)


def test_utc_fields_are_the_fallback_when_local_times_are_missing():
    payload = appointment(
        appointmentStartTime="",
        appointmentEndTime="",
        appointmentStartDateTimeUTC="2026-10-02 23:30:00",
        appointmentEndDateTimeUTC="2026-10-03 00:15:00",
    )
    mapped = mapper.map_appointment(payload, time_zone=SYDNEY)
    assert mapped.fields["starts_at"] == datetime(2026, 10, 2, 23, 30, tzinfo=UTC)
    assert mapped.fields["ends_at"] == datetime(2026, 10, 3, 0, 15, tzinfo=UTC)


@pytest.mark.parametrize(
    "overrides",
    [
        {"appointmentStartTime": ""},
        {"appointmentEndTime": "08:00:00"},
        {"appointmentDate": "03/10/2026"},
        {"ID": ""},
        {"DNA": "maybe"},
    ],
)
def test_unusable_appointments_raise_mapping_error(overrides):
    with pytest.raises(MappingError):
        mapper.map_appointment(appointment(**overrides), time_zone=SYDNEY)


def test_appointment_without_a_patient():
    mapped = mapper.map_appointment(appointment(patientID=""), time_zone=SYDNEY)
    assert mapped.refs["patient"] is None


def test_patient_from_sdk_fields():
    payload = {
        "ID": "82",
        "Title": "Ms",
        "FirstName": "Ruby",
        "MiddleName": "",
        "Nickname": "Rue",
        "LastName": "Kelly",
        "DOB": "1984-02-29",
        "Gender": "F",
        "Email": " Ruby.Kelly@Mail.example ",
        "Mobile": "0412 345 678",
        "Home": "",
        "Work": "02 9300 0001",
        "City": "Sydney",
        "State": "NSW",
        "Postcode": "2000",
        "DateCreated": "2026-08-01 08:00:00",
        "DateModified": "2026-08-02 09:30:00",
        "active": "1",
        "deceased": "0",
    }
    mapped = mapper.map_patient(payload, country="AU")
    fields = mapped.fields
    assert mapped.external_id == "82"
    assert fields["date_of_birth"] == date(1984, 2, 29)
    assert fields["preferred_first_name"] == "Rue" and fields["sex"] == "F"
    assert fields["email"] == "Ruby.Kelly@Mail.example"
    assert fields["email_normalized"] == "ruby.kelly@mail.example"
    assert fields["phone_numbers"] == [
        {"type": "Mobile", "number": "0412 345 678"},
        {"type": "Work", "number": "02 9300 0001"},
    ]
    assert fields["mobile_e164"] == "+61412345678"
    assert fields["phones_e164"] == ["+61412345678", "+61293000001"]
    assert fields["pms_created_at"] == datetime(2026, 8, 1, 8, tzinfo=UTC)
    assert fields["pms_updated_at"] == datetime(2026, 8, 2, 9, 30, tzinfo=UTC)


def test_appointment_type_from_services():
    mapped = mapper.map_appointment_type(
        {"ID": "7", "Name": "Initial", "Duration": "45", "Category": "Physio", "Price": "120", "active": "1"}
    )
    assert mapped.fields["duration_minutes"] == 45
    assert mapped.fields["price"] == Decimal("120.00") and mapped.fields["max_attendees"] == 1
