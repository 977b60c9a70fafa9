"""The clinic KPIs on hand-built clinics whose right answers are counted by hand
(retention-metrics.md, "Clinic KPIs" and "Conventions").

Org A keeps the clinic's calendar in Australia/Sydney (UTC+11 in March, UTC+10 after the first
Sunday of April), so a clinic-local day and its UTC date differ for part of every day.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from itertools import count
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from model_bakery import baker

from clinics.models import Location, Organization
from patients.kpis import (
    GROUP_BY_CHOICES,
    KPI_DEFINITIONS,
    Period,
    clinic_kpi_comparison,
    clinic_kpi_series,
    clinic_kpis,
    clinic_today,
)
from patients.kpis.figures import UNAVAILABLE, changes
from patients.models import Appointment, AppointmentType, Invoice, Patient, Practitioner, ProfileBaseline

pytestmark = pytest.mark.django_db

SYDNEY = ZoneInfo("Australia/Sydney")
MARCH = {"start": date(2026, 3, 1), "end": date(2026, 3, 31)}
LATER = datetime(2026, 6, 1, 2, 0, tzinfo=UTC)  # long after March: every March visit is in the past
_ids = count(1)


def at(day: str, clock: str = "10:00", tz: ZoneInfo = SYDNEY) -> datetime:
    """A clinic-local moment: at("2026-03-10", "23:30")."""
    return datetime.fromisoformat(f"{day}T{clock}").replace(tzinfo=tz)


def patient(org: Organization, **fields: Any) -> Patient:
    return baker.make(Patient, organization=org, pms="cliniko", external_id=f"p{next(_ids)}", **fields)


def visit(
    org: Organization,
    who: Patient | None,
    starts_at: datetime,
    *,
    created: datetime | None = None,
    **fields: Any,
) -> Appointment:
    """An appointment, booked a week ahead unless `created` says when."""
    return baker.make(
        Appointment,
        organization=org,
        pms="cliniko",
        external_id=f"a{next(_ids)}",
        patient=who,
        starts_at=starts_at,
        ends_at=starts_at + timedelta(minutes=30),
        pms_created_at=created or starts_at - timedelta(days=7),
        **fields,
    )


def invoice(org: Organization, issued: str, amount: str, **fields: Any) -> Invoice:
    return baker.make(
        Invoice,
        organization=org,
        pms="cliniko",
        external_id=f"i{next(_ids)}",
        issue_date=date.fromisoformat(issued),
        total_amount=Decimal(amount),
        **fields,
    )


def march(org: Organization, *, now: datetime = LATER, **options: Any) -> dict[str, Any]:
    return clinic_kpis(org, **MARCH, now=now, **options)["kpis"]


def only(figures: dict[str, Any], expected: dict[str, Any]) -> dict[str, Any]:
    return {name: figures[name] for name in expected}


def settings_of(org: Organization, **retention: Any) -> Organization:
    org.retention_settings = {**org.retention_settings, **retention}
    org.save()
    return org


# --- outcomes, rates, bookings -------------------------------------------------------------------
def test_outcomes_and_rates_of_a_period(world):
    org, now = world.org_a, at("2026-03-20", "12:00")
    regular, missed, early, late, pending, arrived = (patient(org) for _ in range(6))
    visit(org, regular, at("2026-03-02"))  # booked 23 Feb
    visit(org, regular, at("2026-03-09"))  # booked at the 2 March visit
    visit(org, regular, at("2026-03-16"), archived_at=now)  # archived and deleted: never counted
    visit(org, regular, at("2026-03-17"), deleted_at=now)
    visit(org, missed, at("2026-03-03"), did_not_arrive=True)
    visit(org, early, at("2026-03-04"), cancelled_at=at("2026-03-01", "09:00"))  # 73 h notice
    visit(org, late, at("2026-03-05"), cancelled_at=at("2026-03-05", "08:00"))  # 2 h notice
    visit(org, pending, at("2026-03-25"), created=at("2026-03-10"))
    visit(org, arrived, at("2026-03-20", "15:00"), patient_arrived=True)  # marked arrived early
    visit(org, None, at("2026-03-06"))  # no linked patient: left out
    visit(world.org_b, patient(world.org_b), at("2026-03-06"))  # another tenant's

    figures = march(org, now=now)

    expected = {"appointments": 7, "attended": 3, "pending": 1, "dna": 1, "cancelled": 2}
    assert only(figures, expected) == expected
    assert figures["late_cancelled"] == 1 and figures["rescheduled"] == 0
    assert figures["appointments_due"] == 6  # 3 attended + 1 DNA + 2 cancelled
    assert figures["attendance_rate"] == 0.6  # 3 / (3 + 1 DNA + 1 late cancellation)
    assert figures["dna_rate"] == 0.1667 and figures["cancellation_rate"] == 0.3333
    assert figures["late_cancellation_rate"] == 0.1667
    # The 2 March visit was followed by the 9 March booking; the others by nothing.
    assert figures["visits_rebooked"] == 1 and figures["visit_rebook_rate"] == 0.3333
    assert figures["patients_attended"] == 2 and figures["patient_rebook_rate"] == 0.0
    assert figures["no_future_appointment_rate"] == 1.0
    assert figures["new_patients"] == 2 and figures["pva"] == 1.5 and figures["pva_definition"] == "cliniko"
    # Created in March for that day or later: the 9 March, 25 March and 20 March appointments.
    assert figures["bookings"] == 3


def test_a_booking_entered_for_an_earlier_day_is_not_a_booking(world):
    org = world.org_a
    who = patient(org)
    visit(org, who, at("2026-03-10"), created=at("2026-03-12"))  # a visit recorded afterwards
    visit(org, who, at("2026-03-12"), created=at("2026-03-12", "11:00"))  # a walk-in, entered after
    visit(org, who, at("2026-03-20"), created=at("2026-03-12", "11:30"))
    figures = march(org)
    assert figures["bookings"] == 2 and figures["attended"] == 3


# --- reschedules ---------------------------------------------------------------------------------
def test_a_cancellation_or_dna_followed_by_a_booking_that_day_is_a_reschedule(world):
    org = world.org_a
    rebooked, too_late, dna_rebooked, dna_alone, early, early_alone, holding, late, twice = (
        patient(org) for _ in range(9)
    )
    # Cancelled on 8 March, rebooked that afternoon: a reschedule.
    visit(org, rebooked, at("2026-03-10"), cancelled_at=at("2026-03-08", "09:00"))
    visit(org, rebooked, at("2026-03-12"), created=at("2026-03-08", "15:00"))
    # Cancelled on 8 March, rebooked the next morning: a cancellation.
    visit(org, too_late, at("2026-03-10"), cancelled_at=at("2026-03-08", "09:00"))
    visit(org, too_late, at("2026-03-12"), created=at("2026-03-09", "08:00"))
    # Missed on 11 March, rebooked that afternoon: a reschedule; rebooked the next day: a DNA.
    visit(org, dna_rebooked, at("2026-03-11"), did_not_arrive=True)
    visit(org, dna_rebooked, at("2026-03-18"), created=at("2026-03-11", "16:00"))
    visit(org, dna_alone, at("2026-03-11"), did_not_arrive=True)
    visit(org, dna_alone, at("2026-03-18"), created=at("2026-03-12", "09:00"))
    # Cancelled before the period (25 Feb) and rebooked that day for 27 Feb: a reschedule; the
    # same cancellation without a rebooking is a cancellation.
    visit(org, early, at("2026-03-03"), cancelled_at=at("2026-02-25", "09:00"))
    visit(org, early, at("2026-02-27"), created=at("2026-02-25", "10:00"))
    visit(org, early_alone, at("2026-03-03"), cancelled_at=at("2026-02-25", "09:00"))
    # A DNA by a patient who already held a later appointment: a reschedule.
    visit(org, holding, at("2026-03-15"), did_not_arrive=True)
    visit(org, holding, at("2026-03-29"), created=at("2026-03-01"))
    # A late cancellation rebooked at once: a reschedule, not a late cancellation.
    visit(org, late, at("2026-03-20"), cancelled_at=at("2026-03-20", "08:00"))
    visit(org, late, at("2026-03-22"), created=at("2026-03-20", "08:05"))
    # Rebooked, then that booking cancelled the same evening: nothing held at midnight, two
    # cancellations.
    visit(org, twice, at("2026-03-24"), cancelled_at=at("2026-03-21", "09:00"))
    visit(
        org,
        twice,
        at("2026-03-28"),
        created=at("2026-03-21", "10:00"),
        cancelled_at=at("2026-03-21", "18:00"),
    )

    figures = march(org)

    expected = {"appointments": 16, "attended": 6, "rescheduled": 5, "cancelled": 4, "late_cancelled": 0}
    assert only(figures, expected) == expected
    assert figures["dna"] == 1 and figures["appointments_due"] == 11  # 6 + 1 + 4
    assert figures["dna_rate"] == 0.0909 and figures["cancellation_rate"] == 0.3636
    assert figures["attendance_rate"] == 0.8571  # 6 / (6 + 1)


def test_a_reschedule_is_judged_at_the_clinics_midnight(world):
    """23:50 in Sydney is 12:50 UTC: still the missed visit's day, however UTC dates run."""
    org = world.org_a
    same_day, at_midnight, next_day = patient(org), patient(org), patient(org)
    for who, rebooked in (
        (same_day, at("2026-03-31", "23:50")),
        (at_midnight, at("2026-04-01", "00:00")),  # "created by the end of the day" includes it
        (next_day, at("2026-04-01", "00:10")),
    ):
        visit(org, who, at("2026-03-31", "22:00"), did_not_arrive=True)
        visit(org, who, at("2026-04-09"), created=rebooked)
    figures = march(org)
    assert (figures["dna"], figures["rescheduled"]) == (1, 2)


