"""Test doubles shared by the PMS client and pacing tests."""

from __future__ import annotations


class FakeClock:
    """A clock whose sleeps advance time instantly, recording each wait."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.sleeps.append(seconds)
        self.now += seconds
