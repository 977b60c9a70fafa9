"""Calendar and clock for the synthetic clinic, on integers rather than datetimes.

Days are proleptic-Gregorian ordinals (`date.toordinal()`), instants are Unix seconds. A
50,000-patient clinic writes about four million timestamps, and doing that arithmetic with
aware datetimes would cost more than everything else put together.
"""

from __future__ import annotations

from datetime import date, datetime, time
from zoneinfo import ZoneInfo

UNIX_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
SECONDS_PER_DAY = 86_400
SLOT_MINUTES = 15

# Opening hours as (open, close) in minutes after local midnight, Monday = 0; Sunday closed.
CLINIC_HOURS: dict[int, tuple[int, int]] = {
    0: (7 * 60, 19 * 60),
    1: (7 * 60, 19 * 60),
    2: (7 * 60, 19 * 60),
    3: (7 * 60, 19 * 60),
    4: (7 * 60, 19 * 60),
    5: (8 * 60, 14 * 60),
}
# (month, day) the clinic is shut every year.
CLOSED_DATES = frozenset({(1, 1), (12, 25), (12, 26)})


def day_epoch(day: int) -> int:
    """Unix seconds at 00:00 UTC on a day ordinal: for back-office times, not visits."""
    return (day - UNIX_EPOCH_ORDINAL) * SECONDS_PER_DAY


def weekday(day: int) -> int:
    """Monday = 0, as `date.weekday()`, without building a date."""
    return (day + 6) % 7


class ClinicCalendar:
    """Open days, appointment slots and local-to-UTC conversion for one clinic.

    Every table is sized by the history window, never by the number of patients.
    """

    def __init__(self, zone_name: str, first_day: int, today: int, last_day: int) -> None:
        self.zone = ZoneInfo(zone_name)
        self.first_day = first_day
        self.today = today
        self.last_day = last_day
        self._next_open = self._build_next_open(first_day, today, last_day)
        self._offsets: dict[int, int] = {}
        self._slots: dict[tuple[int, int], tuple[int, ...]] = {}

    @staticmethod
    def _build_next_open(first_day: int, today: int, last_day: int) -> list[int]:
        # `today` counts as closed so that the snapshot has no half-finished day in it.
        next_open = [0] * (last_day - first_day + 1)
        following = last_day + 1
        for day in range(last_day, first_day - 1, -1):
            calendar_date = date.fromordinal(day)
            closed = (
                weekday(day) not in CLINIC_HOURS
                or (calendar_date.month, calendar_date.day) in CLOSED_DATES
                or day == today
            )
            if not closed:
                following = day
            next_open[day - first_day] = following
        return next_open

    def open_day_on_or_after(self, day: int) -> int:
        """The first day the clinic is open, from `day` on (past the window: the day itself)."""
        if day < self.first_day:
            day = self.first_day
        if day > self.last_day:
            return day
        return self._next_open[day - self.first_day]

    def slot_starts(self, day_of_week: int, duration_minutes: int) -> tuple[int, ...]:
        """Start minutes on the 15-minute grid that let the visit end by closing time."""
        key = (day_of_week, duration_minutes)
        slots = self._slots.get(key)
        if slots is None:
            opens, closes = CLINIC_HOURS[day_of_week]
            slots = tuple(range(opens, closes - duration_minutes + 1, SLOT_MINUTES))
            self._slots[key] = slots
        return slots

    def local_to_epoch(self, day: int, minute_of_day: int) -> int:
        """Unix seconds of a local wall-clock time during opening hours.

        DST changes happen at 02:00-03:00, before opening, so the offset at noon holds for
        the whole working day and one lookup per day is enough.
        """
        offset = self._offsets.get(day)
        if offset is None:
            noon = datetime.combine(date.fromordinal(day), time(12), tzinfo=self.zone)
            offset = int(noon.utcoffset().total_seconds())  # type: ignore[union-attr]
            self._offsets[day] = offset
        return (day - UNIX_EPOCH_ORDINAL) * SECONDS_PER_DAY + minute_of_day * 60 - offset

    def midnight_epoch(self, day: int) -> int:
        """Unix seconds of 00:00 local time on `day`, exact even on a DST change day."""
        midnight = datetime.combine(date.fromordinal(day), time(0), tzinfo=self.zone)
        return int(midnight.timestamp())


class TimestampFormatter:
    """Cliniko's UTC `YYYY-MM-DDTHH:MM:SSZ` and `YYYY-MM-DD`, from integers, memoised by day."""

    def __init__(self) -> None:
        self._day_prefixes: dict[int, str] = {}
        self._hour_minutes = [f"{minute // 60:02d}:{minute % 60:02d}:" for minute in range(1440)]
        self._seconds = [f"{second:02d}Z" for second in range(60)]

    def iso(self, epoch: int) -> str:
        unix_day, second_of_day = divmod(epoch, SECONDS_PER_DAY)
        prefix = self._day_prefixes.get(unix_day)
        if prefix is None:
            prefix = date.fromordinal(unix_day + UNIX_EPOCH_ORDINAL).isoformat() + "T"
            self._day_prefixes[unix_day] = prefix
        minute, second = divmod(second_of_day, 60)
        return prefix + self._hour_minutes[minute] + self._seconds[second]

    def iso_or_none(self, epoch: int | None) -> str | None:
        return None if epoch is None else self.iso(epoch)

    @staticmethod
    def day(day: int) -> str:
        """`YYYY-MM-DD` of a day ordinal."""
        return date.fromordinal(day).isoformat()