# --- the clinic's calendar -----------------------------------------------------------------------
@pytest.mark.parametrize("zone", ["Australia/Sydney", "America/Los_Angeles"])
def test_periods_are_clinic_local_days(world, zone):
    """Sydney's midnight is UTC's afternoon before; Los Angeles' is UTC's morning after."""
    org = world.org_a
    org.time_zone = zone
    org.save()
    tz = ZoneInfo(zone)
    who = patient(org)
    visit(org, who, at("2026-02-28", "23:45", tz))  # before the period
    visit(org, who, at("2026-03-01", "00:15", tz))
    visit(org, who, at("2026-03-31", "23:30", tz))  # the last day's last visit
    visit(org, who, at("2026-04-01", "00:30", tz))  # after it
    invoice(org, "2026-03-31", "80.00")
    invoice(org, "2026-04-01", "90.00")
    figures = march(org)
    assert figures["attended"] == 2 and figures["revenue"] == 80.0
    days = clinic_kpi_series(org, start=date(2026, 3, 31), end=date(2026, 4, 1), now=LATER)
    assert [(d["date"], d["attended"], d["revenue"]) for d in days] == [
        ("2026-03-31", 1, 80.0),
        ("2026-04-01", 1, 90.0),
    ]


def test_clinic_today_is_the_clinics_date(world):
    moment = datetime(2026, 3, 31, 14, 0, tzinfo=UTC)  # 01:00 on 1 April in Sydney
    assert clinic_today(world.org_a, now=moment) == date(2026, 4, 1)
    assert clinic_today(world.org_a, now=datetime(2026, 3, 31, 12, 0, tzinfo=UTC)) == date(2026, 3, 31)


