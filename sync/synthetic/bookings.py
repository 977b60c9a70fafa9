"""What became of each visit a patient meant to make: booked, moved, missed, kept, billed.

Works on integers only (day ordinals, Unix seconds). Every instant is at or before the
snapshot (`ctx.now`), and each booking's own instants are ordered: created, then cancelled
or deleted, then updated.
"""

from __future__ import annotations

import random
from bisect import bisect_right
from dataclasses import dataclass
from datetime import date

from .catalog import (
    ROLE_INDEX,
    SERVICES,
    TREATMENT_NOTE_DRAFT,
    TREATMENT_NOTE_FINAL,
    InvoiceStatus,
    TypeRole,
)
from .clock import SECONDS_PER_DAY, ClinicCalendar, weekday
from .schedule import (
    FUTURE_BOOKING_DAYS,
    ClinicContext,
    PatientProfile,
    intended_days,
    weighted_choice,
)

HOUR = 3600
LATE_CANCELLATION_NOTICE = 24 * HOUR
SUNDAY = 6
DELETED_SHARE = 0.004
ARCHIVED_SHARE = 0.002
INVOICED_SHARE = 0.97
DNA_FEE_SHARE = 0.3

_INITIAL = ROLE_INDEX[TypeRole.INITIAL]
_STANDARD = ROLE_INDEX[TypeRole.STANDARD]
_SHORT = ROLE_INDEX[TypeRole.SHORT]
_EXTENDED = ROLE_INDEX[TypeRole.EXTENDED]
_MASSAGE = ROLE_INDEX[TypeRole.MASSAGE]
_TELEHEALTH = ROLE_INDEX[TypeRole.TELEHEALTH]
_LEGACY = ROLE_INDEX[TypeRole.LEGACY_STANDARD]
_DURATION_MINUTES = tuple(service.duration_in_minutes for service in SERVICES)

_RESCHEDULE_REASONS = ((60, 0.4), (50, 0.35), (40, 0.15), (30, 0.1))
_CANCEL_REASONS = ((10, 0.2), (20, 0.05), (30, 0.3), (40, 0.15), (50, 0.15), (60, 0.15))
_CANCEL_NOTES = ("Called to reschedule", "Left a voicemail", "Cancelled via SMS reply",
                 "Online cancellation", "Kids unwell", "Work commitments", "Car trouble",
                 "Feeling much better, will call if needed", "Away interstate")
_RESCHEDULE_NOTES = ("Rescheduled", "Moved to later in the week", "Rebooked by phone")
# Code 31 "COVID-19 related" was only in use while it was relevant.
_COVID_FIRST_DAY = date(2020, 3, 1).toordinal()
_COVID_LAST_DAY = date(2022, 12, 31).toordinal()


@dataclass(slots=True)
class InvoicePlan:
    created: int
    status: InvoiceStatus
    closed: int | None
    deleted: int | None
    dna_fee: bool


@dataclass(slots=True)
class Visit:
    """One booking and its fate."""

    day: int
    start: int
    end: int
    type_index: int
    practitioner_index: int
    business_index: int
    created: int = 0
    updated: int = 0
    cancelled: int | None = None
    cancel_reason: int | None = None
    cancel_note: str | None = None
    did_not_arrive: bool = False
    arrived: bool = False
    deleted: int | None = None
    archived: int | None = None
    online: bool = False
    email_reminder: bool = False
    sms_reminder: bool = False
    treatment_note_status: int | None = None
    invoice: InvoicePlan | None = None

    @property
    def kept(self) -> bool:
        """Still on the books: not cancelled, deleted or archived."""
        return self.cancelled is None and self.deleted is None and self.archived is None


