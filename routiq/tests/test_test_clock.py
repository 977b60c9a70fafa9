"""ROUTIQ_TEST_CLOCK, the moment a test run can be started at (conftest.py)."""

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from conftest import clock_from

SYDNEY = ZoneInfo("Australia/Sydney")


def test_an_instant_is_taken_as_it_is():
    assert clock_from("2026-12-31T13:05:00Z") == datetime(2026, 12, 31, 13, 5, tzinfo=UTC)


def test_a_wall_time_in_a_zone_is_the_next_one():
    before = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)  # 23:00 in Sydney
    after = datetime(2026, 12, 3, 13, 30, tzinfo=UTC)  # 00:30 there, the next day
    assert clock_from("00:05 Australia/Sydney", now=before) == datetime(2026, 12, 4, 0, 5, tzinfo=SYDNEY)
    assert clock_from("00:05 Australia/Sydney", now=after) == datetime(2026, 12, 5, 0, 5, tzinfo=SYDNEY)
    # In winter Sydney is UTC+10: its midnight is an hour later in UTC.
    winter = clock_from("00:05 Australia/Sydney", now=datetime(2026, 7, 1, tzinfo=UTC))
    assert winter.astimezone(UTC) == datetime(2026, 7, 1, 14, 5, tzinfo=UTC)


@pytest.mark.parametrize("value", ["2026-12-31T13:05:00", "00:05 Mars/Olympus", "noon Australia/Sydney"])
def test_a_moment_that_names_no_instant_is_refused(value):
    with pytest.raises((ValueError, KeyError)):
        clock_from(value)