# --- new patients and PVA ------------------------------------------------------------------------
def test_a_new_patient_is_one_whose_first_ever_visit_is_in_the_period(world):
    org = world.org_a
    old_record = patient(org, pms_created_at=at("2019-05-01"))  # old PMS record, first visit now
    returning = patient(org)
    no_show_first = patient(org, pms_created_at=at("2026-03-01"))  # created in March, came in April
    cancelled_first = patient(org)
    archived_first = patient(org)
    long_ago = patient(org)
    visit(org, old_record, at("2026-03-05"))
    visit(org, old_record, at("2026-03-19"))
    visit(org, returning, at("2026-02-10"))
    visit(org, returning, at("2026-03-06"))
    visit(org, no_show_first, at("2026-03-07"), did_not_arrive=True)
    visit(org, no_show_first, at("2026-04-02"))
    visit(org, cancelled_first, at("2026-02-12"), cancelled_at=at("2026-02-11"))
    visit(org, cancelled_first, at("2026-03-08"))
    visit(org, archived_first, at("2026-02-13"), archived_at=at("2026-02-20"))
    visit(org, archived_first, at("2026-03-09"))
    visit(org, long_ago, at("2024-06-03"))
    visit(org, long_ago, at("2026-03-10"))

    figures = march(org)
    # Attended in March: old_record twice, returning, cancelled_first, archived_first, long_ago.
    assert figures["attended"] == 6 and figures["new_patients"] == 3 and figures["pva"] == 2.0
    april = clinic_kpis(org, start=date(2026, 4, 1), end=date(2026, 4, 30), now=LATER)["kpis"]
    assert april["new_patients"] == 1 and april["pva"] == 1.0


# --- rebooking -----------------------------------------------------------------------------------
def test_rebook_rates_are_locked_at_the_period_end(world):
    org = world.org_a
    later_booked, after_end, cancelled_after, cancelled_before, two_visits, last_day = (
        patient(org) for _ in range(6)
    )
    visit(org, later_booked, at("2026-03-10"))
    visit(org, later_booked, at("2026-04-10"), created=at("2026-03-20"))  # held at the end
    visit(org, after_end, at("2026-03-12"))
    visit(org, after_end, at("2026-04-12"), created=at("2026-04-02"))  # booked after March: no
    visit(org, cancelled_after, at("2026-03-14"))
    visit(
        org,
        cancelled_after,
        at("2026-04-14"),
        created=at("2026-03-14", "11:00"),
        cancelled_at=at("2026-04-03"),
    )
    visit(org, cancelled_before, at("2026-03-16"))
    visit(
        org,
        cancelled_before,
        at("2026-04-16"),
        created=at("2026-03-16", "11:00"),
        cancelled_at=at("2026-03-30"),
    )
    visit(org, two_visits, at("2026-03-18"))
    visit(org, two_visits, at("2026-03-25"), created=at("2026-03-18", "12:00"))
    visit(org, last_day, at("2026-03-31", "15:00"))
    visit(org, last_day, at("2026-04-01", "09:00"), created=at("2026-03-31", "16:00"))

    figures = march(org)

    # Held at midnight on 31 March: later_booked's, cancelled_after's and last_day's bookings.
    assert figures["patients_attended"] == 6 and figures["patients_rebooked"] == 3
    assert figures["patient_rebook_rate"] == 0.5 and figures["no_future_appointment_rate"] == 0.5
    # Held at the end of the visit's day: 14, 16, 18 and 31 March, of seven visits.
    assert figures["attended"] == 7 and figures["visits_rebooked"] == 4
    assert figures["visit_rebook_rate"] == 0.5714
    # Computed the morning after the period, before the 2 April booking existed: the same.
    before_rebooking = march(org, now=at("2026-04-01", "08:00"))
    assert before_rebooking["patient_rebook_rate"] == 0.5


# --- late cancellations --------------------------------------------------------------------------
@pytest.mark.parametrize(("hours", "late", "attendance"), [(24, 1, 0.5), (48, 3, 0.25)])
def test_late_cancellation_notice_is_the_organizations(world, hours, late, attendance):
    org = settings_of(world.org_a, late_cancellation_hours=hours)
    starts = at("2026-03-10")
    for notice in (30, 22, 24, 72):  # hours before the start; exactly 24 h is not late
        visit(org, patient(org), starts, cancelled_at=starts - timedelta(hours=notice))
    visit(org, patient(org), at("2026-03-11"))
    figures = march(org)
    assert figures["cancelled"] == 4 and figures["late_cancelled"] == late
    assert figures["late_cancellation_rate"] == round(late / 5, 4)
    assert figures["attendance_rate"] == attendance  # 1 / (1 + late cancellations)


# --- reactivations -------------------------------------------------------------------------------
def _history(org: Organization, who: Patient, *days: str) -> None:
    for day in days:
        visit(org, who, at(day))


