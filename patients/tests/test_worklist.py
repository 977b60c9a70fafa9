"""The worklist selectors on hand-built clinics whose right answers are known, above all the
performance figures, which are counted as of the moments things happened."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from itertools import count
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from model_bakery import baker

from clinics.rls import tenant_scope
from patients import worklist
from patients.models import Appointment, AppointmentType, Invoice, Patient, PatientProfile
from patients.outcomes import Outcome
from patients.profiles import profiles_refresh_all

pytestmark = pytest.mark.django_db

SYDNEY = ZoneInfo("Australia/Sydney")
NOW = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)  # 13:00 in Sydney
TODAY = NOW.astimezone(SYDNEY).date()
_ids = count(1)


def day(days_ago: int, hour: int = 10) -> datetime:
    """`hour` o'clock in Sydney, `days_ago` days before today (negative: ahead)."""
    return datetime.combine(TODAY - timedelta(days=days_ago), time(hour), SYDNEY)


def patient(org: Any, name: str) -> Patient:
    return baker.make(Patient, organization=org, pms="cliniko", external_id=f"p{next(_ids)}", first_name=name)


def appointment(
    org: Any, who: Patient, starts_days_ago: int, *, made_days_ago: int | None = None, **fields: Any
):
    """An appointment at 10:00; booked the day before unless `made_days_ago` says (at 11:00)."""
    made = day(made_days_ago, 11) if made_days_ago is not None else day(starts_days_ago + 1)
    start = day(starts_days_ago)
    return baker.make(
        Appointment,
        organization=org,
        pms="cliniko",
        external_id=f"a{next(_ids)}",
        patient=who,
        starts_at=start,
        ends_at=start + timedelta(minutes=30),
        pms_created_at=made,
        **fields,
    )


def visits(org: Any, who: Patient, *days_ago: int) -> None:
    for days in days_ago:
        appointment(org, who, days)


def refresh(org: Any) -> None:
    with tenant_scope(org):
        profiles_refresh_all(org, now=NOW)


@pytest.fixture
def history(world: Any) -> dict[str, Patient]:
    """Org A, as of NOW. "made" is when a booking was created; visits were attended.

    In the last 30 days (P starts at midnight 29 days ago):
    - returner: visits 178/164/150 days ago (usual 14); a booking made 10 days ago for 3 days
      ahead: 140 days without a visit, reactivated from lapsing;
    - weekly: visits 60/53/46/39 days ago (usual 7); made 10 days ago for 4 ahead: 29 days is
      over 3 usual intervals, lapsing although under L_soft (60): reactivated from lapsing;
    - regular: visits 58/44/30 days ago (usual 14); made 2 days ago: 28 days is only due;
    - multi: visits 278/264/250 days ago; three bookings made together 5 days ago: one
      reactivation (from lapsed, 245 days), counted once;
    - came_back: one visit 200 days ago (lapsed 20 days ago, at its 180th day); made 12 days
      ago, attended 5 days ago: lapsed in P and reactivated from lapsed (188 days);
    - dormant: one visit 400 days ago, made 3 days ago: reactivated from dormant;
    - cancelled: one visit 100 days ago, made 8 days ago then cancelled: no reactivation;
    - holder: one visit 90 days ago, holding a booking (made 120 days ago) for 20 days ahead;
      made another 6 days ago: not lapsing while holding one;
    - lapser: one visit 190 days ago, nothing since: lapsed 10 days ago;
    - old_lapser: one visit 220 days ago: lapsed 40 days ago (in 90 days, not 30);
    - classgoer: one visit 100 days ago, then a class (excluded type) made 4 days ago.
    Org B: a dormant patient who booked yesterday (never in org A's figures)."""
    org = world.org_a
    org.retention_settings = {**org.retention.to_json(), "excluded_appointment_type_ids": ["class"]}
    org.save()
    group = baker.make(AppointmentType, organization=org, pms="cliniko", external_id="class", name="Pilates")
    people = {name: patient(org, name) for name in (
        "returner", "weekly", "regular", "multi", "came_back", "dormant", "cancelled", "holder", "lapser",
        "old_lapser", "classgoer",
    )}  # fmt: skip
    visits(org, people["returner"], 178, 164, 150)
    appointment(org, people["returner"], -3, made_days_ago=10)
    visits(org, people["weekly"], 60, 53, 46, 39)
    appointment(org, people["weekly"], -4, made_days_ago=10)
    visits(org, people["regular"], 58, 44, 30)
    appointment(org, people["regular"], -12, made_days_ago=2)
    visits(org, people["multi"], 278, 264, 250)
    for ahead in (2, 9, 16):
        appointment(org, people["multi"], -ahead, made_days_ago=5)
    visits(org, people["came_back"], 200)
    appointment(org, people["came_back"], 5, made_days_ago=12)
    visits(org, people["dormant"], 400)
    appointment(org, people["dormant"], -4, made_days_ago=3)
    visits(org, people["cancelled"], 100)
    appointment(org, people["cancelled"], -6, made_days_ago=8, cancelled_at=day(2))
    visits(org, people["holder"], 90)
    appointment(org, people["holder"], -20, made_days_ago=120)
    appointment(org, people["holder"], -5, made_days_ago=6)
    visits(org, people["lapser"], 190)
    visits(org, people["old_lapser"], 220)
    visits(org, people["classgoer"], 100)
    appointment(org, people["classgoer"], -3, made_days_ago=4, appointment_type=group)
    foreign = patient(world.org_b, "foreign")
    visits(world.org_b, foreign, 400)
    appointment(world.org_b, foreign, -2, made_days_ago=1)
    refresh(org)
    refresh(world.org_b)
    return people


