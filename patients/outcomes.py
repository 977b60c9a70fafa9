"""Appointment outcome, derived from the PMS's fields as retention-metrics.md defines it.

Two forms of one rule: `appointment_outcome` for one object in Python, `outcome_expression` for
set-based queries. Tests hold them to the same answers.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Protocol

from django.db.models import Case, CharField, DateTimeField, F, Q, Value, When
from django.db.models.functions import Now
from django.utils import timezone


class Outcome:
    BOOKED = "booked"
    ATTENDED = "attended"
    DNA = "dna"
    CANCELLED = "cancelled"
    LATE_CANCELLED = "late_cancelled"

    ALL = (BOOKED, ATTENDED, DNA, CANCELLED, LATE_CANCELLED)


class AppointmentFacts(Protocol):
    starts_at: datetime
    cancelled_at: datetime | None
    did_not_arrive: bool
    patient_arrived: bool


def appointment_outcome(
    appointment: AppointmentFacts, *, now: datetime | None = None, late_cancellation_hours: int = 24
) -> str:
    now = now or timezone.now()
    if appointment.cancelled_at is not None:
        notice = appointment.starts_at - appointment.cancelled_at
        return (
            Outcome.LATE_CANCELLED if notice < timedelta(hours=late_cancellation_hours) else Outcome.CANCELLED
        )
    if appointment.did_not_arrive:
        return Outcome.DNA
    # An explicit arrival wins even if the clock says the visit has not started yet.
    if appointment.patient_arrived or appointment.starts_at <= now:
        return Outcome.ATTENDED
    return Outcome.BOOKED


def outcome_expression(*, now: datetime | None = None, late_cancellation_hours: int = 24) -> Case:
    now_value = Value(now, output_field=DateTimeField()) if now else Now()
    late = timedelta(hours=late_cancellation_hours)
    return Case(
        When(
            Q(cancelled_at__isnull=False) & Q(cancelled_at__gt=F("starts_at") - Value(late)),
            then=Value(Outcome.LATE_CANCELLED),
        ),
        When(cancelled_at__isnull=False, then=Value(Outcome.CANCELLED)),
        When(did_not_arrive=True, then=Value(Outcome.DNA)),
        When(Q(patient_arrived=True) | Q(starts_at__lte=now_value), then=Value(Outcome.ATTENDED)),
        default=Value(Outcome.BOOKED),
        output_field=CharField(),
    )