def test_reactivations_are_lapsed_patients_booking_again(world):
    org, now = world.org_a, at("2026-03-25", "12:00")
    dormant, by_ratio, due, active, holding, cancelled_then, together, missed, pending = (
        patient(org) for _ in range(9)
    )
    newcomer, one_visit, recent_one = patient(org), patient(org), patient(org)
    _history(org, dormant, "2024-01-08", "2024-01-22", "2024-02-05")
    visit(org, dormant, at("2026-03-17"), created=at("2026-03-10"))  # yes: over a year away
    _history(org, by_ratio, "2026-01-05", "2026-01-12", "2026-01-19")  # weekly
    visit(org, by_ratio, at("2026-03-09"), created=at("2026-03-02"))  # yes: 42 days = 6 intervals
    _history(org, due, "2026-01-05", "2026-01-19", "2026-02-02")  # fortnightly
    visit(org, due, at("2026-03-09"), created=at("2026-03-02"))  # no: 28 days = 2 intervals
    _history(org, active, "2025-09-01", "2025-11-01", "2026-01-01")  # every 61 days
    visit(org, active, at("2026-03-17"), created=at("2026-03-10"))  # no: 68 days, 1.1 intervals
    _history(org, holding, "2024-01-08", "2024-01-22")
    visit(org, holding, at("2026-04-20"), created=at("2026-02-01"))  # booked in February
    visit(org, holding, at("2026-03-17"), created=at("2026-03-10"))  # no: held one already
    _history(org, cancelled_then, "2024-01-08", "2024-01-22")
    visit(org, cancelled_then, at("2026-03-12"), created=at("2026-03-05"), cancelled_at=at("2026-03-06"))
    visit(org, cancelled_then, at("2026-03-15"), created=at("2026-03-08"))  # yes, once
    _history(org, together, "2024-01-08", "2024-01-22")
    visit(org, together, at("2026-03-12"), created=at("2026-03-05"))  # two at once: one lapse
    visit(org, together, at("2026-03-19"), created=at("2026-03-05"))
    _history(org, missed, "2024-01-08", "2024-01-22")
    visit(org, missed, at("2026-03-12"), created=at("2026-03-05"), did_not_arrive=True)  # no
    _history(org, pending, "2025-12-01", "2025-12-08", "2025-12-15")
    visit(org, pending, at("2026-04-02"), created=at("2026-03-20"))  # yes: still booked
    visit(org, newcomer, at("2026-03-12"), created=at("2026-03-05"))  # no: never came before
    _history(org, one_visit, "2025-12-20")  # no gaps: the default interval, 21 days
    visit(org, one_visit, at("2026-03-17"), created=at("2026-03-10"))  # yes: 80 days
    _history(org, recent_one, "2026-02-01")
    visit(org, recent_one, at("2026-03-17"), created=at("2026-03-10"))  # 37 days: 1.8 of 21, due

    assert march(org, now=now)["reactivations"] == 6
    # With the clinic's own median gap of 10 days, 37 days is 3.7 intervals: lapsing.
    baker.make(ProfileBaseline, organization=org, median_interval_days=10.0, generated_at=now)
    assert march(org, now=now)["reactivations"] == 7


def test_each_lapse_is_one_reactivation_over_a_long_period(world):
    """The visits before each booking lie in the period here, so the usual interval comes from them
    (the statement's other path: test_reactivations_are_lapsed_patients_booking_again)."""
    org = world.org_a
    who = patient(org)
    _history(org, who, "2025-04-07", "2025-04-14", "2025-04-21", "2025-04-28", "2025-05-05")
    visit(org, who, at("2025-07-08"), created=at("2025-07-01"))  # 57 days after a weekly rhythm
    visit(org, who, at("2025-10-08"), created=at("2025-10-01"))  # 85 days; the usual gap is still 7
    regular = patient(org)  # books each visit at the one before: never lapsing
    _history(org, regular, *(f"2025-{month:02d}-10" for month in range(4, 13)))
    # New patients with fewer visits than the usual interval is taken over: all of them are in
    # the period. One gap: the default 21 days, so 78 days is lapsing; two gaps of 10 days: 35
    # days is lapsing (it would be due against 21).
    one_gap, two_gaps = patient(org), patient(org)
    _history(org, one_gap, "2025-05-01", "2025-05-15")
    visit(org, one_gap, at("2025-08-08"), created=at("2025-08-01"))
    _history(org, two_gaps, "2025-06-02", "2025-06-12", "2025-06-22")
    visit(org, two_gaps, at("2025-08-03"), created=at("2025-07-27"))
    start, end = date(2025, 4, 1), date(2026, 3, 31)
    assert clinic_kpis(org, start=start, end=end, now=LATER)["kpis"]["reactivations"] == 4
    days = clinic_kpi_series(org, start=start, end=end, now=LATER)
    reactivated = [d["date"] for d in days if d["reactivations"]]
    assert reactivated == ["2025-07-01", "2025-07-27", "2025-08-01", "2025-10-01"]


@pytest.mark.parametrize(("visits", "reactivations"), [(5, 0), (3, 1)])
@pytest.mark.parametrize("history_in_period", [True, False])
def test_the_usual_interval_is_the_median_of_the_last_visits_before_the_booking(
    world, visits, reactivations, history_in_period
):
    """Gaps of 30, 30, 7 and 7 days, then a booking 40 days after the last visit: the median of
    the last four gaps is 18.5 days (40 days is due), of the last two 7 days (lapsing); whether
    those visits lie in the period asked for or before it."""
    org = settings_of(world.org_a, expected_interval_visits=visits)
    first = date(2025, 7, 1) if history_in_period else date(2025, 11, 16)
    who = patient(org)
    _history(org, who, *((first + timedelta(days=n)).isoformat() for n in (0, 30, 60, 67, 74)))
    booked = first + timedelta(days=114)
    visit(org, who, at((booked + timedelta(days=7)).isoformat()), created=at(booked.isoformat()))
    start = date(2025, 6, 1) if history_in_period else date(2026, 3, 1)
    report = clinic_kpis(org, start=start, end=start + timedelta(days=364), now=LATER)
    assert report["kpis"]["reactivations"] == reactivations


def test_a_lapsed_patient_walking_in_is_a_reactivation(world):
    org = world.org_a
    walk_in, spaced = patient(org), patient(org)
    _history(org, walk_in, "2024-01-08", "2024-01-22")
    visit(org, walk_in, at("2026-03-10"), created=at("2026-03-10", "10:30"))  # entered after it began
    # Every 45 days, the last on 5 March (in the period); booked 65 days later: 1.4 intervals.
    _history(org, spaced, "2025-09-06", "2025-10-21", "2025-12-05", "2026-01-19", "2026-03-05")
    visit(org, spaced, at("2026-05-16"), created=at("2026-05-09"))
    report = clinic_kpis(org, start=date(2026, 3, 1), end=date(2026, 5, 31), now=LATER)
    assert report["kpis"]["reactivations"] == 1


