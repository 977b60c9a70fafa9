"""The Cliniko mapper against the real example payloads in ../shared/reference/cliniko."""

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from sync.pms.cliniko import mapper

EXAMPLES = Path(__file__).resolve().parents[5] / "shared" / "reference" / "cliniko" / "examples"


def example(name):
    return json.loads((EXAMPLES / name).read_text())


def test_patient_example():
    mapped = mapper.map_patient(example("patient__single__GET_v1_patients_id.json"), country="AU")
    assert mapped.external_id == "1"
    fields = mapped.fields
    assert (fields["first_name"], fields["last_name"], fields["preferred_first_name"]) == ("Peter", "Patientman", "Pete")
    assert fields["date_of_birth"] == date(2001, 5, 26)
    assert fields["archived_at"] is None and fields["deleted_at"] is None  # "" reads as null
    assert fields["pms_created_at"] == datetime(2013, 3, 26, 14, 0, tzinfo=UTC)
    assert fields["phone_numbers"] == [{"type": "Mobile", "number": "61444444444"}, {"type": "Home", "number": "61399999999"}]
    assert fields["phones_e164"] == ["+61444444444", "+61399999999"]
    assert fields["mobile_e164"] == "+61444444444"
    assert fields["email_normalized"] == "peter@example.com"


def test_patients_list_example_maps_every_row():
    rows = example("patients__list__GET_v1_patients.json")["patients"]
    mapped = [mapper.map_patient(row, country="AU") for row in rows]
    assert [m.external_id for m in mapped] == [str(row["id"]) for row in rows]


def test_individual_appointment_example():
    mapped = mapper.map_appointment(example("individual_appointment__single__GET_v1_individual_appointments_id.json"))
    assert mapped.external_id == "1"
    assert mapped.fields["starts_at"] == datetime(2016, 7, 21, 3, 45, tzinfo=UTC)
    assert mapped.fields["ends_at"] == datetime(2016, 7, 21, 4, 30, tzinfo=UTC)
    assert mapped.fields["cancelled_at"] is None
    assert mapped.refs == {"patient": "82", "practitioner": "1", "appointment_type": "2", "location": "1"}


def test_cancelled_appointments_example_keeps_reason():
    rows = example("individual_appointments__cancelled__GET_v1_individual_appointments_cancelled.json")
    rows = rows.get("individual_appointments", rows.get("appointments", []))
    assert rows, "example has cancelled rows"
    for row in rows:
        mapped = mapper.map_appointment(row)
        assert mapped.fields["cancelled_at"] is not None
        if row.get("cancellation_reason") is not None:
            assert mapped.fields["cancellation_reason"]


def test_invoice_example_money_is_decimal():
    row = example("invoices__list__GET_v1_invoices.json")["invoices"][0]
    mapped = mapper.map_invoice(row)
    assert mapped.fields["total_amount"] == Decimal("50.00")
    assert isinstance(mapped.fields["total_amount"], Decimal)
    assert mapped.fields["status"] == "open" and mapped.fields["status_code"] == "10"
    assert mapped.refs["patient"] == "1593" and mapped.refs["appointment"] == "70644"


def test_business_practitioner_and_type_examples():
    business = mapper.map_business(example("business__single__GET_v1_businesses_id.json"))
    assert business.fields["name"]
    practitioner = mapper.map_practitioner(example("practitioner__single__GET_v1_practitioners_id.json"))
    assert practitioner.fields["active"] in (True, False)
    kind = mapper.map_appointment_type(example("appointment_type__single__GET_v1_appointment_types_id.json"), price=Decimal("95"))
    assert kind.external_id == "514810976034364376"  # ids stay strings, even past 2**53
    assert kind.fields["duration_minutes"] == 60 and kind.fields["price"] == Decimal("95")


@pytest.mark.parametrize(
    ("link", "expected"),
    [
        ({"links": {"self": "https://api.au1.cliniko.com/v1/patients/82"}}, "82"),
        ({"links": {"self": "https://api.uk2.cliniko.com/v1/patients/82/"}}, "82"),
        ({"links": {"self": "https://api.au1.cliniko.com/v1/individual_appointments?q[]=repeated_from_id:=1"}}, None),
        (None, None),
        ({}, None),
    ],
)
def test_link_id(link, expected):
    assert mapper.link_id(link) == expected


def test_bad_values_raise_mapping_errors():
    with pytest.raises(mapper.MappingError):
        mapper.map_appointment({"id": "1", "starts_at": "yesterday"})
    with pytest.raises(mapper.MappingError):
        mapper.map_appointment({"id": "1", "starts_at": "2026-01-01T10:00:00Z", "ends_at": "2026-01-01T09:00:00Z"})
    with pytest.raises(mapper.MappingError):
        mapper.map_invoice({"id": "1", "total_amount": "ten dollars"})
    with pytest.raises(mapper.MappingError):
        mapper.map_patient({"first_name": "No id"}, country="AU")


def test_null_attendance_flags_read_as_false():
    mapped = mapper.map_appointment({"id": "9", "starts_at": "2026-01-01T10:00:00Z", "ends_at": "2026-01-01T10:30:00Z", "did_not_arrive": None, "patient_arrived": None})
    assert mapped.fields["did_not_arrive"] is False and mapped.fields["patient_arrived"] is False
