"""From the counts the KPI statement returns to the figures an answer carries: rates (null when
their denominator is zero, never 0), the Cliniko-compatible PVA, money as numbers, changes
between periods, and the KPIs our data cannot give, named with the reason."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

from patients.kpis.sql import COUNTS, MONEY

RATE_DIGITS = 4
PVA_DIGITS = 2

UNAVAILABLE = {
    "utilisation": "Practitioner availability (rostered hours) is not copied from the PMS, so booked "
    "minutes cannot be set against available minutes.",
    "outreach_conversion": "Outreach is not recorded yet (the outreach tables come in a later issue); "
    "no contact can be counted, so no conversion is reported.",
}

# Every figure of a period's KPIs, in the order an answer lists them. Counts exclude reschedules
# everywhere: a reschedule is counted apart, never as a DNA or a cancellation.
KPI_DEFINITIONS = {
    "appointments": "Appointments starting in the period (current, of counted types, linked to a patient).",
    "attended": "Not cancelled, not a DNA, and started (or the patient arrived).",
    "pending": "Booked, not started yet.",
    "dna": "Did not arrive, excluding reschedules.",
    "cancelled": "Cancelled (late ones included), excluding reschedules.",
    "late_cancelled": "Cancelled less than the organization's notice (default 24 h) before the start, "
    "excluding reschedules.",
    "rescheduled": "Cancellations and DNAs after which the patient held a future appointment at the end "
    "of that day (the cancellation's, or the missed visit's), in the clinic's time zone.",
    "appointments_due": "Denominator of the DNA and cancellation rates: attended + dna + cancelled.",
    "attendance_rate": "attended / (attended + dna + late_cancelled).",
    "dna_rate": "dna / appointments_due.",
    "cancellation_rate": "cancelled / appointments_due.",
    "late_cancellation_rate": "late_cancelled / appointments_due.",
    "visits_rebooked": "Attended visits after which the patient held a future appointment at the end of "
    "the visit day.",
    "visit_rebook_rate": "visits_rebooked / attended.",
    "patients_attended": "Patients with an attended visit in the period.",
    "patients_rebooked": "Of those, the patients holding a future appointment when the period ended.",
    "patient_rebook_rate": "patients_rebooked / patients_attended (locked at the period's end: a booking "
    "made later does not change it).",
    "no_future_appointment_rate": "1 - patient_rebook_rate.",
    "new_patients": "Patients whose first-ever attended visit is in the period (not the PMS record's "
    "creation).",
    "pva": "Patient visit average, Cliniko-compatible: attended / new_patients.",
    "bookings": "Appointments booked (created in the PMS) during the period, for that day or later.",
    "reactivations": "Patients who were lapsing, lapsed or dormant (no future appointment, gap ratio above "
    "1.5, and L_soft days or a gap ratio above 3) and booked an appointment in the period that was "
    "attended or is still pending; one per lapse.",
    "invoices": "Invoices issued in the period (clinic-local issue date), archived and deleted ones left "
    "out.",
    "revenue": "Invoice totals issued in the period, credits netted, archived and deleted invoices left out.",
    "credits": "Negative invoice totals (credits) netted in revenue, as a positive amount.",
    "utilisation": "Booked minutes (DNAs included) / available minutes. Null: see `unavailable`.",
    "outreach_conversion": "Contacted patients who booked within 30 days of the first contact. Null: see "
    "`unavailable`.",
}
RATE_FIGURES = (
    "attendance_rate",
    "dna_rate",
    "cancellation_rate",
    "late_cancellation_rate",
    "visit_rebook_rate",
    "patient_rebook_rate",
    "no_future_appointment_rate",
)
COUNT_FIGURES = (*COUNTS, "appointments_due")
_ZERO_ROW: dict[str, Any] = {**dict.fromkeys(COUNTS, 0), **dict.fromkeys(MONEY, Decimal(0))}


def rate(numerator: int, denominator: int, digits: int | None = RATE_DIGITS) -> float | None:
    if not denominator:
        return None
    return numerator / denominator if digits is None else round(numerator / denominator, digits)


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def kpis_from_row(row: dict[str, Any] | None, *, currency: str, exact: bool = False) -> dict[str, Any]:
    """A period's figures from its counts (None: nothing happened). Rates are rounded to
    RATE_DIGITS and the PVA to PVA_DIGITS unless `exact`."""
    row = row or _ZERO_ROW
    due = row["attended"] + row["dna"] + row["cancelled"]
    rebook = rate(row["patients_rebooked"], row["patients_attended"], None)
    computed = {
        "appointments_due": due,
        "attendance_rate": rate(row["attended"], row["attended"] + row["dna"] + row["late_cancelled"], None),
        "dna_rate": rate(row["dna"], due, None),
        "cancellation_rate": rate(row["cancelled"], due, None),
        "late_cancellation_rate": rate(row["late_cancelled"], due, None),
        "visit_rebook_rate": rate(row["visits_rebooked"], row["attended"], None),
        "patient_rebook_rate": rebook,
        "no_future_appointment_rate": None if rebook is None else 1 - rebook,
        "pva": rate(row["attended"], row["new_patients"], None),
        "revenue": float(row["revenue"]),
        "credits": float(row["credits"]),
        "utilisation": None,
        "outreach_conversion": None,
    }
    if not exact:
        computed.update({name: _rounded(computed[name], RATE_DIGITS) for name in RATE_FIGURES})
        computed["pva"] = _rounded(computed["pva"], PVA_DIGITS)
    figures = {name: row[name] if name in COUNTS else computed[name] for name in KPI_DEFINITIONS}
    return {**figures, "pva_definition": "cliniko", "currency": currency, "unavailable": dict(UNAVAILABLE)}


def changes(current: dict[str, Any], previous: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """For each figure: the change (in its own unit: rates in fractions) and the change relative
    to the previous period (null when that was zero or unknown). From `exact` figures, so that
    they are rounded once, here."""
    result = {}
    for name in (name for name in KPI_DEFINITIONS if name in current):
        now, before = current[name], previous.get(name)
        known = now is not None and before is not None
        result[name] = {
            "change": round(now - before, RATE_DIGITS) if known else None,
            "relative_change": round((now - before) / before, RATE_DIGITS) if known and before else None,
        }
    return result


def series_point(day: date, row: dict[str, Any] | None) -> dict[str, Any]:
    row = row or _ZERO_ROW
    return {
        "date": day.isoformat(),
        "bookings": row["bookings"],
        "attended": row["attended"],
        "cancellations": row["cancelled"],
        "dnas": row["dna"],
        "rescheduled": row["rescheduled"],
        "revenue": float(row["revenue"]),
        "new_patients": row["new_patients"],
        "reactivations": row["reactivations"],
    }


def _month_after(month: date, k: int) -> date:
    index = month.year * 12 + month.month - 1 + k
    return date(index // 12, index % 12 + 1, 1)


def cohort_rows(rows: list[dict[str, Any]], *, today: date) -> list[dict[str, Any]]:
    """A month's share is null until month m + k has begun, and `complete` once it has ended."""
    cohorts = []
    for row in rows:
        month, size = date.fromisoformat(row["month"]), row["new_patients"]
        retention = []
        for k, returned in enumerate(row["returned"], start=1):
            began = _month_after(month, k) <= today
            retention.append(
                {
                    "months_after": k,
                    "returned": returned if began else None,
                    "share": rate(returned, size) if began else None,
                    "complete": _month_after(month, k + 1) <= today,
                }
            )
        cohorts.append({"month": month.strftime("%Y-%m"), "new_patients": size, "retention": retention})
    return cohorts