# --- revenue -------------------------------------------------------------------------------------
def test_revenue_nets_credits_and_leaves_out_archived_and_deleted_invoices(world):
    org = world.org_a
    invoice(org, "2026-03-01", "100.00")
    invoice(org, "2026-03-15", "250.50")
    invoice(org, "2026-03-31", "-50.00")  # a credit
    invoice(org, "2026-03-16", "999.00", archived_at=LATER)
    invoice(org, "2026-03-17", "999.00", deleted_at=LATER)
    invoice(org, "2026-02-28", "400.00")
    invoice(org, "2026-04-01", "400.00")
    invoice(world.org_b, "2026-03-10", "777.00")
    figures = march(org)
    assert figures["revenue"] == 300.5 and figures["credits"] == 50.0
    assert figures["invoices"] == 3 and figures["currency"] == "AUD"


# --- groups --------------------------------------------------------------------------------------
@pytest.fixture
def two_practitioners(world):
    org = world.org_a
    ana = baker.make(
        Practitioner, organization=org, pms="cliniko", external_id="ana", first_name="Ana", last_name="Lee"
    )
    ben = baker.make(
        Practitioner, organization=org, pms="cliniko", external_id="ben", title="Dr", first_name="Ben"
    )
    harbour = baker.make(Location, organization=org, pms="cliniko", external_id="h", name="Harbour")
    hill = baker.make(Location, organization=org, pms="cliniko", external_id="k", name="Hill")
    both, missed, walk_in = patient(org), patient(org), patient(org)
    visit(org, both, at("2026-03-02"), practitioner=ana, location=harbour)
    visit(org, both, at("2026-03-09"), created=at("2026-03-02"), practitioner=ben, location=hill)
    visit(org, missed, at("2026-03-03"), practitioner=ana, location=harbour)
    visit(org, missed, at("2026-03-10"), practitioner=ana, location=harbour, did_not_arrive=True)
    visit(org, walk_in, at("2026-03-04"), location=harbour)
    invoice(org, "2026-03-02", "100.00", practitioner=ana, location=harbour)
    invoice(org, "2026-03-09", "50.00", practitioner=ben, location=hill)
    invoice(org, "2026-03-04", "20.00")
    return {"ana": ana, "ben": ben, "harbour": harbour, "hill": hill}


def _group_figures(groups: list[dict[str, Any]], names: tuple[str, ...]) -> list[tuple[Any, ...]]:
    return [(g["name"], *(g["kpis"][n] for n in names)) for g in groups]


def test_kpis_by_practitioner(world, two_practitioners):
    report = clinic_kpis(world.org_a, **MARCH, group_by="practitioner", now=LATER)
    names = ("appointments", "attended", "dna", "patients_attended", "new_patients", "revenue", "pva")
    assert _group_figures(report["groups"], names) == [
        ("Ana Lee", 3, 2, 1, 2, 2, 100.0, 1.0),
        ("Dr Ben", 1, 1, 0, 1, 0, 50.0, None),
        ("Unassigned", 1, 1, 0, 1, 1, 20.0, 1.0),
    ]
    ana = report["groups"][0]
    assert ana["id"] == two_practitioners["ana"].pk and report["groups"][2]["id"] is None
    # Both of Ana's visits were followed by a booking that day (Ben's on 9 March, her own DNA).
    assert ana["kpis"]["visit_rebook_rate"] == 1.0 and ana["kpis"]["dna_rate"] == 0.3333
    # The total counts a patient seen by two practitioners once.
    total = report["kpis"]
    expected = {"appointments": 5, "attended": 4, "patients_attended": 3, "new_patients": 3}
    assert only(total, expected) == expected
    assert total["revenue"] == 170.0 and total["pva"] == 1.33  # 4 visits / 3 new patients


def test_kpis_by_location(world, two_practitioners):
    report = clinic_kpis(world.org_a, **MARCH, group_by="location", now=LATER)
    names = ("appointments", "attended", "dna", "patients_attended", "new_patients", "revenue")
    assert _group_figures(report["groups"], names) == [
        ("Harbour", 4, 3, 1, 3, 3, 100.0),
        ("Hill", 1, 1, 0, 1, 0, 50.0),
        ("Unassigned", 0, 0, 0, 0, 0, 20.0),  # only the invoice without a location
    ]
    assert report["groups"][1]["id"] == two_practitioners["hill"].pk
    assert report["kpis"]["attended"] == 4 and report["kpis"]["revenue"] == 170.0
    assert report["groups"][2]["kpis"]["attendance_rate"] is None


def test_an_unknown_grouping_is_refused(world):
    assert GROUP_BY_CHOICES == ("practitioner", "location")
    with pytest.raises(ValueError, match="group_by"):
        clinic_kpis(world.org_a, **MARCH, group_by="patient")


# --- what cannot be known ------------------------------------------------------------------------
def test_zero_denominators_give_null_rates_never_zero(world):
    org = world.org_a
    empty = march(org)
    rates = (
        "attendance_rate",
        "dna_rate",
        "cancellation_rate",
        "late_cancellation_rate",
        "visit_rebook_rate",
        "patient_rebook_rate",
        "no_future_appointment_rate",
        "pva",
    )
    assert {name: empty[name] for name in rates} == dict.fromkeys(rates, None)
    assert empty["appointments"] == 0 and empty["revenue"] == 0.0
    # Only an early cancellation: no attendance base, but a DNA rate of exactly 0.
    visit(org, patient(org), at("2026-03-10"), cancelled_at=at("2026-03-01"))
    cancelled = march(org)
    assert cancelled["attendance_rate"] is None and cancelled["visit_rebook_rate"] is None
    assert cancelled["dna_rate"] == 0.0 and cancelled["cancellation_rate"] == 1.0


