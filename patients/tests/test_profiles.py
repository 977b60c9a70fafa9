"""Profiles on hand-built clinics whose right answers are known (retention-metrics.md)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from itertools import count
from zoneinfo import ZoneInfo

import pytest
from model_bakery import baker

from clinics.rls import tenant_scope
from patients.models import Appointment, AppointmentType, Invoice, Patient, PatientProfile, ProfileBaseline
from patients.outcomes import appointment_outcome
from patients.profiles import profiles_refresh, profiles_refresh_all, profiles_refresh_expired

pytestmark = pytest.mark.django_db

SYDNEY = ZoneInfo("Australia/Sydney")
NOW = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)  # 13:00 in Sydney
TODAY = NOW.astimezone(SYDNEY).date()
_ids = count(1)


def local(day: date, hour: int = 10, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), SYDNEY)


def days_ago(n: int, hour: int = 10) -> datetime:
    return local(TODAY - timedelta(days=n), hour)


def patient(org, **fields) -> Patient:
    return baker.make(Patient, organization=org, pms="cliniko", external_id=f"p{next(_ids)}", **fields)


def visit(
    org, who: Patient, starts_at: datetime, *, created_at: datetime | None = None, kind=None, **fields
) -> Appointment:
    return baker.make(
        Appointment,
        organization=org,
        pms="cliniko",
        external_id=f"a{next(_ids)}",
        patient=who,
        starts_at=starts_at,
        ends_at=starts_at + timedelta(minutes=30),
        appointment_type=kind,
        pms_created_at=created_at or starts_at - timedelta(days=7),
        **fields,
    )


def profile_of(org, who: Patient) -> PatientProfile:
    with tenant_scope(org):
        profiles_refresh(org, patient_ids=[who.pk], now=NOW)
        return PatientProfile.objects.for_org(org).get(patient=who)


def test_a_reschedule_is_not_a_cancellation(world):
    org = world.org_a
    who = patient(org)
    visit(org, who, days_ago(30))
    cancelled_on = days_ago(3, hour=9)
    visit(org, who, days_ago(2), cancelled_at=cancelled_on)  # cancelled three days ago...
    visit(
        org, who, local(TODAY + timedelta(days=5)), created_at=cancelled_on + timedelta(hours=2)
    )  # ...rebooked that day
    other = patient(org)
    visit(org, other, days_ago(30))
    visit(org, other, days_ago(2), cancelled_at=days_ago(6, hour=9))  # cancelled, rebooked only later
    visit(org, other, local(TODAY + timedelta(days=5)), created_at=days_ago(4))
    rescheduled, cancelled = profile_of(org, who), profile_of(org, other)
    assert (rescheduled.rescheduled_count, rescheduled.cancelled_count) == (1, 0)
    assert (cancelled.rescheduled_count, cancelled.cancelled_count) == (0, 1)
    assert rescheduled.upcoming_count == 1 and rescheduled.lifecycle_stage == "active"


def test_a_patient_with_a_future_booking_is_active_however_long_ago_they_came(world):
    org = world.org_a
    who = patient(org)
    visit(org, who, days_ago(400))
    visit(org, who, local(TODAY + timedelta(days=3)))
    profile = profile_of(org, who)
    assert profile.lifecycle_stage == "active" and profile.upcoming_count == 1
    assert profile.next_appointment_at == local(TODAY + timedelta(days=3))
    assert profile.valid_until == local(TODAY + timedelta(days=3))  # when that booking passes


def test_a_dna_then_a_rebooking(world):
    org = world.org_a
    same_day, next_day = patient(org), patient(org)
    for who, rebooked_after in ((same_day, timedelta(hours=4)), (next_day, timedelta(days=1, hours=4))):
        visit(org, who, days_ago(40))
        missed = visit(org, who, days_ago(10), did_not_arrive=True)
        visit(org, who, local(TODAY + timedelta(days=4)), created_at=missed.starts_at + rebooked_after)
    assert (profile_of(org, same_day).dna_count, profile_of(org, same_day).rescheduled_count) == (0, 1)
    late = profile_of(org, next_day)
    assert (late.dna_count, late.rescheduled_count, late.dna_90d) == (1, 0, 1)
    assert {r["code"] for r in late.risk_reasons} == {"recent_dna"}  # booked: no "no booking" points


@pytest.mark.parametrize(
    ("days", "stage", "engagement"),
    [
        (10, "active", "highly_engaged"),
        (20, "active", "moderately_engaged"),
        (30, "due", "moderately_engaged"),
        (45, "lapsing", "low_engagement"),
        (61, "lapsing", "low_engagement"),
        (181, "lapsed", "disengaged"),
        (366, "dormant", "disengaged"),
    ],
)
def test_stages_with_a_usual_14_day_interval(world, days, stage, engagement):
    org = world.org_a
    who = patient(org)
    for n in range(5):  # five visits, every 14 days, the last `days` ago
        visit(org, who, days_ago(days + 14 * n))
    profile = profile_of(org, who)
    assert profile.expected_interval_days == 14 and profile.interval_source == "patient"
    assert (profile.lifecycle_stage, profile.engagement_level) == (stage, engagement)
    assert profile.gap_ratio == pytest.approx(days / 14)


def test_a_lapse_at_day_61_waits_for_a_long_usual_interval(world):
    org = world.org_a
    who = patient(org)
    for n in range(5):
        visit(org, who, days_ago(61 + 45 * n))
    profile = profile_of(org, who)
    assert profile.lifecycle_stage == "active"  # gap ratio 1.36: not yet due for a 45-day rhythm
    # Due from day 68 (68 / 45 > 1.5): in a week.
    assert profile.valid_until == datetime.combine(TODAY + timedelta(days=7), time(0), SYDNEY)


def test_a_fortnightly_rhythm_stays_14_days_across_daylight_saving(world):
    """Sydney's clocks went forward on 4 October 2026: 9 am on 2 October to 9 am on 16 October is
    an hour short of 14 days elapsed, and 14 days on the clinic's clock, which is how the days
    since the last visit are counted too."""
    org = world.org_a
    who, regulars = patient(org), [patient(org) for _ in range(10)]  # 22 gaps: a clinic median
    for day in (date(2026, 9, 18), date(2026, 10, 2), date(2026, 10, 16)):  # 35 days ago the last
        visit(org, who, local(day, 9))
        for regular in regulars:
            visit(org, regular, local(day, 9))
    with tenant_scope(org):
        profiles_refresh_all(org, now=NOW)
        baseline = ProfileBaseline.objects.get(organization=org)
    profile = profile_of(org, who)
    assert profile.expected_interval_days == 14 and profile.last_gap_days == 14
    assert profile.gap_ratio == 35 / 14 and profile.lifecycle_stage == "due"
    assert baseline.median_interval_days == 14 and baseline.interval_gaps == 22


def test_value_from_invoices_or_from_prices(world):
    org = world.org_a
    standard = baker.make(
        AppointmentType,
        organization=org,
        pms="cliniko",
        external_id="t1",
        name="Standard",
        price=Decimal("95.00"),
    )
    invoiced, priced, nothing = patient(org), patient(org), patient(org)
    for who in (invoiced, priced):
        for n in (10, 24, 38):
            visit(org, who, days_ago(n), kind=standard)
    for amount in ("80.00", "80.00", "-20.00"):  # a credit counts against
        baker.make(
            Invoice,
            organization=org,
            pms="cliniko",
            external_id=f"i{next(_ids)}",
            patient=invoiced,
            total_amount=Decimal(amount),
        )
    baker.make(
        Invoice,
        organization=org,
        pms="cliniko",
        external_id="gone",
        patient=invoiced,
        total_amount=Decimal("500.00"),
        archived_at=NOW,
    )
    assert (profile_of(org, invoiced).realised_value, profile_of(org, invoiced).value_source) == (
        Decimal("140.00"),
        "invoices",
    )
    assert (profile_of(org, priced).realised_value, profile_of(org, priced).value_source) == (
        Decimal("285.00"),
        "prices",
    )
    none = profile_of(org, nothing)
    assert (none.realised_value, none.value_source, none.lifecycle_stage) == (
        Decimal("0"),
        "none",
        "never_converted",
    )
    assert none.recommended_action == "first_visit_invite" and none.contact_success_prediction == "low"
    predicted = profile_of(org, priced)
    # Active (10 days, usual 14): a year of visits at 95 each.
    assert predicted.predicted_value == Decimal(round(365 / 14 * 95, 2)).quantize(Decimal("0.01"))
    assert predicted.estimated_lifetime_value == predicted.realised_value + predicted.predicted_value


def test_risk_score_reasons_and_priority(world):
    org = world.org_a
    who = patient(org)
    for n in range(4):
        visit(org, who, days_ago(50 + 14 * n))
    visit(org, who, days_ago(45), did_not_arrive=True)
    # Booked after the missed visit (so that DNA was no reschedule), then cancelled late.
    visit(org, who, days_ago(40), created_at=days_ago(44), cancelled_at=days_ago(40, hour=2))
    profile = profile_of(org, who)
    codes = {r["code"]: r for r in profile.risk_reasons}
    assert set(codes) == {
        "overdue",
        "no_future_booking",
        "recent_dna",
        "recent_late_cancellation",
        "unrebooked_cancellation",
    }
    assert codes["overdue"]["days"] == 50 and codes["overdue"]["usual"] == 14
    assert profile.churn_risk_score == 40 + 20 + 10 + 5 + 10 and profile.churn_risk == "critical"
    assert profile.action_priority == 1 and profile.recommended_action == "follow_up_missed"
    assert profile.value_at_risk == (profile.predicted_value * Decimal("0.85")).quantize(Decimal("0.01"))


def test_archived_deleted_and_excluded_appointments_do_not_count(world):
    org = world.org_a
    group = baker.make(
        AppointmentType, organization=org, pms="cliniko", external_id="class", name="Pilates class"
    )
    org.retention_settings = {**org.retention.to_json(), "excluded_appointment_type_ids": ["class"]}
    org.save()
    who = patient(org)
    visit(org, who, days_ago(5), kind=group)
    visit(org, who, days_ago(6), archived_at=NOW)
    visit(org, who, days_ago(7), deleted_at=NOW)
    visit(org, who, days_ago(20))
    profile = profile_of(org, who)
    assert profile.total_appointments == 1 and profile.last_attended_at == days_ago(20)


def test_the_sql_outcomes_agree_with_the_python_rule(world):
    org = world.org_a
    who = patient(org)
    appointments = [
        visit(org, who, days_ago(3)),
        visit(org, who, days_ago(2), did_not_arrive=True),
        visit(org, who, days_ago(1), cancelled_at=days_ago(1, hour=2)),
        visit(org, who, days_ago(1, hour=18), cancelled_at=days_ago(9)),
        visit(org, who, local(TODAY + timedelta(days=2))),
        visit(org, who, local(TODAY + timedelta(days=3)), patient_arrived=True),
    ]
    outcomes = [appointment_outcome(a, now=NOW) for a in appointments]
    profile = profile_of(org, who)
    assert profile.attended_count == outcomes.count("attended") == 2
    assert profile.upcoming_count == outcomes.count("booked") == 1
    # The DNA and both cancellations come while later bookings are held: all three reschedules.
    missed = (
        profile.dna_count + profile.cancelled_count + profile.late_cancelled_count + profile.rescheduled_count
    )
    assert missed == len(outcomes) - 3 == 3 and profile.rescheduled_count == 3


def test_an_expired_profile_is_recomputed_on_the_day_it_changes(world):
    org = world.org_a
    who = patient(org)
    for n in range(5):
        visit(org, who, days_ago(19 + 14 * n))
    profile = profile_of(org, who)
    assert profile.lifecycle_stage == "active" and profile.valid_until == datetime.combine(
        TODAY + timedelta(days=3), time(0), SYDNEY
    )  # day 22 > 1.5 x 14
    assert profiles_refresh_expired(org, now=NOW).patients == 0
    later = profile.valid_until + timedelta(seconds=1)
    assert profiles_refresh_expired(org, now=later).patients == 1
    with tenant_scope(org):
        assert PatientProfile.objects.get(patient=who).lifecycle_stage == "due"


def test_a_full_refresh_covers_every_patient_and_the_baseline_fills_in(world):
    org = world.org_a
    regulars, newcomer = [patient(org) for _ in range(5)], patient(org)
    for regular in regulars:  # 5 patients x 4 recent gaps of 10 days: enough for a clinic median
        for n in range(6):
            visit(org, regular, days_ago(7 + 10 * n))
    visit(org, newcomer, days_ago(12))
    with tenant_scope(org):
        result = profiles_refresh_all(org, now=NOW)
        profiles = {p.patient_id: p for p in PatientProfile.objects.for_org(org)}
    assert result.patients == 6 and set(profiles) == {*(r.pk for r in regulars), newcomer.pk}
    assert profiles[newcomer.pk].interval_source == "organization"
    assert profiles[newcomer.pk].expected_interval_days == 10
    with tenant_scope(world.org_b):
        assert not PatientProfile.objects.for_org(world.org_b).exists()  # the other tenant: untouched


@pytest.mark.django_db(transaction=True)  # two connections, each its own transaction
def test_one_expiry_refresh_at_a_time_others_wait_or_return_busy(world):
    import threading

    from django.db import connection, transaction

    org = world.org_a
    who = patient(org)
    for n in range(5):
        visit(org, who, days_ago(19 + 14 * n))
    later = profile_of(org, who).valid_until + timedelta(seconds=1)
    waited, entered = [], threading.Event()

    def elsewhere(**options):
        try:
            return profiles_refresh_expired(org, now=later, **options)
        finally:
            connection.close()  # this thread's

    def waiting_reader():
        entered.set()
        waited.append(elsewhere().patients)

    with transaction.atomic():  # the first reader's request, still open
        assert profiles_refresh_expired(org, now=later).patients == 1
        # A reader of the answer cache does not wait for the rest of this request.
        result = [None]
        reader = threading.Thread(target=lambda: result.__setitem__(0, elsewhere(wait=False)))
        reader.start()
        reader.join(10)
        assert result[0].busy and result[0].patients == 0
        # Others wait for the transaction to end...
        reader = threading.Thread(target=waiting_reader)
        reader.start()
        assert entered.wait(10)
        reader.join(0.5)
        assert reader.is_alive() and waited == []
    reader.join(10)
    assert waited == [0]  # ...and then find nothing left to recompute
    assert not profiles_refresh_expired(org, now=later, wait=False).busy


@pytest.mark.django_db(transaction=True)  # the parts commit on connections of their own
def test_a_large_full_refresh_runs_in_parts_on_several_connections_and_agrees_with_one(
    world, monkeypatch, settings
):
    import threading

    from django.db import connection

    from patients import profiles

    org = world.org_a
    people = [patient(org) for _ in range(7)]
    for n, who in enumerate(people):
        for k in range(n % 4 + 1):
            visit(org, who, days_ago(5 + 9 * k + n))
    visit(org, people[0], days_ago(-3))  # booked ahead
    settings.PROFILE_REFRESH_WORKERS = 1
    whole = profiles_refresh_all(org, now=NOW)
    with tenant_scope(org):
        at_once = {p.patient_id: _judged(p) for p in PatientProfile.objects.for_org(org)}
        PatientProfile.objects.for_org(org).delete()

    threads = set()
    statement = profiles._refresh_statement

    def recorded(params, patient_ids):
        threads.add(threading.current_thread().name)
        return statement(params, patient_ids)

    monkeypatch.setattr(profiles, "_refresh_statement", recorded)
    monkeypatch.setattr(profiles, "PARALLEL_MIN_PATIENTS", 3)
    settings.PROFILE_REFRESH_WORKERS = 3
    split = profiles_refresh_all(org, now=NOW)
    with tenant_scope(org):
        in_parts = {p.patient_id: _judged(p) for p in PatientProfile.objects.for_org(org)}
    assert whole.patients == split.patients == 7
    assert len(threads) == 3 and all(name.startswith("profiles") for name in threads)
    assert in_parts == at_once and set(in_parts) == {p.pk for p in people}
    assert not connection.in_atomic_block

    # Inside a caller's transaction the parts could not commit apart: one statement.
    threads.clear()
    from django.db import transaction

    with transaction.atomic():
        assert profiles_refresh_all(org, now=NOW).patients == 7
    assert threads == {threading.current_thread().name}


def _judged(profile: PatientProfile) -> tuple:
    return (
        profile.lifecycle_stage,
        profile.churn_risk_score,
        profile.attended_count,
        profile.upcoming_count,
        profile.expected_interval_days,
        profile.estimated_lifetime_value,
    )
