"""The synthetic clinic: deterministic, Cliniko-shaped, and realistic where the loader cares.

No database: these run under pytest-django without the `db` fixture.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from itertools import pairwise
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from sync.synthetic import (
    ClinicSpec,
    ImpossibleClinicError,
    SyntheticClinic,
    appointment_type_prices,
    generate_clinic,
)
from sync.synthetic.clock import CLINIC_HOURS

EXAMPLES = Path(__file__).resolve().parents[3] / "shared" / "reference" / "cliniko" / "examples"
SPEC = ClinicSpec(seed=7, patients=400)
ZONE = ZoneInfo(SPEC.time_zone)
# Every generated instant is at or before 00:00 local time on `today`.
SNAPSHOT = datetime.combine(SPEC.today, time(0), tzinfo=ZONE).astimezone(UTC)
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
MONEY = re.compile(r"^-?\d+\.\d{2}$")
ID = re.compile(r"^\d{6,19}$")


@dataclass
class Clinic:
    clinic: SyntheticClinic
    patients: list[dict[str, Any]]
    appointments: list[dict[str, Any]]
    invoices: list[dict[str, Any]]
    by_patient: dict[str, list[dict[str, Any]]]

    @property
    def live_appointments(self) -> list[dict[str, Any]]:
        return [a for a in self.appointments if a["deleted_at"] is None and a["archived_at"] is None]


def materialise(clinic: SyntheticClinic) -> Clinic:
    patients, appointments, invoices = [], [], []
    by_patient: dict[str, list[dict[str, Any]]] = {}
    for bundle in clinic.iter_patients():
        patients.append(bundle.patient)
        appointments.extend(bundle.appointments)
        invoices.extend(bundle.invoices)
        by_patient[bundle.patient["id"]] = bundle.appointments
    return Clinic(clinic, patients, appointments, invoices, by_patient)


@pytest.fixture(scope="module")
def world() -> Clinic:
    return materialise(generate_clinic(SPEC))


def parse(stamp: str) -> datetime:
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def link_id(relation: dict[str, Any]) -> str:
    return relation["links"]["self"].rsplit("/", 1)[-1]


def fingerprint(clinic: SyntheticClinic) -> str:
    digest = hashlib.sha256()
    reference = [clinic.businesses, clinic.practitioners, clinic.appointment_types, clinic.billable_items]
    digest.update(json.dumps(reference, sort_keys=True).encode())
    for bundle in clinic.iter_patients():
        payload = [bundle.patient, bundle.appointments, bundle.invoices]
        digest.update(json.dumps(payload, sort_keys=True).encode())
    return digest.hexdigest()


def past_outcomes(world: Clinic) -> list[dict[str, Any]]:
    return [a for a in world.live_appointments if parse(a["starts_at"]) < SNAPSHOT]


def is_late(appointment: dict[str, Any]) -> bool:
    notice = parse(appointment["starts_at"]) - parse(appointment["cancelled_at"])
    return notice < timedelta(hours=24)


# --- determinism -------------------------------------------------------------------------


def test_same_seed_gives_identical_output_and_iteration_is_repeatable() -> None:
    small = ClinicSpec(seed=11, patients=120)
    clinic = generate_clinic(small)
    first = fingerprint(clinic)
    assert fingerprint(clinic) == first
    assert fingerprint(generate_clinic(small)) == first


def test_different_seed_gives_different_output() -> None:
    assert fingerprint(generate_clinic(ClinicSpec(seed=1, patients=60))) != fingerprint(
        generate_clinic(ClinicSpec(seed=2, patients=60))
    )


def test_any_patient_regenerates_on_its_own(world: Clinic) -> None:
    bundle = world.clinic.patient_bundle(37)
    assert bundle.patient == world.patients[37]
    assert bundle.appointments == world.by_patient[bundle.patient["id"]]


def test_iter_patients_streams() -> None:
    clinic = generate_clinic(ClinicSpec(patients=50))
    stream = clinic.iter_patients()
    assert iter(stream) is stream  # a generator, not a materialised list
    assert next(stream).patient["id"] == clinic.patient_bundle(0).patient["id"]


# --- identity and shape ------------------------------------------------------------------


def test_ids_are_numeric_strings_unique_across_all_resources(world: Clinic) -> None:
    clinic = world.clinic
    groups = [
        clinic.businesses,
        clinic.practitioners,
        clinic.appointment_types,
        clinic.billable_items,
        world.patients,
        world.appointments,
        world.invoices,
    ]
    ids = [record["id"] for group in groups for record in group]
    assert all(isinstance(key, str) and ID.match(key) for key in ids)
    assert len(ids) == len(set(ids))
    numbers = [invoice["number"] for invoice in world.invoices]
    assert all(isinstance(number, int) for number in numbers)
    assert len(numbers) == len(set(numbers))


def _example(name: str) -> dict[str, Any]:
    data = json.loads((EXAMPLES / name).read_text())
    for key in ("patients", "individual_appointments", "invoices"):
        if isinstance(data.get(key), list):
            return data[key][0]
    return data


# Example keys the generator leaves out, each for a reason the loader can rely on.
OMITTED = {
    # Concession types, contacts, products and note templates are not generated.
    "patient": {"concession_type", "referring_doctor"},
    "appointment_type": {"product", "treatment_note_template"},
}
SHAPES = [
    ("patient__single__GET_v1_patients_id.json", "patient"),
    ("patients__list__GET_v1_patients.json", "patient"),
    ("individual_appointment__single__GET_v1_individual_appointments_id.json", "appointment"),
    ("individual_appointments__cancelled__GET_v1_individual_appointments_cancelled.json", "cancelled"),
    ("invoices__list__GET_v1_invoices.json", "invoice"),
    ("appointment_type__single__GET_v1_appointment_types_id.json", "appointment_type"),
    ("business__single__GET_v1_businesses_id.json", "business"),
    ("practitioner__single__GET_v1_practitioners_id.json", "practitioner"),
]


def _generated(world: Clinic, kind: str) -> dict[str, Any]:
    if kind == "patient":
        return next(p for p in world.patients if p["patient_phone_numbers"] and p["email"])
    if kind == "appointment":
        return world.live_appointments[0]
    if kind == "cancelled":
        return next(a for a in world.appointments if a["cancelled_at"])
    if kind == "invoice":
        return world.invoices[0]
    plural = {"business": "businesses"}.get(kind, f"{kind}s")
    return getattr(world.clinic, plural)[0]


def _same_json_kind(expected: Any, actual: Any, key: str) -> bool:
    if key == "id":
        return isinstance(actual, str)  # the docs' integer ids are stale; the API sends strings
    if expected is None or expected == "":
        return True  # unset in the example: nullable in the spec
    if isinstance(expected, bool):
        return actual is None or isinstance(actual, bool)
    if isinstance(expected, int):
        return isinstance(actual, int) and not isinstance(actual, bool)
    if isinstance(expected, str):
        return actual is None or isinstance(actual, str)
    if isinstance(expected, dict) and "links" not in expected:
        return actual is None or isinstance(actual, dict)  # e.g. custom_fields, nullable
    return isinstance(actual, type(expected))


@pytest.mark.parametrize(("example_file", "kind"), SHAPES)
def test_records_have_the_reference_payload_shape(world: Clinic, example_file: str, kind: str) -> None:
    example = _example(example_file)
    record = _generated(world, kind)
    missing = set(example) - set(record) - OMITTED.get(kind, set())
    assert not missing, f"{kind} lacks {sorted(missing)}"
    for key in set(example) & set(record):
        assert _same_json_kind(example[key], record[key], key), (kind, key, record[key])
        if isinstance(example[key], dict) and "links" in example[key]:
            assert record[key]["links"]["self"].startswith("https://api.au1.cliniko.com/v1/")
    assert link_id(record) == record["id"]


def test_timestamps_are_utc_and_never_run_backwards(world: Clinic) -> None:
    clinic = world.clinic
    records: Iterable[dict[str, Any]] = [
        *clinic.businesses,
        *clinic.practitioners,
        *clinic.appointment_types,
        *clinic.billable_items,
        *world.patients,
        *world.appointments,
        *world.invoices,
    ]
    checked = 0
    for record in records:
        stamps = {key: value for key, value in record.items() if key.endswith("_at") and value is not None}
        assert all(TIMESTAMP.match(value) for value in stamps.values()), record["id"]
        updated = parse(record["updated_at"])
        assert updated >= parse(record["created_at"]), record["id"]
        for key in ("cancelled_at", "archived_at", "deleted_at", "closed_at"):
            if key in stamps:
                assert parse(stamps[key]) >= parse(record["created_at"]), (record["id"], key)
                assert updated >= parse(stamps[key]), (record["id"], key)
        assert all(
            parse(value) <= SNAPSHOT for key, value in stamps.items() if key not in ("starts_at", "ends_at")
        ), record["id"]
        checked += 1
    assert checked > 5000


# --- appointments ------------------------------------------------------------------------


def test_dna_rate_is_near_target_and_never_on_cancelled(world: Clinic) -> None:
    attended_or_missed = [a for a in past_outcomes(world) if a["cancelled_at"] is None]
    dna = sum(a["did_not_arrive"] for a in attended_or_missed) / len(attended_or_missed)
    assert abs(dna - SPEC.dna_rate) < 0.015
    assert not any(a["did_not_arrive"] for a in world.appointments if a["cancelled_at"])
    assert not any(a["did_not_arrive"] and a["patient_arrived"] for a in world.appointments)


def test_cancellation_rates_are_near_target(world: Clinic) -> None:
    live = world.live_appointments
    cancelled = [a for a in live if a["cancelled_at"]]
    assert abs(len(cancelled) / len(live) - SPEC.cancellation_rate) < 0.02
    late = sum(is_late(a) for a in cancelled) / len(cancelled)
    assert abs(late - SPEC.late_cancellation_share) < 0.05
    assert all(a["cancellation_reason"] in {10, 20, 30, 31, 40, 50, 60} for a in cancelled)
    assert all(a["cancellation_reason_description"] for a in cancelled)
    assert all(parse(a["cancelled_at"]) < parse(a["starts_at"]) for a in cancelled)


def test_rates_follow_the_spec_knobs() -> None:
    spec = ClinicSpec(
        seed=3, patients=300, dna_rate=0.15, cancellation_rate=0.25, late_cancellation_share=0.6
    )
    world = materialise(generate_clinic(spec))
    live = world.live_appointments
    cancelled = [a for a in live if a["cancelled_at"]]
    kept_past = [a for a in past_outcomes(world) if a["cancelled_at"] is None]
    assert abs(len(cancelled) / len(live) - 0.25) < 0.03
    assert abs(sum(is_late(a) for a in cancelled) / len(cancelled) - 0.6) < 0.05
    assert abs(sum(a["did_not_arrive"] for a in kept_past) / len(kept_past) - 0.15) < 0.02


def _reschedules(world: Clinic) -> int:
    """Cancelled bookings followed by a booking made within 20 minutes of the cancellation
    for a start within a week of the old one."""
    count = 0
    for appointments in world.by_patient.values():
        for old in (a for a in appointments if a["cancelled_at"]):
            cancelled_at, starts_at = parse(old["cancelled_at"]), parse(old["starts_at"])
            count += any(
                timedelta(0) <= parse(new["created_at"]) - cancelled_at <= timedelta(minutes=20)
                and timedelta(0) < parse(new["starts_at"]) - starts_at <= timedelta(days=8)
                for new in appointments
                if new is not old
            )
    return count


def test_reschedules_exist(world: Clinic) -> None:
    cancelled = sum(1 for a in world.live_appointments if a["cancelled_at"])
    assert 0.3 < _reschedules(world) / cancelled < 0.6


def test_future_bookings_exist_and_are_plain_bookings(world: Clinic) -> None:
    future = [a for a in world.live_appointments if parse(a["starts_at"]) > SNAPSHOT]
    kept = [a for a in future if a["cancelled_at"] is None]
    assert len(kept) > SPEC.patients * 0.1
    assert all(parse(a["starts_at"]).astimezone(ZONE).date() > SPEC.today for a in future)
    assert not any(a["patient_arrived"] or a["did_not_arrive"] or a["invoice_status"] for a in future)
    assert all(parse(a["starts_at"]) - SNAPSHOT < timedelta(days=60) for a in future)


def _assert_in_clinic_hours(
    appointments: list[dict[str, Any]], durations: dict[str, int], zone: ZoneInfo
) -> None:
    for appointment in appointments:
        starts = parse(appointment["starts_at"]).astimezone(zone)
        ends = parse(appointment["ends_at"]).astimezone(zone)
        assert starts.weekday() in CLINIC_HOURS, appointment["starts_at"]  # never a Sunday
        opens, closes = CLINIC_HOURS[starts.weekday()]
        assert starts.minute % 15 == 0
        assert starts.second == 0
        assert opens <= starts.hour * 60 + starts.minute
        assert ends.date() == starts.date()
        assert ends.hour * 60 + ends.minute <= closes
        minutes = (ends - starts) / timedelta(minutes=1)
        assert minutes == durations[link_id(appointment["appointment_type"])]
        assert (starts.month, starts.day) not in {(1, 1), (12, 25), (12, 26)}


def test_appointments_fall_in_clinic_hours_on_15_minute_slots(world: Clinic) -> None:
    durations = {t["id"]: t["duration_in_minutes"] for t in world.clinic.appointment_types}
    _assert_in_clinic_hours(world.appointments, durations, ZONE)


@pytest.mark.parametrize("zone_name", ["Australia/Perth", "Australia/Lord_Howe", "Europe/London"])
def test_clinic_hours_hold_in_other_time_zones(zone_name: str) -> None:
    clinic = generate_clinic(ClinicSpec(seed=4, patients=60, time_zone=zone_name))
    durations = {t["id"]: t["duration_in_minutes"] for t in clinic.appointment_types}
    appointments = [a for bundle in clinic.iter_patients() for a in bundle.appointments]
    assert len(appointments) > 500
    _assert_in_clinic_hours(appointments, durations, ZoneInfo(zone_name))


def test_courses_start_with_an_initial_consultation(world: Clinic) -> None:
    names = {t["id"]: t["name"] for t in world.clinic.appointment_types}
    checked = 0
    for appointments in world.by_patient.values():
        kept = [
            a
            for a in appointments
            if a["cancelled_at"] is None and a["deleted_at"] is None and a["archived_at"] is None
        ]
        if kept:
            assert names[link_id(kept[0]["appointment_type"])] == "Initial Consultation"
            checked += 1
        later = {names[link_id(a["appointment_type"])] for a in kept[1:]}
        assert later <= set(names.values())
    assert checked > SPEC.patients * 0.9


def test_visits_follow_weekly_to_monthly_intervals(world: Clinic) -> None:
    gaps: Counter[int] = Counter()
    for appointments in world.by_patient.values():
        days = [
            parse(a["starts_at"]).astimezone(ZONE).date()
            for a in appointments
            if a["cancelled_at"] is None and a["deleted_at"] is None
        ]
        gaps.update((later - earlier).days for earlier, later in pairwise(days))
    near_cadence = sum(
        count
        for gap, count in gaps.items()
        if any(abs(gap - interval) <= 3 for interval in (7, 14, 21, 28, 35))
    )
    assert near_cadence / sum(gaps.values()) > 0.75
    assert max(gaps) > 60  # returning patients come back after months


def test_arrival_is_marked_on_most_attended_visits_but_not_all(world: Clinic) -> None:
    attended = [a for a in past_outcomes(world) if a["cancelled_at"] is None and not a["did_not_arrive"]]
    marked = sum(a["patient_arrived"] for a in attended) / len(attended)
    assert 0.6 < marked < 0.99


def test_created_at_precedes_start_by_hours_to_weeks(world: Clinic) -> None:
    leads = sorted(parse(a["starts_at"]) - parse(a["created_at"]) for a in world.appointments)
    assert leads[0] > timedelta(minutes=30)
    median = leads[len(leads) // 2]
    assert timedelta(days=2) < median < timedelta(days=35)


def test_each_patient_mostly_sees_one_practitioner_at_their_location(world: Clinic) -> None:
    practitioner_business = {
        p["id"]: link_id(
            next(a["business"] for a in world.appointments if link_id(a["practitioner"]) == p["id"])
        )
        for p in world.clinic.practitioners
        if any(link_id(a["practitioner"]) == p["id"] for a in world.appointments)
    }
    own_share = []
    for appointments in world.by_patient.values():
        if len(appointments) >= 5:
            counts = Counter(link_id(a["practitioner"]) for a in appointments)
            own_share.append(counts.most_common(1)[0][1] / len(appointments))
        assert len({link_id(a["business"]) for a in appointments}) <= 1
        for appointment in appointments:
            practitioner = link_id(appointment["practitioner"])
            assert practitioner_business[practitioner] == link_id(appointment["business"])
    assert sum(own_share) / len(own_share) > 0.8


def test_some_patients_archived_and_some_appointments_deleted(world: Clinic) -> None:
    archived = [p for p in world.patients if p["archived_at"]]
    assert 0 < len(archived) < SPEC.patients * 0.3
    for patient in archived:
        assert not any(
            parse(a["starts_at"]) > SNAPSHOT and a["cancelled_at"] is None
            for a in world.by_patient[patient["id"]]
        )
    deleted = [a for a in world.appointments if a["deleted_at"]]
    assert 0 < len(deleted) < len(world.appointments) * 0.02
    assert not any(a["invoice_status"] for a in deleted)


# --- invoices ----------------------------------------------------------------------------


def test_invoice_amounts_equal_the_appointment_type_price(world: Clinic) -> None:
    prices = appointment_type_prices()
    appointment_type = {a["id"]: link_id(a["appointment_type"]) for a in world.appointments}
    discounted = 0
    for invoice in world.invoices:
        money = [invoice[key] for key in ("total_amount", "tax_amount", "net_amount", "discounted_amount")]
        assert all(MONEY.match(value) for value in money)
        price = prices[appointment_type[link_id(invoice["appointment"])]]
        net, tax = Decimal(invoice["net_amount"]), Decimal(invoice["tax_amount"])
        assert net + Decimal(invoice["discounted_amount"]) == price
        assert Decimal(invoice["total_amount"]) == net + tax
        discounted += Decimal(invoice["discounted_amount"]) > 0
    assert 0 < discounted < len(world.invoices) * 0.2


def test_invoices_belong_to_attended_visits_and_some_dna_fees(world: Clinic) -> None:
    appointments = {a["id"]: a for a in world.appointments}
    kinds: Counter[str] = Counter()
    for invoice in world.invoices:
        appointment = appointments[link_id(invoice["appointment"])]
        assert appointment["cancelled_at"] is None
        assert parse(appointment["starts_at"]) < SNAPSHOT
        assert link_id(invoice["patient"]) == link_id(appointment["patient"])
        assert invoice["practitioner"] == appointment["practitioner"]
        assert invoice["issue_date"] == (parse(appointment["starts_at"]).astimezone(ZONE).date().isoformat())
        kinds["dna" if appointment["did_not_arrive"] else "attended"] += 1
    attended = [a for a in past_outcomes(world) if a["cancelled_at"] is None and not a["did_not_arrive"]]
    assert kinds["attended"] > len(attended) * 0.9
    assert kinds["dna"] > 0


def test_invoice_statuses_use_cliniko_codes(world: Clinic) -> None:
    descriptions = {10: "Open", 20: "Paid", 30: "Closed", 40: "Open credit"}
    statuses = Counter(invoice["status"] for invoice in world.invoices)
    assert statuses[20] > statuses[10] > 0
    for invoice in world.invoices:
        assert invoice["status_description"] == descriptions[invoice["status"]]
        assert (invoice["closed_at"] is not None) == (invoice["status"] in {20, 30})
    live = {link_id(i["appointment"]): i["status"] for i in world.invoices if not i["deleted_at"]}
    for appointment in world.appointments:
        assert appointment["invoice_status"] == live.get(appointment["id"])


# --- people ------------------------------------------------------------------------------

PHONE_SPELLINGS = {
    "0412 345 678": r"04\d{2} \d{3} \d{3}",
    "0412345678": r"04\d{8}",
    "+61 412 345 678": r"\+61 4\d{2} \d{3} \d{3}",
    "+61412345678": r"\+614\d{8}",
    "61412345678": r"614\d{8}",
    "412 345 678": r"4\d{2} \d{3} \d{3}",
    "(03) 9123 4567": r"\(0[2378]\) \d{4} \d{4}",
    "03 9123 4567": r"0[2378] \d{4} \d{4}",
    "+61 3 9123 4567": r"\+61 [2378] \d{4} \d{4}",
}


def test_phone_numbers_come_in_many_spellings(world: Clinic) -> None:
    seen: Counter[str] = Counter()
    for patient in world.patients:
        for phone in patient["patient_phone_numbers"]:
            assert set(phone) == {"phone_type", "number"}
            assert phone["phone_type"] in {"Mobile", "Home", "Work"}
            for spelling, pattern in PHONE_SPELLINGS.items():
                seen[spelling] += bool(re.fullmatch(pattern, phone["number"]))
    assert set(seen) == set(PHONE_SPELLINGS)
    assert all(count > 0 for count in seen.values()), seen
    without = sum(not p["patient_phone_numbers"] for p in world.patients)
    assert 0 < without < SPEC.patients * 0.2


def test_phone_numbers_are_real_australian_numbers() -> None:
    phonenumbers = pytest.importorskip("phonenumbers")
    clinic = generate_clinic(ClinicSpec(seed=5, patients=300))
    numbers = [
        phone["number"]
        for bundle in clinic.iter_patients()
        for phone in bundle.patient["patient_phone_numbers"]
    ]
    # A landline written without its area code ("9123 4567") cannot be read on its own.
    readable = [n for n in numbers if not re.fullmatch(r"\d{4} \d{4}", n)]
    for number in readable:
        # The two spellings without a prefix: "61412345678" and "412 345 678".
        text = {"6": "+", "4": "0"}.get(number[0], "") + number
        assert phonenumbers.is_valid_number(phonenumbers.parse(text, "AU")), number
    assert len(readable) > 250


def test_emails_vary_in_case_and_are_sometimes_missing(world: Clinic) -> None:
    emails = [p["email"] for p in world.patients]
    present = [e for e in emails if e]
    assert any(e != e.lower() for e in present)
    assert sum(e == e.lower() for e in present) > len(present) * 0.7
    assert 0 < sum(not e for e in emails) < len(emails) * 0.2
    domains = {e.rsplit("@", 1)[1].lower() for e in present}
    assert all(domain.endswith(("example.com", "example.net", "example.org")) for domain in domains)


def test_names_include_plenty_of_non_ascii(world: Clinic) -> None:
    names = [f"{p['first_name']} {p['last_name']}" for p in world.patients]
    non_ascii = [name for name in names if not name.isascii()]
    assert len(non_ascii) > len(names) * 0.08
    letters = set("".join(non_ascii))
    assert len(letters & set("ëéáóúíñøöüłśễầ王李张刘陈杨黄")) >= 6
    assert any("'" in name for name in names)


def test_dates_of_birth_are_plausible(world: Clinic) -> None:
    births = [date.fromisoformat(p["date_of_birth"]) for p in world.patients if p["date_of_birth"]]
    ages = [(SPEC.today - birth).days / 365.25 for birth in births]
    assert min(ages) >= 4
    assert max(ages) < 100
    assert 30 < sorted(ages)[len(ages) // 2] < 55


# --- clinic-wide records -----------------------------------------------------------------


def test_default_staff_scales_with_size() -> None:
    assert ClinicSpec(patients=2000).practitioner_count == 4
    assert 35 <= ClinicSpec(patients=50_000).practitioner_count <= 45
    assert [ClinicSpec(patients=n).location_count for n in (50, 2000, 50_000)] == [1, 2, 3]


def test_practitioners_who_left_see_nobody_afterwards() -> None:
    staffed = materialise(generate_clinic(ClinicSpec(seed=9, patients=500, practitioners=8, locations=3)))
    clinic = staffed.clinic
    assert len(clinic.businesses) == 3
    assert len(clinic.practitioners) == 8
    left = {p["id"]: parse(p["updated_at"]) for p in clinic.practitioners if not p["active"]}
    assert 1 <= len(left) <= 2
    assert {b["time_zone_identifier"] for b in clinic.businesses} == {"Australia/Melbourne"}
    seen_before_leaving = set()
    for appointment in staffed.appointments:
        practitioner = link_id(appointment["practitioner"])
        if practitioner in left:
            assert parse(appointment["starts_at"]) < left[practitioner]
            seen_before_leaving.add(practitioner)
    assert seen_before_leaving == set(left)


def test_services_carry_prices_and_archived_ones_stop_being_booked(world: Clinic) -> None:
    clinic = world.clinic
    prices = appointment_type_prices()
    items = {i["id"]: Decimal(i["price"]) for i in clinic.billable_items}
    for appointment_type in clinic.appointment_types:
        assert items[link_id(appointment_type["billable_item"])] == prices[appointment_type["id"]]
    assert clinic.appointment_type_prices() == prices
    archived = {t["id"]: parse(t["archived_at"]) for t in clinic.appointment_types if t["archived_at"]}
    assert archived
    used = Counter(link_id(a["appointment_type"]) for a in world.appointments)
    assert all(used[type_id] > 0 for type_id in archived)
    for appointment in world.appointments:
        type_id = link_id(appointment["appointment_type"])
        if type_id in archived:
            assert parse(appointment["starts_at"]) < archived[type_id]


# --- size and limits ---------------------------------------------------------------------


def test_expected_appointment_count_is_exact_for_small_clinics(world: Clinic) -> None:
    assert world.clinic.expected_appointments == len(world.appointments)
    assert 15 < len(world.appointments) / SPEC.patients < 25


def test_largest_clinic_is_about_a_million_appointments() -> None:
    clinic = generate_clinic(ClinicSpec(patients=50_000))
    assert 850_000 < clinic.expected_appointments <= 1_000_000


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"patients": 49}, "patients must be between 50 and 50,000"),
        ({"patients": 50_001}, "patients must be between 50 and 50,000"),
        ({"years": 0}, "years must be above 0"),
        ({"years": 15.5}, "at most 15"),
        ({"dna_rate": -0.1}, "dna_rate must be between 0 and 1"),
        ({"cancellation_rate": 1.5}, "cancellation_rate must be between 0 and 1"),
        ({"late_cancellation_share": float("nan")}, "late_cancellation_share must be a number"),
        ({"time_zone": "Mars/Olympus_Mons"}, "time_zone must be an IANA zone name"),
        ({"practitioners": 2, "locations": 3}, "must be at least locations"),
        ({"max_appointments": 0}, "max_appointments must be at least 1"),
    ],
)
def test_impossible_specs_are_refused_with_the_limit_named(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ImpossibleClinicError, match=re.escape(message)):
        replace(ClinicSpec(), **changes)


def test_more_appointments_than_allowed_is_refused() -> None:
    spec = ClinicSpec(patients=100, years=2)
    needed = generate_clinic(spec).expected_appointments
    assert generate_clinic(replace(spec, max_appointments=needed)).expected_appointments == needed
    with pytest.raises(ImpossibleClinicError, match="above max_appointments=") as error:
        generate_clinic(replace(spec, max_appointments=needed - 1))
    assert f"{needed:,}" in str(error.value)


def test_too_few_practitioners_for_the_workload_is_refused() -> None:
    with pytest.raises(ImpossibleClinicError, match="patients a day"):
        generate_clinic(ClinicSpec(patients=2500, practitioners=1, locations=1))


def test_patients_grouped_by_patient_link(world: Clinic) -> None:
    owners = defaultdict(set)
    for patient_id, appointments in world.by_patient.items():
        for appointment in appointments:
            owners[patient_id].add(link_id(appointment["patient"]))
    assert all(links == {patient_id} for patient_id, links in owners.items() if links)


@pytest.mark.parametrize(
    "changes",
    [
        {"years": 0.05},
        {"years": 15, "practitioners": 3},
        {"cancellation_rate": 1.0, "late_cancellation_share": 1.0},
        {"cancellation_rate": 0.0, "dna_rate": 0.0},
        {"dna_rate": 1.0, "locations": 2},
    ],
)
def test_invariants_hold_at_the_edges_of_the_spec(changes: dict[str, Any]) -> None:
    spec = replace(ClinicSpec(seed=21, patients=50), **changes)
    edge = materialise(generate_clinic(spec))
    ids = [r["id"] for r in (*edge.patients, *edge.appointments, *edge.invoices)]
    assert len(ids) == len(set(ids))
    durations = {t["id"]: t["duration_in_minutes"] for t in edge.clinic.appointment_types}
    _assert_in_clinic_hours(edge.appointments, durations, ZONE)
    history_start = SNAPSHOT - timedelta(days=spec.years * 365.25 + 7)
    for record in (*edge.patients, *edge.appointments, *edge.invoices):
        assert parse(record["created_at"]) <= parse(record["updated_at"]) <= SNAPSHOT
    for appointment in edge.appointments:
        assert parse(appointment["starts_at"]) > history_start
        assert not (appointment["did_not_arrive"] and appointment["cancelled_at"])
    assert edge.clinic.expected_appointments == len(edge.appointments)


def test_extreme_rates_are_honoured_exactly() -> None:
    no_shows = materialise(generate_clinic(ClinicSpec(seed=2, patients=50, dna_rate=1.0)))
    kept_past = [a for a in past_outcomes(no_shows) if a["cancelled_at"] is None]
    assert kept_past
    assert all(a["did_not_arrive"] for a in kept_past)
    spec = ClinicSpec(seed=2, patients=50, cancellation_rate=1.0, late_cancellation_share=1.0)
    cancellers = materialise(generate_clinic(spec))
    past = past_outcomes(cancellers)
    assert past
    assert all(a["cancelled_at"] and is_late(a) for a in past)
    perfect = materialise(
        generate_clinic(ClinicSpec(seed=2, patients=50, dna_rate=0.0, cancellation_rate=0.0))
    )
    assert not any(a["did_not_arrive"] or a["cancelled_at"] for a in perfect.appointments)
