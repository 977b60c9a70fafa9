"""What a synthetic clinic should look like, and the limits a request must stay inside."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

MIN_PATIENTS = 50
MAX_PATIENTS = 50_000
MAX_YEARS = 15.0
MAX_PRACTITIONERS = 500
MAX_LOCATIONS = 50
# A practitioner cannot see more than this many patients in one open day; a request that
# needs more is a clinic that could not exist.
MAX_APPOINTMENTS_PER_PRACTITIONER_DAY = 40


class ImpossibleClinicError(ValueError):
    """The requested clinic breaks a limit; the message names the limit and the value."""


@dataclass(frozen=True)
class ClinicSpec:
    """The knobs of `generate_clinic`. Same spec, same clinic, byte for byte.

    `today` is the snapshot date: every timestamp in the output is at or before 00:00 local
    time on `today`, no appointment falls on `today` itself, and "future" bookings start on a
    later day. The generator never reads the clock.
    """

    seed: int = 1
    patients: int = 2000
    years: float = 3.0
    today: date = date(2026, 11, 27)
    time_zone: str = "Australia/Melbourne"
    practitioners: int | None = None
    locations: int | None = None
    dna_rate: float = 0.05
    cancellation_rate: float = 0.12
    late_cancellation_share: float = 0.35
    max_appointments: int = 1_000_000

    def __post_init__(self) -> None:
        _check_whole_number("seed", self.seed)
        _check_range("patients", self.patients, MIN_PATIENTS, MAX_PATIENTS)
        _check_years(self.years)
        _check_today(self.today)
        _check_time_zone(self.time_zone)
        if self.practitioners is not None:
            _check_range("practitioners", self.practitioners, 1, MAX_PRACTITIONERS)
        if self.locations is not None:
            _check_range("locations", self.locations, 1, MAX_LOCATIONS)
        if self.practitioner_count < self.location_count:
            raise ImpossibleClinicError(
                f"practitioners ({self.practitioner_count}) must be at least locations "
                f"({self.location_count}): every location needs someone to see patients"
            )
        for name in ("dna_rate", "cancellation_rate", "late_cancellation_share"):
            _check_rate(name, getattr(self, name))
        _check_whole_number("max_appointments", self.max_appointments)
        if self.max_appointments < 1:
            raise ImpossibleClinicError(f"max_appointments must be at least 1, got {self.max_appointments}")

    @property
    def practitioner_count(self) -> int:
        """`practitioners`, or a size-based default: 2 at 50 patients, 4 at 2k, ~40 at 50k."""
        if self.practitioners is not None:
            return self.practitioners
        # Calibrated so small clinics have a handful of staff and large ones a few dozen.
        return max(2, round(self.patients**0.72 / 59))

    @property
    def location_count(self) -> int:
        """`locations`, or 1 under 1,000 patients, 2 under 10,000, else 3."""
        if self.locations is not None:
            return self.locations
        if self.patients < 1000:
            return 1
        return 2 if self.patients < 10_000 else 3


def _check_whole_number(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ImpossibleClinicError(f"{name} must be an int, got {value!r}")


def _check_range(name: str, value: object, low: int, high: int) -> None:
    _check_whole_number(name, value)
    if not low <= value <= high:  # type: ignore[operator]
        raise ImpossibleClinicError(f"{name} must be between {low:,} and {high:,}, got {value:,}")


def _check_years(years: object) -> None:
    if isinstance(years, bool) or not isinstance(years, int | float) or not math.isfinite(years):
        raise ImpossibleClinicError(f"years must be a finite number, got {years!r}")
    if not 0 < years <= MAX_YEARS:
        raise ImpossibleClinicError(f"years must be above 0 and at most {MAX_YEARS:g}, got {years}")


def _check_today(today: object) -> None:
    # A datetime is a date subclass, but a time of day would make "today" ambiguous.
    if not isinstance(today, date) or isinstance(today, datetime):
        raise ImpossibleClinicError(f"today must be a datetime.date, got {today!r}")


def _check_time_zone(name: object) -> None:
    try:
        ZoneInfo(str(name))
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise ImpossibleClinicError(f"time_zone must be an IANA zone name, got {name!r}") from error


def _check_rate(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ImpossibleClinicError(f"{name} must be a number between 0 and 1, got {value!r}")
    if not 0.0 <= value <= 1.0:
        raise ImpossibleClinicError(f"{name} must be between 0 and 1, got {value}")
