"""A deterministic synthetic clinic, shaped exactly as Cliniko API records.

`generate_clinic(spec)` builds the clinic-wide records at once (`businesses`,
`practitioners`, `appointment_types`, `billable_items`) and streams patients, each with their
appointments and invoices, from `SyntheticClinic.iter_patients()`. Patient `i` is drawn from
an RNG seeded with `(spec.seed, i)` alone, so the stream is reproducible, any patient can be
regenerated on its own (`patient_bundle(i)`), and memory does not grow with size.

Records are plain dicts in the shape of the Cliniko v1 API, ready to be served verbatim: ids
as int64 strings, relations as `{"links": {"self": url}}` under `catalog.API_ROOT`
(`https://api.au1.cliniko.com/v1`), UTC timestamps ending in "Z", money as 2-dp strings,
unset timestamps as null. No key outside Cliniko's schema is added to any record. Prices
live where Cliniko keeps them, on billable items (each appointment type's `billable_item`
link); `appointment_type_prices()` flattens them to type id -> Decimal.

The snapshot is 00:00 local time on `spec.today`: every created/updated/cancelled/closed
time is before it, nothing is booked on `today` itself, and bookings after it are the
"future" ones. Known simplifications: bookings of different patients may overlap in one
practitioner's diary (patients share no state, which is what makes them independent);
invoice numbers are unique but not one clinic-wide sequence; invoice items are not
generated; phone numbers carry `number` and `phone_type` but no `normalized_number`.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from .bookings import Visit, plan_visits
from .catalog import PER_PATIENT_ID_BLOCK, IdKind, appointment_type_prices, make_id
from .clock import CLINIC_HOURS, ClinicCalendar, TimestampFormatter
from .contacts import Region, region_for_zone
from .patients import Identity, draw_identity, patient_record, patient_times, reminder_type
from .records import PatientRef, RecordContext, appointment_id, appointment_record, invoice_record
from .schedule import FUTURE_BOOKING_DAYS, ClinicContext, PatientProfile, draw_profile
from .spec import MAX_APPOINTMENTS_PER_PRACTITIONER_DAY, ClinicSpec, ImpossibleClinicError
from .staff import (
    appointment_type_records,
    billable_item_records,
    build_staff,
    business_record,
    practitioner_record,
)

__all__ = [
    "ClinicSpec",
    "ImpossibleClinicError",
    "PatientBundle",
    "SyntheticClinic",
    "appointment_type_prices",
    "generate_clinic",
]

# The appointment-count estimate plans this many patients; below it the count is exact.
ESTIMATE_SAMPLE_PATIENTS = 4000


@dataclass
class PatientBundle:
    """One patient with their appointments (by start) and invoices (by creation)."""

    patient: dict[str, Any]
    appointments: list[dict[str, Any]]
    invoices: list[dict[str, Any]]


@dataclass(frozen=True)
class _PatientPlan:
    rng: random.Random
    identity: Identity
    profile: PatientProfile
    visits: list[Visit]


class SyntheticClinic:
    """A generated clinic: reference records in memory, patients streamed on demand.

    `businesses`, `practitioners`, `appointment_types` and `billable_items` are lists of
    Cliniko records; `expected_appointments` is the appointment count `iter_patients()` will
    produce (exact up to ESTIMATE_SAMPLE_PATIENTS patients, a close estimate above).
    """

    def __init__(self, spec: ClinicSpec, ctx: ClinicContext, region: Region) -> None:
        self.spec = spec
        self._ctx = ctx
        self._region = region
        self._clock = TimestampFormatter()
        staff = ctx.staff
        self._records = RecordContext.build(staff, self._clock)
        self.appointment_types: list[dict[str, Any]] = appointment_type_records(staff, self._clock)
        self.billable_items: list[dict[str, Any]] = billable_item_records(staff, self._clock)
        active_type_ids = [t["id"] for t in self.appointment_types if t["archived_at"] is None]
        self.businesses: list[dict[str, Any]] = [
            business_record(business, spec.time_zone, self._clock, list(active_type_ids))
            for business in staff.businesses
        ]
        self.practitioners: list[dict[str, Any]] = [
            practitioner_record(practitioner, self._clock) for practitioner in staff.practitioners
        ]
        self.expected_appointments = self._estimate_appointments()

    @staticmethod
    def appointment_type_prices() -> dict[str, Decimal]:
        """Appointment type id -> price; see `catalog.appointment_type_prices`."""
        return appointment_type_prices()

    def iter_patients(self) -> Iterator[PatientBundle]:
        """Every patient in index order; the same output on every call."""
        for index in range(self.spec.patients):
            yield self.patient_bundle(index)

    def patient_bundle(self, index: int) -> PatientBundle:
        """Patient `index` (0-based), regenerated from scratch."""
        if not 0 <= index < self.spec.patients:
            raise IndexError(f"patient index {index} outside 0..{self.spec.patients - 1}")
        return self._render(index, self._plan(index))

    def _plan(self, index: int) -> _PatientPlan:
        rng = random.Random(f"{self.spec.seed}:{index}")
        identity = draw_identity(rng, self._region, self._ctx.today)
        reminders = reminder_type(identity)
        profile = draw_profile(rng, self._ctx, email_reminders="Email" in reminders,
                               sms_reminders="SMS" in reminders)
        # Ids hold PER_PATIENT_ID_BLOCK appointments per patient; no plan comes near it.
        visits = plan_visits(rng, profile, self._ctx)[:PER_PATIENT_ID_BLOCK]
        return _PatientPlan(rng, identity, profile, visits)

    def _render(self, index: int, plan: _PatientPlan) -> PatientBundle:
        rng, identity, profile = plan.rng, plan.identity, plan.profile
        patient_id = make_id(IdKind.PATIENT, index + 1)
        times = patient_times(rng, self._ctx, profile.first_day, plan.visits)
        time_zone = self.spec.time_zone if rng.random() < 0.85 else None
        patient = patient_record(patient_id, identity, times, concession=profile.concession,
                                 time_zone=time_zone, rng=rng, clock=self._clock)
        ref = PatientRef(index=index, url=patient["links"]["self"],
                         name=f"{identity.first_name} {identity.last_name}",
                         invoice_to=_invoice_to(identity),
                         booking_ip=f"203.0.113.{1 + index % 254}",
                         concession=profile.concession)
        appointments = []
        invoices = []
        for position, visit in enumerate(plan.visits):
            key = appointment_id(index, position)
            appointments.append(appointment_record(visit, key, ref, self._records))
            if visit.invoice is not None:
                invoices.append(invoice_record(visit, visit.invoice, key, len(invoices), ref,
                                               self._records))
        return PatientBundle(patient, appointments, invoices)

    def _estimate_appointments(self) -> int:
        """Appointments the whole clinic will have: exact up to ESTIMATE_SAMPLE_PATIENTS
        patients, extrapolated from that many above it."""
        sample = min(self.spec.patients, ESTIMATE_SAMPLE_PATIENTS)
        planned = sum(len(self._plan(index).visits) for index in range(sample))
        return round(planned * self.spec.patients / sample)


def _invoice_to(identity: Identity) -> str:
    lines = [f"{identity.first_name} {identity.last_name}"]
    address = identity.address
    if address.address_1:
        lines.append(address.address_1)
    if address.city:
        lines.append(f"{address.city}  {address.state}  {address.post_code}")
    return "\r\n".join(lines)


def generate_clinic(spec: ClinicSpec) -> SyntheticClinic:
    """Build the clinic for `spec`, or raise ImpossibleClinicError naming the broken limit."""
    today = spec.today.toordinal()
    first_day = today - round(spec.years * 365.25)
    region = region_for_zone(spec.time_zone)
    calendar = ClinicCalendar(spec.time_zone, first_day - 10, today,
                              today + FUTURE_BOOKING_DAYS + 60)
    staff = build_staff(random.Random(f"{spec.seed}:clinic"), locations=spec.location_count,
                        practitioners=spec.practitioner_count, first_day=first_day, today=today,
                        region=region)
    ctx = ClinicContext.build(calendar=calendar, staff=staff, first_day=first_day,
                              cancellation_rate=spec.cancellation_rate,
                              late_share=spec.late_cancellation_share, dna_rate=spec.dna_rate)
    clinic = SyntheticClinic(spec, ctx, region)
    _check_volume(spec, clinic.expected_appointments, today - first_day)
    return clinic


def _check_volume(spec: ClinicSpec, expected: int, history_days: int) -> None:
    if expected > spec.max_appointments:
        raise ImpossibleClinicError(
            f"{spec.patients:,} patients over {spec.years:g} years need about {expected:,} "
            f"appointments, above max_appointments={spec.max_appointments:,}; "
            "use fewer patients, fewer years, or a higher max_appointments"
        )
    open_days = history_days * len(CLINIC_HOURS) / 7
    per_practitioner_day = expected / (spec.practitioner_count * open_days)
    if per_practitioner_day > MAX_APPOINTMENTS_PER_PRACTITIONER_DAY:
        raise ImpossibleClinicError(
            f"{spec.practitioner_count} practitioners would each see about "
            f"{per_practitioner_day:.0f} patients a day, above the limit of "
            f"{MAX_APPOINTMENTS_PER_PRACTITIONER_DAY}; add practitioners or ask for fewer patients"
        )
