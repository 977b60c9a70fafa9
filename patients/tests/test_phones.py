import pytest

from patients.phones import to_e164
from patients.services import contact_fields


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("0412 345 678", "+61412345678"),
        ("0412345678", "+61412345678"),
        ("+61 412 345 678", "+61412345678"),
        ("+61412345678", "+61412345678"),
        ("61412345678", "+61412345678"),
        ("412 345 678", "+61412345678"),
        ("(03) 9123 4567", "+61391234567"),
        ("03 9123 4567", "+61391234567"),
        ("+61 3 9123 4567", "+61391234567"),
        ("+1 415 555 2671", "+14155552671"),
    ],
)
def test_australian_spellings_normalise_to_e164(raw, expected):
    assert to_e164(raw, "AU") == expected


@pytest.mark.parametrize("raw", [None, "", "n/a", "123", "9123 4567"])
def test_implausible_numbers_give_none(raw):
    assert to_e164(raw, "AU") is None


def test_country_decides_the_reading_of_local_numbers():
    assert to_e164("020 7946 0958", "GB") == "+442079460958"
    assert to_e164("020 7946 0958", "AU") is None


def test_contact_fields_keep_raw_and_derive_search_forms():
    fields = contact_fields(
        email="  Zoë.Nguyen@Example.COM ",
        phone_numbers=[
            {"type": "Home", "number": "(03) 9123 4567"},
            {"type": "Mobile", "number": "0412 345 678"},
            {"type": "Work", "number": "+61412345678"},
            {"type": "Fax", "number": "n/a"},
        ],
        country="AU",
    )
    assert fields == {
        "email_normalized": "zoë.nguyen@example.com",
        "phones_e164": ["+61391234567", "+61412345678"],
        "mobile_e164": "+61412345678",
    }