def plan_visits(rng: random.Random, profile: PatientProfile, ctx: ClinicContext) -> list[Visit]:
    """Every booking the patient made, in order, including rebookings of cancelled ones.

    `previous_end` is the end of the last attended visit: most patients book their next
    visit at the desk on the way out.
    """
    visits: list[Visit] = []
    needs_initial = True
    last_day = 0
    previous_end: int | None = None
    upcoming = 0
    for target, new_condition in intended_days(rng, profile, ctx):
        if new_condition:
            needs_initial, previous_end = True, None
        if weekday(target) == SUNDAY and rng.random() < 0.4:
            target -= 1  # a course slipping off its usual day goes either side of Sunday
        day = ctx.calendar.open_day_on_or_after(max(target, last_day + 1))
        if day > ctx.today:
            if upcoming >= profile.books_ahead or day > ctx.today + FUTURE_BOOKING_DAYS:
                break
            upcoming += 1
        type_index = _INITIAL if needs_initial else _follow_up_type(rng, profile, ctx, day)
        visit = _book(rng, profile, ctx, day, type_index, previous_end)
        visits.append(visit)
        if visit.cancelled is not None and rng.random() < ctx.reschedule_share:
            visit = _rebook(rng, profile, ctx, visit, visit.cancelled)
            visits.append(visit)
        last_day = visit.day
        if visit.kept and not visit.did_not_arrive:
            # A cancelled or missed first visit is booked again as a first visit.
            needs_initial = False
            if visit.start < ctx.now:
                previous_end = visit.end
    return visits


def _follow_up_type(rng: random.Random, profile: PatientProfile, ctx: ClinicContext,
                    day: int) -> int:
    if profile.massage_client and rng.random() < 0.6:
        return _MASSAGE
    roll = rng.random()
    if roll < 0.04:
        return _TELEHEALTH
    if roll < 0.12:
        return _SHORT
    if roll < 0.20:
        return _EXTENDED
    if day < ctx.staff.legacy_type_archived_day:
        return _LEGACY if roll < 0.85 else _STANDARD
    return _STANDARD


def _practitioner_on(rng: random.Random, profile: PatientProfile, ctx: ClinicContext,
                     day: int) -> int:
    """Mostly the patient's own practitioner; a colleague covers now and then, and a
    colleague takes over for good once their practitioner has left."""
    practitioners = ctx.staff.practitioners
    own = practitioners[profile.practitioner_index]
    if not own.works_on(day):
        own = practitioners[profile.stand_in_index]
    if rng.random() < 0.08:
        team = ctx.teams[own.business_index]
        cover = practitioners[team[int(rng.random() * len(team))]]
        if cover.works_on(day):
            return cover.index
    return own.index


def _slot(rng: random.Random, profile: PatientProfile, calendar: ClinicCalendar, day: int,
          type_index: int) -> int:
    """Start minute: usually the patient's usual time (or the nearest earlier slot)."""
    slots = calendar.slot_starts(weekday(day), _DURATION_MINUTES[type_index])
    if rng.random() < 0.75:
        return slots[max(0, bisect_right(slots, profile.preferred_minute) - 1)]
    return slots[int(rng.random() * len(slots))]


def _new_visit(rng: random.Random, profile: PatientProfile, ctx: ClinicContext, day: int,
               type_index: int, practitioner_index: int) -> Visit:
    start = ctx.calendar.local_to_epoch(day, _slot(rng, profile, ctx.calendar, day, type_index))
    return Visit(day, start, start + _DURATION_MINUTES[type_index] * 60, type_index,
                 practitioner_index, ctx.staff.practitioners[practitioner_index].business_index)


