"""The judgement in a patient profile, in one place: stages, risk points, actions, texts.

Definitions follow ../shared/reference/retention-metrics.md; where it leaves a number open
(the weight of each risk component, the share of next year's visits a stage keeps), the number
is chosen here, documented, and the same for every organization. The SQL in `sql.py` applies
these; `reason_sentence` and `action_sentence` word them for people.
"""

from __future__ import annotations

from typing import Any

# Risk points by component (sum capped at 100). The gap component rises in steps so that a
# profile stays right for whole days (see PatientProfile.valid_until), and counts only while
# nothing is booked: a booked patient is not drifting, however long the gap.
GAP_POINTS = ((1.0, 0), (1.5, 10), (2.0, 20), (3.0, 30))  # gap ratio at most x: points; above 3: 40
GAP_POINTS_MAX = 40
NO_FUTURE_BOOKING = 20
DNA_POINTS, DNA_MAX = 10, 20  # each DNA in the last 90 days
LATE_POINTS, LATE_MAX = 5, 10  # each late cancellation in the last 90 days
UNREBOOKED_CANCELLATION = 10  # the last visit was cancelled and nothing is booked
FALLING_FREQUENCY = 10  # the last gap is over twice the earlier median gap
FALLING_FACTOR = 2.0
NEVER_CONVERTED = 30
# Bands: low < 25 <= medium < 50 <= high < 75 <= critical.
BANDS = ((75, "critical"), (50, "high"), (25, "medium"))

# Share of a year's expected visits a patient in each stage goes on to make (assumed weights).
STAGE_RETENTION = {
    "active": 1.0,
    "due": 0.7,
    "lapsing": 0.4,
    "lapsed": 0.15,
    "dormant": 0.05,
    "never_converted": 0.2,
}
# Without an outreach history: how likely contact is to succeed, by stage.
CONTACT_PREDICTION = {
    "active": "very_high",
    "due": "high",
    "lapsing": "medium",
    "lapsed": "low",
    "dormant": "very_low",
    "never_converted": "low",
}
PRIORITY_BY_BAND = {"critical": 1, "high": 2, "medium": 3, "low": 4}
NO_ACTION_PRIORITY = 5  # active with a low risk: nothing to do

ACTIONS = {
    "none": "Nothing to do: the next visit is booked.",
    "suggest_next_booking": "Suggest booking the next visit before it falls due.",
    "reminder": "Send a reminder to book.",
    "follow_up_missed": "Follow up the missed appointment and offer a new time.",
    "rebook_call": "Call to rebook.",
    "win_back": "Win-back call or offer.",
    "reactivation_message": "Low-touch reactivation message.",
    "first_visit_invite": "Invite to book a first visit.",
}


def _days(value: Any) -> str:
    return "1 day" if value == 1 else f"{value} days"


def reason_sentence(reason: dict[str, Any]) -> str:
    code = reason.get("code")
    if code == "overdue":
        return f"{_days(reason.get('days'))} since the last visit vs a usual {_days(reason.get('usual'))}"
    if code == "no_future_booking":
        return "no booking"
    if code == "recent_dna":
        return f"{reason.get('count')} missed appointment(s) in the last 90 days"
    if code == "recent_late_cancellation":
        return f"{reason.get('count')} late cancellation(s) in the last 90 days"
    if code == "unrebooked_cancellation":
        return "the last appointment was cancelled and not rebooked"
    if code == "falling_frequency":
        return f"visits are further apart: the last gap was {_days(reason.get('last_gap'))}"
    if code == "never_converted":
        return "never attended a visit"
    return str(code)


def reasons_sentence(reasons: list[dict[str, Any]]) -> str:
    """ "no booking; 45 days since the last visit vs a usual 14", as the reference words it."""
    ordered = sorted(reasons, key=lambda r: -int(r.get("points") or 0))
    return "; ".join(reason_sentence(r) for r in ordered)


def action_sentence(code: str) -> str:
    return ACTIONS.get(code, code)
