"""Who a patient is as a client of the clinic: their habits and their courses of treatment.

A patient's plan depends only on the clinic context and the patient's own RNG, which is
what lets any patient be regenerated on its own. Everything here is integers: day ordinals
and Unix seconds.
"""

from __future__ import annotations

import random
from bisect import bisect
from dataclasses import dataclass
from enum import IntEnum
from itertools import accumulate
from typing import TypeVar

from .clock import CLINIC_HOURS, ClinicCalendar, weekday
from .staff import Staff

T = TypeVar("T")

# Patients have at most two upcoming bookings, none further ahead of the snapshot than this.
FUTURE_BOOKING_DAYS = 42
# Of cancelled bookings, the share the patient rebooks within a few days.
RESCHEDULE_SHARE = 0.45


class Archetype(IntEnum):
    REGISTERED_ONLY = 0  # has a patient record, never booked
    ONE_OFF = 1
    SHORT_COURSE = 2
    LONG_COURSE = 3
    MAINTENANCE = 4
    DROP_OUT = 5
    RETURNING = 6


# Calibrated so a 3-year history averages about 19 appointments a patient (about 940k for
# 50,000 patients); longer histories give more, since maintenance patients keep coming.
_ARCHETYPE_WEIGHTS = (
    (Archetype.REGISTERED_ONLY, 0.01), (Archetype.ONE_OFF, 0.08), (Archetype.SHORT_COURSE, 0.14),
    (Archetype.LONG_COURSE, 0.17), (Archetype.MAINTENANCE, 0.29), (Archetype.DROP_OUT, 0.08),
    (Archetype.RETURNING, 0.23),
)
_ARCHETYPE_CUMULATIVE = tuple(accumulate(weight for _, weight in _ARCHETYPE_WEIGHTS))
# (multiplier, weight) pairs with mean 1: a few patients account for most no-shows.
_DNA_PROPENSITY = ((0.5, 0.7), (1.5, 0.2), (3.5, 0.1))
_CANCEL_PROPENSITY = ((0.6, 0.6), (1.4, 0.3), (2.2, 0.1))
# A patient's usual day: Saturday is a half day and Sunday is closed.
_USUAL_WEEKDAY = ((0, 0.18), (1, 0.18), (2, 0.18), (3, 0.18), (4, 0.18), (5, 0.10))


def weighted_choice(rng: random.Random, pairs: tuple[tuple[T, float], ...]) -> T:
    """One value from (value, weight) pairs; the weights need not sum to 1."""
    roll = rng.random() * sum(weight for _, weight in pairs)
    for value, weight in pairs:
        roll -= weight
        if roll < 0:
            return value
    return pairs[-1][0]


@dataclass(frozen=True)
class ClinicContext:
    """Everything patient planning needs, computed once per clinic."""

    calendar: ClinicCalendar
    staff: Staff
    first_day: int  # first day of the history
    today: int
    now: int  # Unix seconds at 00:00 local on `today`: the snapshot instant
    cancel_probability: float
    reschedule_share: float
    late_share: float
    dna_rate: float
    teams: tuple[tuple[int, ...], ...]  # practitioner indexes by business index

    @classmethod
    def build(cls, *, calendar: ClinicCalendar, staff: Staff, first_day: int,
              cancellation_rate: float, late_share: float, dna_rate: float) -> ClinicContext:
        # A rebooked cancellation adds a booking, so the per-booking chance of cancelling is
        # set above the target until cancelled / all bookings comes out at the target.
        reschedule = RESCHEDULE_SHARE
        if cancellation_rate > 0:
            reschedule = min(RESCHEDULE_SHARE, (1 - cancellation_rate) / cancellation_rate)
        cancel_probability = cancellation_rate / (1 - reschedule * cancellation_rate)
        teams = tuple(
            tuple(p.index for p in staff.practitioners if p.business_index == business.index)
            for business in staff.businesses
        )
        return cls(calendar=calendar, staff=staff, first_day=first_day, today=calendar.today,
                   now=calendar.midnight_epoch(calendar.today),
                   cancel_probability=min(1.0, cancel_probability), reschedule_share=reschedule,
                   late_share=late_share, dna_rate=dna_rate, teams=teams)


@dataclass(slots=True)
class PatientProfile:
    """Habits drawn once per patient that shape all their bookings."""

    archetype: Archetype
    first_day: int
    business_index: int
    practitioner_index: int
    stand_in_index: int
    preferred_minute: int
    cancel_probability: float
    dna_probability: float
    books_ahead: int
    online_booker: bool
    concession: bool
    massage_client: bool
    email_reminders: bool
    sms_reminders: bool


def draw_profile(rng: random.Random, ctx: ClinicContext, *, email_reminders: bool,
                 sms_reminders: bool) -> PatientProfile:
    archetype = _ARCHETYPE_WEIGHTS[bisect(_ARCHETYPE_CUMULATIVE,
                                          rng.random() * _ARCHETYPE_CUMULATIVE[-1])][0]
    usual_weekday = weighted_choice(rng, _USUAL_WEEKDAY)
    first_day = _first_day(rng, ctx, usual_weekday)
    business_index = _business_for(rng, ctx, first_day)
    opens, closes = CLINIC_HOURS[usual_weekday]
    return PatientProfile(
        archetype=archetype,
        first_day=first_day,
        business_index=business_index,
        practitioner_index=_practitioner_for(rng, ctx, business_index, first_day),
        stand_in_index=_stand_in_for(rng, ctx, business_index),
        preferred_minute=opens + 15 * int(rng.random() * (closes - opens - 45) / 15),
        cancel_probability=_personal_rate(rng, ctx.cancel_probability, _CANCEL_PROPENSITY),
        dna_probability=_personal_rate(rng, ctx.dna_rate, _DNA_PROPENSITY),
        books_ahead=1 + (rng.random() < 0.4),
        online_booker=rng.random() < 0.35,
        concession=rng.random() < 0.06,
        massage_client=rng.random() < 0.15,
        email_reminders=email_reminders,
        sms_reminders=sms_reminders,
    )