def figures(org: Any, timeframe: str) -> dict[str, Any]:
    with tenant_scope(org):
        return worklist.reengagement_performance(org, timeframe=timeframe, now=NOW)


def test_performance_over_thirty_days(world, history):
    result = figures(world.org_a, "last_30_days")
    assert {k: result[k] for k in worklist._PERFORMANCE_FIGURES} == {
        # returner, weekly, regular, multi x3, came_back, dormant, cancelled, holder's second
        "bookings_made": 10,
        "patients_booking": 8,
        "bookings_made_since_cancelled": 1,
        "reactivations": 5,
        "reactivated_patients": 5,
        "reactivated_from_lapsing": 2,
        "reactivated_from_lapsed": 2,
        "reactivated_from_dormant": 1,
        "patients_lapsed": 2,
    }
    assert result["outreach_tracked"] is False and result["outreach_attempts"] == 0
    assert result["outreach_success_rate"] is None and result["outreach_conversions"] is None


def test_performance_over_seven_days(world, history):
    result = figures(world.org_a, "last_7_days")
    # multi x3, regular, holder's second, dormant (cancelled's was made 8 days ago).
    assert (result["bookings_made"], result["patients_booking"], result["bookings_made_since_cancelled"]) == (
        6,
        4,
        0,
    )
    assert (
        result["reactivations"],
        result["reactivated_from_lapsed"],
        result["reactivated_from_dormant"],
    ) == (
        2,
        1,
        1,
    )
    assert result["patients_lapsed"] == 0


def test_performance_over_ninety_days(world, history):
    result = figures(world.org_a, "last_90_days")
    # Also regular's three visits and weekly's four, booked the day before each, in the 90 days.
    assert result["bookings_made"] == 17 and result["reactivations"] == 5
    # Also old_lapser (40 days ago) and multi (70 days ago; their earlier visits were followed
    # by the next one long before their 180th day, so they never lapsed).
    assert result["patients_lapsed"] == 4