def _book(rng: random.Random, profile: PatientProfile, ctx: ClinicContext, day: int,
          type_index: int, previous_end: int | None) -> Visit:
    practitioner_index = _practitioner_on(rng, profile, ctx, day)
    visit = _new_visit(rng, profile, ctx, day, type_index, practitioner_index)
    # Patients who book online do it themselves, not at the front desk after a visit.
    visit.online = profile.online_booker and (previous_end is None or rng.random() < 0.4)
    removal_roll = rng.random()
    if removal_roll < DELETED_SHARE + ARCHIVED_SHARE:
        _remove(rng, ctx, visit, previous_end, deleted=removal_roll < DELETED_SHARE)
        return visit
    cancelled = None
    if rng.random() < profile.cancel_probability:
        cancelled = _cancellation_moment(rng, ctx, visit.start)
    visit.created = _created_at(rng, ctx, visit.start, previous_end, cancelled)
    if cancelled is not None:
        _cancel(rng, visit, cancelled)
    elif visit.start >= ctx.now:
        visit.updated = visit.created
    else:
        _settle(rng, profile, ctx, visit)
    _mark_reminders(profile, ctx, visit)
    return visit


def _created_at(rng: random.Random, ctx: ClinicContext, start: int, previous_end: int | None,
                cancelled: int | None) -> int:
    """Booked at the end of the previous visit, or a few hours to weeks ahead."""
    latest = min(start - HOUR, ctx.now - 300)
    if cancelled is not None:
        latest = min(latest, cancelled - 600)
    if previous_end is not None and rng.random() < 0.7:
        created = previous_end + 120 + int(rng.random() * 900)
    else:
        created = start - 2 * HOUR - int(rng.random() ** 2 * 35 * SECONDS_PER_DAY)
    return min(created, latest)


def _cancellation_moment(rng: random.Random, ctx: ClinicContext, start: int) -> int | None:
    """When the patient cancels; None if that moment is still after the snapshot."""
    if rng.random() < ctx.late_share:
        notice = HOUR // 2 + int(rng.random() * (LATE_CANCELLATION_NOTICE - HOUR))
    else:
        notice = LATE_CANCELLATION_NOTICE + HOUR + int(rng.random() ** 2 * 13 * SECONDS_PER_DAY)
    moment = start - notice
    return moment if moment <= ctx.now - 900 else None


def _cancel(rng: random.Random, visit: Visit, moment: int) -> None:
    visit.cancelled = visit.updated = moment
    visit.cancel_reason = weighted_choice(rng, _CANCEL_REASONS)
    if _COVID_FIRST_DAY <= visit.day <= _COVID_LAST_DAY and rng.random() < 0.15:
        visit.cancel_reason = 31
    if rng.random() < 0.4:
        visit.cancel_note = _CANCEL_NOTES[int(rng.random() * len(_CANCEL_NOTES))]


def _rebook(rng: random.Random, profile: PatientProfile, ctx: ClinicContext, cancelled: Visit,
            cancelled_at: int) -> Visit:
    """The replacement for a cancelled visit, booked in the same call a few days later."""
    cancelled.cancel_reason = weighted_choice(rng, _RESCHEDULE_REASONS)
    cancelled.cancel_note = (_RESCHEDULE_NOTES[int(rng.random() * len(_RESCHEDULE_NOTES))]
                             if rng.random() < 0.5 else None)
    day = ctx.calendar.open_day_on_or_after(cancelled.day + 1 + int(rng.random() * 5))
    type_index = cancelled.type_index
    if type_index == _LEGACY and day >= ctx.staff.legacy_type_archived_day:
        type_index = _STANDARD
    practitioner_index = _practitioner_on(rng, profile, ctx, day)
    visit = _new_visit(rng, profile, ctx, day, type_index, practitioner_index)
    visit.online = cancelled.online
    visit.created = min(cancelled_at + 60 + int(rng.random() * 900), ctx.now - 60)
    if visit.start >= ctx.now:
        visit.updated = visit.created
    else:
        _settle(rng, profile, ctx, visit)
    _mark_reminders(profile, ctx, visit)
    return visit


def _remove(rng: random.Random, ctx: ClinicContext, visit: Visit, previous_end: int | None, *,
            deleted: bool) -> None:
    """A booking made in error and deleted (or archived) before it happened."""
    visit.created = _created_at(rng, ctx, visit.start, previous_end, None)
    upto = min(visit.start, ctx.now - 60)
    moment = visit.created + 60 + int(rng.random() * max(0, upto - visit.created - 60))
    if deleted:
        visit.deleted = moment
    else:
        visit.archived = moment
    visit.updated = moment


