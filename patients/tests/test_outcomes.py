from datetime import UTC, datetime, timedelta

import pytest
from model_bakery import baker

from patients.models import Appointment
from patients.outcomes import Outcome, appointment_outcome

NOW = datetime(2026, 11, 27, 3, 0, tzinfo=UTC)

# (description, starts_at offset, cancelled_at offset, did_not_arrive, patient_arrived, expected)
CASES = [
    ("future booking", timedelta(days=3), None, False, False, Outcome.BOOKED),
    ("past, not marked arrived", -timedelta(days=3), None, False, False, Outcome.ATTENDED),
    ("past, marked arrived", -timedelta(days=3), None, False, True, Outcome.ATTENDED),
    ("arrived early for a later slot", timedelta(minutes=20), None, False, True, Outcome.ATTENDED),
    ("did not arrive", -timedelta(days=1), None, True, False, Outcome.DNA),
    ("cancelled two days ahead", timedelta(days=1), -timedelta(days=1), False, False, Outcome.CANCELLED),
    ("cancelled exactly 24 h ahead", timedelta(hours=24), timedelta(0), False, False, Outcome.CANCELLED),
    ("cancelled 23 h ahead", timedelta(hours=23), timedelta(0), False, False, Outcome.LATE_CANCELLED),
    ("cancelled after the start", -timedelta(hours=1), timedelta(0), False, False, Outcome.LATE_CANCELLED),
    ("cancelled wins over DNA flag", -timedelta(days=2), -timedelta(days=5), True, False, Outcome.CANCELLED),
]


@pytest.mark.parametrize(
    ("label", "start", "cancel", "dna", "arrived", "expected"), CASES, ids=[c[0] for c in CASES]
)
def test_python_outcome(label, start, cancel, dna, arrived, expected):
    appointment = Appointment(
        starts_at=NOW + start,
        ends_at=NOW + start + timedelta(minutes=30),
        cancelled_at=None if cancel is None else NOW + cancel,
        did_not_arrive=dna,
        patient_arrived=arrived,
    )
    assert appointment.outcome_at(now=NOW) == expected


def test_database_outcome_agrees_with_python(world):
    for index, (_, start, cancel, dna, arrived, _) in enumerate(CASES):
        baker.make(
            Appointment,
            organization=world.org_a,
            pms="cliniko",
            external_id=str(index),
            starts_at=NOW + start,
            ends_at=NOW + start + timedelta(minutes=30),
            cancelled_at=None if cancel is None else NOW + cancel,
            did_not_arrive=dna,
            patient_arrived=arrived,
        )
    rows = Appointment.objects.for_org(world.org_a).with_outcome(now=NOW)
    from_db = {row.external_id: row.outcome for row in rows}
    expected = {str(i): case[-1] for i, case in enumerate(CASES)}
    assert from_db == expected
    for row in rows:
        assert appointment_outcome(row, now=NOW) == row.outcome


def test_late_cancellation_threshold_is_configurable():
    appointment = Appointment(
        starts_at=NOW + timedelta(hours=30),
        ends_at=NOW + timedelta(hours=31),
        cancelled_at=NOW,
        did_not_arrive=False,
        patient_arrived=False,
    )
    assert appointment.outcome_at(now=NOW) == Outcome.CANCELLED
    assert appointment.outcome_at(now=NOW, late_cancellation_hours=48) == Outcome.LATE_CANCELLED


def test_current_excludes_archived_and_deleted(world):
    live = baker.make(
        Appointment, organization=world.org_a, pms="cliniko", external_id="1", starts_at=NOW, ends_at=NOW
    )
    baker.make(
        Appointment,
        organization=world.org_a,
        pms="cliniko",
        external_id="2",
        starts_at=NOW,
        ends_at=NOW,
        archived_at=NOW,
    )
    baker.make(
        Appointment,
        organization=world.org_a,
        pms="cliniko",
        external_id="3",
        starts_at=NOW,
        ends_at=NOW,
        deleted_at=NOW,
    )
    assert list(Appointment.objects.for_org(world.org_a).current()) == [live]


def test_appointment_cannot_end_before_it_starts(world):
    from django.db import IntegrityError, transaction

    with pytest.raises(IntegrityError), transaction.atomic():
        baker.make(
            Appointment,
            organization=world.org_a,
            pms="cliniko",
            external_id="x",
            starts_at=NOW,
            ends_at=NOW - timedelta(minutes=1),
        )