def test_past_figures_do_not_change_when_a_lapsed_patient_returns(world, history):
    before = figures(world.org_a, "last_30_days")
    appointment(world.org_a, history["lapser"], -1, made_days_ago=0)
    refresh(world.org_a)
    after = figures(world.org_a, "last_30_days")
    assert after["patients_lapsed"] == before["patients_lapsed"] == 2
    assert after["reactivated_from_lapsed"] == before["reactivated_from_lapsed"] + 1


def test_a_course_booked_in_one_go_is_one_reactivation_and_a_pending_one_counts(world, history):
    result = figures(world.org_a, "last_7_days")
    multi = history["multi"]
    assert Appointment.objects.filter(patient=multi, pms_created_at__gte=day(5, 0)).count() == 3
    assert result["reactivated_patients"] == 2  # multi and dormant, both still pending


def test_the_period_follows_the_clinics_calendar(world):
    org = world.org_a
    month = worklist.performance_period(org, timeframe="last_6_months", now=NOW)
    assert (month.first_day, month.last_day) == (date(2026, 5, 21), TODAY)
    week = worklist.performance_period(org, timeframe="last_7_days", now=NOW)
    assert week.start == datetime(2026, 11, 14, 0, 0, tzinfo=SYDNEY) and week.end == NOW
    late = datetime(2026, 3, 31, 13, 30, tzinfo=UTC)  # 00:30 on 1 April in Sydney
    assert worklist.performance_period(org, timeframe="last_6_months", now=late).first_day == date(
        2025, 10, 2
    )
    assert worklist._months_before(date(2026, 8, 31), 6) == date(2026, 2, 28)


def test_the_other_tenant_counts_only_its_own(world, history):
    theirs = figures(world.org_b, "last_30_days")
    assert (theirs["bookings_made"], theirs["reactivated_from_dormant"]) == (1, 1)
    assert figures(world.org_a, "last_30_days")["reactivated_from_dormant"] == 1


# --- risk, worklist, summary, details ----------------------------------------------------------
@pytest.fixture
def ranked(world: Any) -> dict[str, Patient]:
    """Lapsing patients alike (ties), one with invoices (value), one critical, one booked."""
    org = world.org_a
    people = {f"alike{n}": patient(org, f"alike{n}") for n in range(6)}
    people["valued"] = patient(org, "valued")
    people["booked"] = patient(org, "booked")
    for who in people.values():
        visits(org, who, 128, 114, 100)
    for n in range(3):
        baker.make(
            Invoice,
            organization=org,
            pms="cliniko",
            external_id=f"i{n}",
            patient=people["valued"],
            total_amount=90,
        )
    appointment(org, people["booked"], -3, made_days_ago=1)
    people["critical"] = patient(org, "critical")
    visits(org, people["critical"], 98, 84, 70)
    appointment(org, people["critical"], 30, made_days_ago=40, did_not_arrive=True)
    appointment(org, people["critical"], 20, made_days_ago=25, did_not_arrive=True)
    refresh(org)
    refresh(world.org_b)
    return people


def ids(profiles: Any) -> list[int]:
    return [p.patient_id for p in profiles]


def test_risk_metrics_order_and_bands(world, ranked):
    with tenant_scope(world.org_a):
        order = ids(worklist.risk_metrics_list(world.org_a))
        highs = ids(worklist.risk_metrics_list(world.org_a, risk_level="high"))
        bands = worklist.risk_band_counts(world.org_a)
    alike = sorted(ranked[f"alike{n}"].pk for n in range(6))
    assert order == [ranked["critical"].pk, ranked["valued"].pk, *alike, ranked["booked"].pk]
    assert highs == [ranked["valued"].pk, *alike]
    assert bands == {"critical": 1, "high": 7, "medium": 0, "low": 1, "total": 9}


@pytest.mark.parametrize(("band", "scores"), [("critical", (75, 101)), ("high", (50, 75)), ("low", (0, 25))])
def test_score_ranges_match_the_bands(band, scores):
    assert worklist._score_range(band) == scores