def test_utilisation_and_outreach_conversion_say_why_they_are_missing(world):
    figures = march(world.org_a)
    assert figures["utilisation"] is None and figures["outreach_conversion"] is None
    assert set(figures["unavailable"]) == {"utilisation", "outreach_conversion"} == set(UNAVAILABLE)
    assert all(len(reason) > 20 for reason in figures["unavailable"].values())


def test_every_figure_is_defined(world):
    figures = march(world.org_a)
    assert set(figures) - {"pva_definition", "currency", "unavailable"} == set(KPI_DEFINITIONS)


# --- excluded appointment types ------------------------------------------------------------------
def test_excluded_appointment_types_are_left_out(world):
    org = settings_of(world.org_a, excluded_appointment_type_ids=["class"])
    group_class = baker.make(
        AppointmentType, organization=org, pms="cliniko", external_id="class", name="Pilates"
    )
    standard = baker.make(
        AppointmentType, organization=org, pms="cliniko", external_id="std", name="Standard"
    )
    class_first, class_only, rebooked_into_class, class_missed = (patient(org) for _ in range(4))
    visit(org, class_first, at("2026-02-10"), appointment_type=group_class)
    visit(org, class_first, at("2026-03-05"), appointment_type=standard)  # still their first visit
    visit(org, class_only, at("2026-03-06"), appointment_type=group_class)
    visit(
        org, rebooked_into_class, at("2026-03-07"), cancelled_at=at("2026-03-04"), appointment_type=standard
    )
    visit(
        org,
        rebooked_into_class,
        at("2026-03-14"),
        created=at("2026-03-04", "12:00"),
        appointment_type=group_class,
    )
    visit(org, class_missed, at("2026-03-08"), appointment_type=group_class, did_not_arrive=True)
    figures = march(org)
    expected = {
        "appointments": 2,
        "attended": 1,
        "cancelled": 1,
        "rescheduled": 0,
        "dna": 0,
        "new_patients": 1,
    }
    assert only(figures, expected) == expected


# --- comparison ----------------------------------------------------------------------------------
@pytest.fixture
def two_months(world):
    org = world.org_a
    first, second, missed, newcomer = (patient(org) for _ in range(4))
    visit(org, first, at("2026-02-10"))
    visit(org, second, at("2026-02-12"))
    visit(org, missed, at("2026-02-14"), did_not_arrive=True)
    visit(org, first, at("2026-03-10"))
    visit(org, second, at("2026-03-12"))
    visit(org, newcomer, at("2026-03-14"))
    visit(org, newcomer, at("2026-01-28"), cancelled_at=at("2026-01-20"))  # before both periods
    return org


def test_comparison_with_the_period_before(two_months):
    report = clinic_kpi_comparison(two_months, **MARCH, now=LATER)
    assert report["period"] == {"from": "2026-03-01", "to": "2026-03-31", "days": 31}
    assert report["previous_period"] == {"from": "2026-01-29", "to": "2026-02-28", "days": 31}
    current, previous, change = report["current"], report["previous"], report["changes"]
    assert (current["attended"], current["new_patients"], current["dna"]) == (3, 1, 0)
    assert (previous["attended"], previous["new_patients"], previous["dna"]) == (2, 2, 1)
    assert change["attended"] == {"change": 1, "relative_change": 0.5}
    assert change["new_patients"] == {"change": -1, "relative_change": -0.5}
    assert change["dna"] == {"change": -1, "relative_change": -1.0}
    assert change["dna_rate"] == {"change": -0.3333, "relative_change": -1.0}  # 0 vs 1 / 3
    assert change["attendance_rate"] == {"change": 0.3333, "relative_change": 0.5}  # 1 vs 2 / 3
    assert change["pva"] == {"change": 2.0, "relative_change": 2.0}  # 3 vs 1
    assert change["revenue"] == {"change": 0.0, "relative_change": None}
    assert "currency" not in change and "unavailable" not in change
    # The current period's figures are the ones the period alone gives.
    assert current == clinic_kpis(two_months, **MARCH, now=LATER)["kpis"]


def test_comparison_by_group_carries_both_periods(two_months):
    report = clinic_kpi_comparison(two_months, **MARCH, group_by="practitioner", now=LATER)
    [unassigned] = report["groups"]
    assert unassigned["name"] == "Unassigned"
    assert unassigned["current"]["attended"] == 3 and unassigned["previous"]["attended"] == 2


def test_comparison_groups_are_in_name_order_whichever_period_they_appear_in(world, two_practitioners):
    report = clinic_kpi_comparison(world.org_a, **MARCH, group_by="practitioner", now=LATER)
    assert [g["name"] for g in report["groups"]] == ["Ana Lee", "Dr Ben", "Unassigned"]
    # Ben appears in March only; the walk-in's booking (made 25 February) is unassigned.
    assert report["groups"][1]["previous"]["appointments"] == 0
    assert report["groups"][2]["previous"]["bookings"] == 1


def test_changes_of_unknown_figures_are_null():
    assert changes({"dna_rate": 0.25, "pva": None}, {"dna_rate": None, "pva": 2.0}) == {
        "dna_rate": {"change": None, "relative_change": None},
        "pva": {"change": None, "relative_change": None},
    }


def test_periods():
    march_period = Period(**MARCH)
    assert march_period.days == 31 and march_period.previous() == Period(date(2026, 1, 29), date(2026, 2, 28))
    assert Period.ending(date(2026, 3, 31), days=30) == Period(date(2026, 3, 2), date(2026, 3, 31))
    with pytest.raises(ValueError):
        Period(date(2026, 3, 2), date(2026, 3, 1))