def _settle(rng: random.Random, profile: PatientProfile, ctx: ClinicContext,
            visit: Visit) -> None:
    """A past visit that was not cancelled: the patient came, or did not."""
    if rng.random() < profile.dna_probability:
        visit.did_not_arrive = True
        visit.updated = min(visit.start + 600 + int(rng.random() * 3 * HOUR), ctx.now - 60)
        if rng.random() < DNA_FEE_SHARE:
            visit.invoice = _invoice(rng, ctx, visit, dna_fee=True)
    else:
        practitioner = ctx.staff.practitioners[visit.practitioner_index]
        visit.arrived = practitioner.marks_arrival and rng.random() < 0.97
        recent = ctx.now - visit.end < 14 * SECONDS_PER_DAY
        visit.treatment_note_status = (TREATMENT_NOTE_DRAFT if recent and rng.random() < 0.3
                                       else TREATMENT_NOTE_FINAL)
        visit.updated = min(visit.end + 60 + int(rng.random() * 2 * HOUR), ctx.now - 60)
        if rng.random() < INVOICED_SHARE:
            visit.invoice = _invoice(rng, ctx, visit, dna_fee=False)
    invoice = visit.invoice
    if invoice is not None and invoice.deleted is None:
        # Raising or paying the invoice changes the appointment's invoice_status.
        visit.updated = max(visit.updated, invoice.closed or invoice.created)


def _invoice(rng: random.Random, ctx: ClinicContext, visit: Visit, *,
             dna_fee: bool) -> InvoicePlan:
    if dna_fee:
        created = visit.start + HOUR + int(rng.random() * 29 * HOUR)
    else:
        created = visit.end + int(rng.random() * 2 * HOUR)
    created = min(created, ctx.now - 120)
    status = _invoice_status(rng, recent=ctx.now - created < 14 * SECONDS_PER_DAY, dna_fee=dna_fee)
    closed = None
    if status is InvoiceStatus.PAID:
        # Most pay at the desk; the rest when the health fund or the patient gets to it.
        if rng.random() < 0.8:
            closed = created + int(rng.random() * 600)
        else:
            closed = created + int((1 + rng.random() * 20) * SECONDS_PER_DAY)
    elif status is InvoiceStatus.CLOSED:
        closed = created + int((30 + rng.random() * 60) * SECONDS_PER_DAY)
    if closed is not None and closed > ctx.now - 60:
        status, closed = InvoiceStatus.OPEN, None
    deleted = None
    if rng.random() < 0.003:
        deleted = created + int(rng.random() * (ctx.now - created))
    return InvoicePlan(created, status, closed, deleted, dna_fee)


def _invoice_status(rng: random.Random, *, recent: bool, dna_fee: bool) -> InvoiceStatus:
    roll = rng.random()
    if dna_fee:
        if roll < 0.5:
            return InvoiceStatus.PAID
        return InvoiceStatus.OPEN if roll < 0.95 else InvoiceStatus.CLOSED
    if recent:
        return InvoiceStatus.OPEN if roll < 0.3 else InvoiceStatus.PAID
    if roll < 0.965:
        return InvoiceStatus.PAID
    if roll < 0.985:
        return InvoiceStatus.OPEN
    return InvoiceStatus.CLOSED if roll < 0.995 else InvoiceStatus.OPEN_CREDIT


def _mark_reminders(profile: PatientProfile, ctx: ClinicContext, visit: Visit) -> None:
    """Reminders go out a day ahead, to bookings still standing at that moment."""
    reminder_at = visit.start - SECONDS_PER_DAY
    taken_off_at = visit.cancelled or visit.deleted or visit.archived or visit.start
    if visit.created < reminder_at < min(ctx.now, taken_off_at):
        visit.email_reminder = profile.email_reminders
        visit.sms_reminder = profile.sms_reminders