def _personal_rate(rng: random.Random, rate: float,
                   propensity: tuple[tuple[float, float], ...]) -> float:
    """This patient's share of `rate`: the clinic average, spread by a mean-1 multiplier.

    Near a rate of 1 the spread is narrowed so no patient goes above 1, which keeps the
    average across patients at `rate`.
    """
    if rate <= 0:
        return 0.0
    largest = max(multiplier for multiplier, _ in propensity)
    spread = min(1.0, (1 - rate) / (rate * (largest - 1)))
    return rate * (1 + (weighted_choice(rng, propensity) - 1) * spread)


def _first_day(rng: random.Random, ctx: ClinicContext, usual_weekday: int) -> int:
    """When the patient first turns up: spread over the history, with a batch of newcomers,
    on the weekday that suits them (a course then keeps to it)."""
    if rng.random() < 0.05:
        day = max(ctx.first_day, ctx.today - 35 + int(rng.random() * 49))
    else:
        day = ctx.first_day + int(rng.random() * (ctx.today - ctx.first_day))
    day += usual_weekday - weekday(day)
    return day if day >= ctx.first_day else day + 7


def _business_for(rng: random.Random, ctx: ClinicContext, day: int) -> int:
    staff = ctx.staff
    open_indexes = [b.index for b in staff.businesses
                    if staff.practitioners[b.index].started_day <= day] or [0]
    weights = list(accumulate(staff.business_weights[index] for index in open_indexes))
    return open_indexes[bisect(weights, rng.random() * weights[-1])]


def _practitioner_for(rng: random.Random, ctx: ClinicContext, business_index: int,
                      day: int) -> int:
    practitioners = ctx.staff.practitioners
    team = [index for index in ctx.teams[business_index] if practitioners[index].works_on(day)]
    # The location's first practitioner opened it and never leaves.
    return team[int(rng.random() * len(team))] if team else business_index


def _stand_in_for(rng: random.Random, ctx: ClinicContext, business_index: int) -> int:
    """Who takes the patient over if their practitioner leaves: a colleague who stays."""
    practitioners = ctx.staff.practitioners
    stayers = [index for index in ctx.teams[business_index]
               if practitioners[index].left_day is None]
    return stayers[int(rng.random() * len(stayers))]


def intended_days(rng: random.Random, profile: PatientProfile,
                  ctx: ClinicContext) -> list[tuple[int, bool]]:
    """(target day, starts a new condition) for every visit the patient means to make."""
    archetype = profile.archetype
    start = profile.first_day
    stop = ctx.today + FUTURE_BOOKING_DAYS
    if archetype is Archetype.REGISTERED_ONLY:
        return []
    if archetype is Archetype.ONE_OFF:
        return _course(rng, start, [14] if rng.random() < 0.25 else [], stop)
    if archetype is Archetype.SHORT_COURSE:
        interval = weighted_choice(rng, ((7, 0.5), (14, 0.4), (21, 0.1)))
        return _course(rng, start, [interval] * (3 + int(rng.random() * 6)), stop)
    if archetype is Archetype.LONG_COURSE:
        visits = 14 + int(rng.random() * 23)
        return _course(rng, start, [7] * 4 + [14] * 6 + [21] * max(0, visits - 11), stop)
    if archetype is Archetype.MAINTENANCE:
        return _maintenance(rng, start, stop)
    if archetype is Archetype.DROP_OUT:
        # Booked for a long course, stopped coming after a few visits.
        interval = 7 if rng.random() < 0.6 else 14
        return _course(rng, start, [interval] * (1 + int(rng.random() * 3)), stop)
    return _returning(rng, start, stop)


def _jitter(rng: random.Random) -> int:
    roll = rng.random()
    if roll < 0.7:
        return 0
    if roll < 0.9:
        return 1 if roll < 0.8 else -1
    return 2 + int(rng.random() * 2) if roll < 0.95 else -2


def _course(rng: random.Random, start: int, intervals: list[int], stop: int, *,
            new_condition: bool = True) -> list[tuple[int, bool]]:
    days = [(start, new_condition)]
    day = start
    for interval in intervals:
        day += interval + _jitter(rng)
        if day > stop:
            break
        days.append((day, False))
    return days


def _maintenance(rng: random.Random, start: int, stop: int) -> list[tuple[int, bool]]:
    """A short weekly course, then regular visits every few weeks, for years or until they stop."""
    if rng.random() < 0.3:
        stop = min(stop, start + 180 + int(rng.random() * 900))
    cadence = weighted_choice(rng, ((14, 0.4), (21, 0.3), (28, 0.2), (35, 0.1)))
    settling = [7] * (2 + int(rng.random() * 3))
    regular = [cadence] * max(0, (stop - start) // cadence + 1)
    return _course(rng, start, settling + regular, stop)


def _returning(rng: random.Random, start: int, stop: int) -> list[tuple[int, bool]]:
    """Several courses with months between them; a long gap means a new condition."""
    days: list[tuple[int, bool]] = []
    episode_start = start
    new_condition = True
    for _ in range(2 + int(rng.random() * 5)):
        interval = 7 if rng.random() < 0.6 else 14
        course = _course(rng, episode_start, [interval] * (4 + int(rng.random() * 9)), stop,
                         new_condition=new_condition)
        days.extend(course)
        gap = 45 + int(rng.random() * 270)
        new_condition = gap > 180
        episode_start = course[-1][0] + gap
        if episode_start > stop:
            break
    return days