# --- series --------------------------------------------------------------------------------------
def test_the_daily_series_has_one_point_per_local_day(world):
    """Across the end of daylight saving (5 April 2026, a 25-hour day in Sydney)."""
    org = world.org_a
    late_visit, booked_late, missed, cancelled = (patient(org) for _ in range(4))
    visit(org, late_visit, at("2026-04-05", "23:30"))
    visit(org, booked_late, at("2026-04-06"), created=at("2026-04-04", "23:50"))
    visit(org, missed, at("2026-04-06", "09:00"), did_not_arrive=True)
    visit(org, cancelled, at("2026-04-07"), cancelled_at=at("2026-04-06", "20:00"))
    invoice(org, "2026-04-07", "120.00")
    days = clinic_kpi_series(org, start=date(2026, 4, 3), end=date(2026, 4, 7), now=LATER)
    zero = {"bookings": 0, "attended": 0, "cancellations": 0, "dnas": 0, "rescheduled": 0, "revenue": 0.0}
    zero |= {"new_patients": 0, "reactivations": 0}
    assert days == [
        {**zero, "date": "2026-04-03"},
        {**zero, "date": "2026-04-04", "bookings": 1},
        {**zero, "date": "2026-04-05", "attended": 1, "new_patients": 1},
        {**zero, "date": "2026-04-06", "attended": 1, "new_patients": 1, "dnas": 1},
        {**zero, "date": "2026-04-07", "cancellations": 1, "revenue": 120.0},
    ]
    quarter = clinic_kpi_series(org, start=date(2026, 1, 1), end=date(2026, 3, 31), now=LATER)
    assert len(quarter) == 90 and {d["attended"] for d in quarter} == {0}


# --- cohorts -------------------------------------------------------------------------------------
def test_cohort_retention_of_the_periods_new_patients(world):
    org, now = world.org_a, at("2026-05-15", "12:00")
    january_a, january_b, february, returning = (patient(org) for _ in range(4))
    _history(org, january_a, "2026-01-10", "2026-02-10", "2026-04-10")
    _history(org, january_b, "2026-01-20", "2026-01-27", "2026-03-05")
    _history(org, february, "2026-02-05", "2026-03-05", "2026-04-01")
    visit(org, february, at("2026-05-20"))  # booked, not attended yet
    _history(org, returning, "2025-12-01", "2026-01-15", "2026-02-15")
    report = clinic_kpis(org, start=date(2026, 1, 1), end=date(2026, 2, 28), with_cohorts=True, now=now)

    def month(returned: list[int | None], shares: list[float | None], complete: int) -> list[dict[str, Any]]:
        return [
            {"months_after": k, "returned": r, "share": s, "complete": k <= complete}
            for k, (r, s) in enumerate(zip(returned, shares, strict=True), start=1)
        ]

    assert report["cohorts"] == [
        {
            "month": "2026-01",
            "new_patients": 2,
            "retention": month([1, 1, 1, 0, None, None], [0.5, 0.5, 0.5, 0.0, None, None], complete=3),
        },
        {
            "month": "2026-02",
            "new_patients": 1,
            "retention": month([1, 1, 0, None, None, None], [1.0, 1.0, 0.0, None, None, None], complete=2),
        },
    ]
    assert "cohorts" not in clinic_kpis(org, start=date(2026, 1, 1), end=date(2026, 2, 28), now=now)


# --- cost ----------------------------------------------------------------------------------------
def test_queries_do_not_grow_with_data_or_groups(world, two_practitioners):
    org = world.org_a

    def queries(**options: Any) -> int:
        with CaptureQueriesContext(connection) as captured:
            clinic_kpi_comparison(org, **MARCH, now=LATER, **options)
        return len(captured.captured_queries)

    few = queries(group_by="practitioner")
    for n in range(20):
        who = patient(org)
        visit(
            org,
            who,
            at("2026-03-20"),
            practitioner=baker.make(Practitioner, organization=org, pms="cliniko", external_id=f"x{n}"),
        )
    assert queries(group_by="practitioner") == few == queries() == queries(group_by="location")