def test_the_worklist_order_and_filters(world, ranked):
    org = world.org_a
    with tenant_scope(org):
        order = ids(worklist.prioritized_list(org))
        second = ids(worklist.prioritized_list(org, action_priority=2))
        nobody = ids(worklist.prioritized_list(org, risk_level="critical", engagement_level="disengaged"))
        low = ids(worklist.prioritized_list(org, engagement_level="low_engagement", risk_level="high"))
    alike = sorted(ranked[f"alike{n}"].pk for n in range(6))
    assert order == [ranked["critical"].pk, ranked["valued"].pk, *alike, ranked["booked"].pk]
    assert second == [ranked["valued"].pk, *alike] == low and nobody == []


def test_the_dashboard_summary(world, ranked):
    with tenant_scope(world.org_a):
        summary = worklist.reengagement_dashboard_summary(world.org_a, now=NOW)
        at_risk = sum(p.value_at_risk for p in PatientProfile.objects.for_org(world.org_a))
    assert summary["total_patients"] == 9 and summary["low_engagement"] == 8
    assert summary["critical_risk"] == 1 and summary["high_risk"] == 7 and summary["low_risk"] == 1
    assert summary["by_lifecycle_stage"]["lapsing"] == 8 and summary["by_lifecycle_stage"]["active"] == 1
    assert summary["needing_contact"] == 8
    assert summary["needing_contact_by_priority"] == {"1": 1, "2": 7, "3": 0, "4": 0, "5": 0}
    assert summary["value_at_risk"] == at_risk > Decimal("0") and summary["with_upcoming"] == 1


def test_an_empty_organization_summarises_to_zeros(world):
    with tenant_scope(world.org_a):
        summary = worklist.reengagement_dashboard_summary(world.org_a)
    assert summary["total_patients"] == 0 and summary["value_at_risk"] == Decimal("0")
    assert summary["generated_at"] is None


def test_patient_details(world, ranked):
    org, critical = world.org_a, ranked["critical"]
    with tenant_scope(org):
        details = worklist.patient_details_get(org, patient_id=critical.pk, now=NOW, limit=4)
        booked = worklist.patient_details_get(org, patient_id=ranked["booked"].pk, now=NOW)
        valued = worklist.patient_details_get(org, patient_id=ranked["valued"].pk, now=NOW)
    assert details.profile.patient_id == critical.pk
    assert [a.outcome for a in details.recent_appointments] == [
        Outcome.DNA,
        Outcome.DNA,
        *[Outcome.ATTENDED] * 2,
    ]
    assert [a.outcome for a in booked.upcoming_appointments] == [Outcome.BOOKED]
    assert valued.invoices["invoice_count"] == 3 and valued.invoices["total_amount"] == Decimal("270")
    assert details.invoices["total_amount"] == Decimal("0") and details.invoices["last_issue_date"] is None


def test_patient_details_refuses_missing_and_foreign_alike(world, ranked):
    foreign = patient(world.org_b, "foreign")
    refresh(world.org_b)
    for missing in (foreign.pk, 999_999, 0, 2**63):
        with pytest.raises(PatientProfile.DoesNotExist), tenant_scope(world.org_a):
            worklist.patient_details_get(world.org_a, patient_id=missing)


def test_export_ids_keep_the_lists_order_and_chunks_find_them(world, ranked):
    from patients.selectors import ProfileFilters

    org = world.org_a
    with tenant_scope(org):
        every = worklist.patient_profile_ids_list(org, filters=ProfileFilters(), ordering="risk")
        found = worklist.patient_profiles_by_id(org, patient_ids=[*every[:3], 999_999])
    assert every == ids(worklist.risk_metrics_list(org))
    assert sorted(found) == sorted(every[:3])


def test_a_risk_page_is_the_slice_of_the_full_order(world, ranked):
    org = world.org_a
    with tenant_scope(org):
        page = worklist.risk_metrics_page(org, risk_level="high", offset=2, limit=3)
        assert ids(page) == ids(worklist.risk_metrics_list(org, risk_level="high"))[2:5]