# --- against a plain reading of the definitions --------------------------------------------------
class Reference:
    """retention-metrics.md read literally, one appointment at a time: the statement's sweep,
    its lookups and its shortcuts must give the same counts on any clinic."""

    def __init__(
        self, appointments: list[Appointment], *, now: datetime, late: timedelta, visits: int
    ) -> None:
        self.rows = [a for a in appointments if a.patient_id and not a.archived_at and not a.deleted_at]
        self.now, self.late, self.visits = now, late, visits

    @staticmethod
    def created(a: Appointment) -> datetime:
        return a.pms_created_at or datetime.min.replace(tzinfo=UTC)

    def outcome(self, a: Appointment) -> str:
        from patients.outcomes import appointment_outcome

        return appointment_outcome(
            a, now=self.now, late_cancellation_hours=int(self.late.total_seconds() // 3600)
        )

    def held(self, patient_id: int, t: datetime, *, strictly: bool = False) -> bool:
        return any(
            h.patient_id == patient_id
            and (self.created(h) < t if strictly else self.created(h) <= t)
            and h.starts_at > t
            and (h.cancelled_at is None or h.cancelled_at > t)
            for h in self.rows
        )

    @staticmethod
    def end_of_day(moment: datetime) -> datetime:
        day = moment.astimezone(SYDNEY).date() + timedelta(days=1)
        return datetime(day.year, day.month, day.day, tzinfo=SYDNEY)

    def usual(self, before: list[Appointment], fallback: float) -> float:
        starts = sorted(a.starts_at for a in before)[-self.visits :]
        gaps = sorted((b - a).total_seconds() / 86400 for a, b in zip(starts, starts[1:], strict=False))
        if len(gaps) < 2:
            return fallback
        middle = len(gaps) // 2
        return gaps[middle] if len(gaps) % 2 else (gaps[middle - 1] + gaps[middle]) / 2

    def counts(self, start: datetime, end: datetime, *, fallback: float = 21.0) -> dict[str, int]:
        def within(moment: datetime | None) -> bool:
            return moment is not None and start <= moment < end

        figures = dict.fromkeys(
            ("appointments", "attended", "pending", "dna", "cancelled", "late_cancelled", "rescheduled"), 0
        )
        figures.update(visits_rebooked=0, bookings=0)
        attended_by, rebooked_by = set(), set()
        for a in (a for a in self.rows if within(a.starts_at)):
            outcome = self.outcome(a)
            figures["appointments"] += 1
            if outcome == "booked":
                figures["pending"] += 1
                continue
            moment = a.cancelled_at if a.cancelled_at else a.starts_at
            flag = self.held(a.patient_id, self.end_of_day(moment))
            if outcome == "attended":
                figures["attended"] += 1
                figures["visits_rebooked"] += flag
                attended_by.add(a.patient_id)
            elif flag:
                figures["rescheduled"] += 1
            else:
                figures["dna" if outcome == "dna" else "cancelled"] += 1
                figures["late_cancelled"] += outcome == "late_cancelled"
        rebooked_by = {p for p in attended_by if self.held(p, end)}
        first_visit: dict[int, datetime] = {}
        for a in self.rows:
            if self.outcome(a) == "attended":
                first_visit[a.patient_id] = min(first_visit.get(a.patient_id, a.starts_at), a.starts_at)
        lapses = set()
        for b in sorted(self.rows, key=lambda a: (self.created(a), a.pk)):
            t = b.pms_created_at
            local = SYDNEY
            if not within(t) or b.starts_at.astimezone(local).date() < t.astimezone(local).date():
                continue
            figures["bookings"] += 1
            if self.outcome(b) not in ("attended", "booked") or self.held(b.patient_id, t, strictly=True):
                continue
            before = [
                v
                for v in self.rows
                if v.patient_id == b.patient_id
                and v.pk != b.pk
                and v.starts_at <= t
                and v.cancelled_at is None
                and not v.did_not_arrive
            ]
            if not before:
                continue
            last = max(v.starts_at for v in before)
            days = (t.astimezone(local).date() - last.astimezone(local).date()).days
            ratio = days / self.usual(before, fallback)
            if days > 0 and ratio > 1.5 and (ratio > 3 or days >= 60):
                lapses.add((b.patient_id, last))
        return {
            **figures,
            "patients_attended": len(attended_by),
            "patients_rebooked": len(rebooked_by),
            "new_patients": sum(within(first) for first in first_visit.values()),
            "reactivations": len(lapses),
        }


def _random_clinic(org: Organization, seed: int) -> list[Appointment]:
    import random

    rng = random.Random(seed)
    made = []
    for _ in range(40):
        who = patient(org)
        day = date(2025, 12, 15) + timedelta(days=rng.randrange(110))
        for _ in range(rng.randrange(1, 12)):
            day += timedelta(days=rng.choice([1, 3, 7, 7, 14, 14, 21, 45, 80]))
            starts = at(day.isoformat(), f"{rng.randrange(7, 23):02d}:{rng.choice([0, 15, 30, 45]):02d}")
            created = starts - timedelta(
                hours=rng.choice([-3, 1, 20, 30, 72, 150, 400, 900]), minutes=rng.randrange(60)
            )
            fate = rng.random()
            fields: dict[str, Any] = {}
            if fate < 0.2:
                fields["cancelled_at"] = created + (starts - created) * rng.random()
            elif fate < 0.3:
                fields["did_not_arrive"] = True
            elif fate < 0.33:
                fields["archived_at"] = starts
            made.append(visit(org, who, starts, created=None if fate > 0.97 else created, **fields))
    return made


@pytest.mark.parametrize("seed", range(8))
def test_the_statement_agrees_with_the_definitions_read_literally(world, seed):
    org, now = world.org_a, at("2026-04-20", "12:00")
    appointments = _random_clinic(org, seed)
    reference = Reference(appointments, now=now, late=timedelta(hours=24), visits=5)
    report = clinic_kpi_comparison(org, start=date(2026, 4, 1), end=date(2026, 4, 30), now=now)
    for name, start, end in (
        ("previous", "2026-03-02", "2026-04-01"),
        ("current", "2026-04-01", "2026-05-01"),
    ):
        expected = reference.counts(at(start, "00:00"), at(end, "00:00"))
        assert only(report[name], expected) == expected, name


def test_the_statements_outcome_is_the_python_rule(world):
    from patients.kpis import sql
    from patients.outcomes import appointment_outcome

    org, now, starts = world.org_a, at("2026-03-10", "12:00"), at("2026-03-10", "10:00")
    who = patient(org)
    cases = [
        visit(org, who, starts),
        visit(org, who, starts + timedelta(hours=4)),
        visit(org, who, starts + timedelta(hours=4), patient_arrived=True),
        visit(org, who, starts, did_not_arrive=True),
        visit(org, who, starts, cancelled_at=starts - timedelta(hours=24)),
        visit(org, who, starts, cancelled_at=starts - timedelta(hours=23, minutes=59)),
        visit(org, who, starts, cancelled_at=starts + timedelta(hours=1), did_not_arrive=True),
    ]
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT a.id, {sql.outcome('a')} FROM patients_appointment a WHERE a.organization_id = %(org)s",
            {"org": org.pk, "now": now, "late": timedelta(hours=24)},
        )
        found = dict(cursor.fetchall())
    assert found == {a.pk: appointment_outcome(a, now=now) for a in cases}
    assert set(found.values()) == {"attended", "booked", "dna", "cancelled", "late_cancelled"}
