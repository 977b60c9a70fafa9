"""The clinic KPIs as one SQL statement over a run of consecutive periods (retention-metrics.md).

Periods are given as their boundaries: `bounds`, the UTC instants of the clinic-local midnights
that start each period and end the last, and `days`, the same local dates (invoices carry a
date, not a moment). Every event falls in the period `width_bucket` finds for it, so a visit at
23:30 local on a period's last day belongs to that period whatever its UTC date. One statement
serves the KPIs of a period and of the one before it (two buckets), and daily series (one
bucket a day).

"Holds a future appointment at t" is asked for every visit (at the end of its day), period
end and booking (just before it was made); rather than one lookup each, it is answered for all
of them in one ordered pass per patient over the appointments starting in the range or after
it (`swept`): an appointment is held from its creation until it starts or is cancelled, so one
is held at t when the latest such end among the appointments created by t lies after t.

The reactivations need, for a booking made while nothing was held, the last visit before it
and the usual interval then (the median gap between the last `visits` visits). Among the kept
appointments in start order (`kept`), the ones just before the booking's own appointment are
those visits whenever the first of them started before the booking was made; they are complete
when there are `visits` of them, or when the patient's first visit ever lies in the range (a
new patient). Otherwise they are looked up, as are new patients themselves (is the first
attended visit of the range the first ever?).

Parameters (all named): org, tz, now, bounds (timestamptz[]), midnights (every local midnight
of the range, timestamptz[]), days (date[]), range_start, range_end (the outer bounds), late
(interval), excluded (appointment type ids), rebook (bool: compute the rebooking figures),
cohorts (bool), l_soft, visits, fallback_interval (the organization's median gap, else the
default).

Conventions are those of the profile refresh (`patients/profiles/sql.py`): outcomes as
`patients.outcomes` defines them, archived/deleted rows and excluded appointment types left
out, appointments without a linked patient left out, a reschedule being a cancellation or DNA
after which the patient holds a future appointment at the end of that day.
"""

from __future__ import annotations

from functools import cache

GROUP_KEYS = {
    None: "NULL::bigint",
    "practitioner": "{alias}.practitioner_id",
    "location": "{alias}.location_id",
}

_NAMES = {
    None: ("", "NULL::text"),
    "practitioner": (
        "LEFT JOIN patients_practitioner n ON n.id = r.key",
        "nullif(concat_ws(' ', nullif(n.title, ''), nullif(n.first_name, ''), nullif(n.last_name, '')), '')",
    ),
    "location": ("LEFT JOIN clinics_location n ON n.id = r.key", "n.name"),
}

COHORT_MONTHS = 6


def counted(alias: str) -> str:
    """Rows every figure counts: current, of a type that is not excluded."""
    return (
        f"{alias}.archived_at IS NULL AND {alias}.deleted_at IS NULL AND ({alias}.appointment_type_id IS NULL"
        f" OR NOT {alias}.appointment_type_id = ANY(%(excluded)s::bigint[]))"
    )


def kept(alias: str) -> str:
    """Attended or still pending: neither cancelled nor missed."""
    return f"{alias}.cancelled_at IS NULL AND NOT {alias}.did_not_arrive"


def attended(alias: str) -> str:
    return f"{kept(alias)} AND ({alias}.patient_arrived OR {alias}.starts_at <= %(now)s)"


def outcome(alias: str) -> str:
    """`patients.outcomes.outcome_expression` in SQL (tests hold the two equal)."""
    return f"""CASE
        WHEN {alias}.cancelled_at IS NOT NULL AND {alias}.cancelled_at > {alias}.starts_at - %(late)s
            THEN 'late_cancelled'
        WHEN {alias}.cancelled_at IS NOT NULL THEN 'cancelled'
        WHEN {alias}.did_not_arrive THEN 'dna'
        WHEN {alias}.patient_arrived OR {alias}.starts_at <= %(now)s THEN 'attended'
        ELSE 'booked'
    END"""


def holds_future(patient: str, moment: str) -> str:
    """EXISTS: the patient holds a future appointment at `moment` (created by then, starting
    later, not cancelled by then)."""
    return f"""EXISTS (
        SELECT 1 FROM patients_appointment h
        WHERE h.organization_id = %(org)s AND h.patient_id = {patient} AND h.starts_at > {moment}
          AND {counted("h")}
          AND coalesce(h.pms_created_at, '-infinity') <= {moment}
          AND (h.cancelled_at IS NULL OR h.cancelled_at > {moment})
    )"""


def _end_of_local_day(moment: str) -> str:
    """The local midnight after `moment`: looked up among the range's midnights when it falls in
    the range (a binary search, cheaper than converting time zones), computed otherwise."""
    midnights = "%(midnights)s::timestamptz[]"
    computed = f"((date_trunc('day', ({moment}) AT TIME ZONE %(tz)s) + interval '1 day') AT TIME ZONE %(tz)s)"
    return (
        f"CASE WHEN {moment} >= %(range_start)s AND {moment} < %(range_end)s"
        f" THEN ({midnights})[width_bucket({moment}, {midnights}) + 1] ELSE {computed} END"
    )


def _start_of_local_day(moment: str) -> str:
    """The local midnight at or before `moment`, which lies in the range."""
    return f"(%(midnights)s::timestamptz[])[width_bucket({moment}, %(midnights)s::timestamptz[])]"


def _local_date(moment: str) -> str:
    return f"(({moment}) AT TIME ZONE %(tz)s)::date"


def _month_index(moment: str) -> str:
    """Months since year 0 of the local month of `moment`."""
    local = f"(({moment}) AT TIME ZONE %(tz)s)"
    return f"(extract(year FROM {local}) * 12 + extract(month FROM {local}))::int"


def _cohorts() -> str:
    """The last period's new patients by the local month m of their first visit, and for
    k = 1..COHORT_MONTHS how many of them had an attended visit in month m + k (JSON:
    [{month, new_patients, returned}])."""
    returned = ", ".join(f"count(*) FILTER (WHERE {k} = ANY(c.later))" for k in range(1, COHORT_MONTHS + 1))
    return f"""(
    SELECT coalesce(
        json_agg(json_build_object('month', c.month, 'new_patients', c.size, 'returned', c.returned)
                 ORDER BY c.month),
        '[]'::json)
    FROM (
        SELECT c.month, count(*) AS size, ARRAY[{returned}] AS returned
        FROM (
            SELECT date_trunc('month', n.starts_at AT TIME ZONE %(tz)s)::date AS month, array(
                SELECT DISTINCT {_month_index("v.starts_at")} - {_month_index("n.starts_at")}
                FROM patients_appointment v
                WHERE v.organization_id = %(org)s AND v.patient_id = n.patient_id
                  AND v.starts_at > n.starts_at
                  AND v.starts_at < n.starts_at + interval '{COHORT_MONTHS + 1} months'
                  AND {counted("v")} AND {attended("v")}
            ) AS later
            FROM newcomers n WHERE n.bucket = cardinality(%(bounds)s::timestamptz[]) - 1
        ) c
        GROUP BY c.month
    ) c
)"""


# What each source adds up to; every count a KPI is made of. A reschedule (`flag` on a DNA or
# a cancellation) is counted apart, never as a DNA or a cancellation.
_CANCELLED = "f.outcome IN ('cancelled', 'late_cancelled')"
_BRANCHES: dict[str, tuple[str, dict[str, str]]] = {
    "visits": (
        "visits",
        {
            "appointments": "count(*)",
            "attended": "count(*) FILTER (WHERE f.outcome = 'attended')",
            "pending": "count(*) FILTER (WHERE f.outcome = 'booked')",
            "dna": "count(*) FILTER (WHERE f.outcome = 'dna' AND NOT f.flag)",
            "cancelled": f"count(*) FILTER (WHERE {_CANCELLED} AND NOT f.flag)",
            "late_cancelled": "count(*) FILTER (WHERE f.outcome = 'late_cancelled' AND NOT f.flag)",
            "rescheduled": f"count(*) FILTER (WHERE (f.outcome = 'dna' OR {_CANCELLED}) AND f.flag)",
            "visits_rebooked": "count(*) FILTER (WHERE f.outcome = 'attended' AND f.flag)",
        },
    ),
    "patients": (
        "(SELECT * FROM swept WHERE kind = 'patient')",
        {
            "patients_attended": "count(DISTINCT f.patient_id)",
            "patients_rebooked": "count(DISTINCT f.patient_id) FILTER (WHERE f.held)",
        },
    ),
    "bookings": ("(SELECT * FROM swept WHERE kind = 'booking')", {"bookings": "count(*)"}),
    "newcomers": ("newcomers", {"new_patients": "count(*)"}),
    "reactivations": ("reactivations", {"reactivations": "count(*)"}),
    "invoices": (
        "billed",
        {
            "invoices": "count(*)",
            "revenue": "coalesce(sum(f.total_amount), 0)",
            "credits": "coalesce(-sum(f.total_amount) FILTER (WHERE f.total_amount < 0), 0)",
        },
    ),
}
MONEY = ("revenue", "credits")
COUNTS = tuple(name for _, figures in _BRANCHES.values() for name in figures if name not in MONEY)


def _results(group_by: str | None) -> str:
    """Each source aggregated on its own (per period, and per group with a total when grouping),
    then added up: no sort of every event together."""
    grouping = "GROUPING SETS ((f.bucket, f.key), (f.bucket))" if group_by else "f.bucket, f.key"
    total = "GROUPING(f.key) = 1" if group_by else "true"
    columns = [name for _, figures in _BRANCHES.values() for name in figures]
    parts = []
    for source, figures in _BRANCHES.values():
        values = ", ".join(
            f"{figures[c]} AS {c}" if c in figures else f"0{'::numeric' if c in MONEY else ''} AS {c}"
            for c in columns
        )
        parts.append(
            f"SELECT f.bucket, f.key, {total} AS is_total, {values} FROM {source} f GROUP BY {grouping}"
        )
    sums = ", ".join(f"sum({c}){'' if c in MONEY else '::bigint'} AS {c}" for c in columns)
    union = "\n    UNION ALL ".join(parts)
    return f"""results AS (
    SELECT u.bucket, u.key, u.is_total, {sums}
    FROM (
    {union}
    ) u
    WHERE u.bucket BETWEEN 1 AND cardinality(%(bounds)s::timestamptz[]) - 1
    GROUP BY u.bucket, u.key, u.is_total
)"""


def _history(visits: int) -> int:
    """How many visits before a booking the usual interval needs: `visits` (their gaps), or
    just the last one when fewer than two gaps are taken (the organization's interval then)."""
    return visits if visits >= 3 else 1


def _usual_interval(visits: int) -> str:
    """The usual interval as of a candidate's last visit (`c.before_1`): the median of the gaps
    between `c.before_1` .. `c.before_<visits>`; with fewer than two gaps, the organization's."""
    if _history(visits) < 3:
        return "%(fallback_interval)s::float"
    gaps = ", ".join(
        f"date_part('epoch', c.before_{n} - c.before_{n + 1}) / 86400.0" for n in range(1, visits)
    )
    return (
        "(SELECT CASE WHEN count(g) >= 2 THEN percentile_cont(0.5) WITHIN GROUP (ORDER BY g)"
        f" ELSE %(fallback_interval)s::float END FROM unnest(ARRAY[{gaps}]) g)"
    )


@cache
def kpi_sql(group_by: str | None, *, visits: int = 5) -> str:
    key = GROUP_KEYS[group_by].format(alias="a")
    invoice_key = GROUP_KEYS[group_by].format(alias="i")
    join, name = _NAMES[group_by]
    last_bucket = "r.bucket = cardinality(%(bounds)s::timestamptz[]) - 1"
    history = _history(visits)
    before = "".join(f", lag(k.starts_at, {n}) OVER w AS before_{n}" for n in range(1, history + 1))
    befores = ", ".join(f"k.before_{n}" for n in range(1, history + 1))
    return f"""
WITH
-- The appointments of the range, and every one after it: an appointment held at any moment of
-- the range starts after that moment.
appts AS MATERIALIZED (
    SELECT a.id, a.patient_id, a.starts_at, a.cancelled_at, {key} AS key,
           coalesce(a.pms_created_at, '-infinity') AS created_at,
           least(a.starts_at, coalesce(a.cancelled_at, 'infinity')) AS held_until,
           width_bucket(a.starts_at, %(bounds)s::timestamptz[]) AS bucket,
           {outcome("a")} AS outcome, {kept("a")} AS kept
    FROM patients_appointment a
    WHERE a.organization_id = %(org)s AND a.patient_id IS NOT NULL AND {counted("a")}
      AND a.starts_at >= %(range_start)s
),
-- The range's appointments, each with the moment that decides whether it was followed by a
-- future appointment (the end of the cancellation's day, else of the visit's), and whether the
-- sweep answers it (a cancellation made before the range is looked up instead).
judged AS (
    SELECT j.*, j.moment >= %(range_start)s AND (j.outcome <> 'attended' OR %(rebook)s) AS swept
    FROM (
        SELECT a.*, CASE
            WHEN a.outcome IN ('cancelled', 'late_cancelled') THEN {_end_of_local_day("a.cancelled_at")}
            WHEN a.outcome IN ('attended', 'dna') THEN {_end_of_local_day("a.starts_at")}
        END AS moment
        FROM appts a WHERE a.starts_at < %(range_end)s
    ) j
),
-- Kept appointments in start order, with the starts of the `visits` before each one.
kept AS (
    SELECT k.*,
           k.outcome = 'attended'
               AND count(*) FILTER (WHERE k.outcome = 'attended') OVER w = 1 AS first_attended
           {before}
    FROM appts k WHERE k.kept
    WINDOW w AS (PARTITION BY k.patient_id ORDER BY k.starts_at, k.id ROWS UNBOUNDED PRECEDING)
),
-- Every appointment from its creation (holding until `hold`), bookings among them (made in a
-- period, for that day or later: one entered for an earlier day records a visit), and the
-- questions: each judged visit at its moment, each patient attended at its period's end.
timeline AS (
    SELECT a.patient_id, a.created_at AS at, CASE WHEN a.kept THEN 0 ELSE 1 END AS ord,
           CASE WHEN a.created_at < a.held_until THEN a.held_until END AS hold,
           CASE WHEN a.booking THEN 'booking' END AS kind, a.id,
           CASE WHEN a.booking THEN width_bucket(a.created_at, %(bounds)s::timestamptz[]) END AS bucket,
           a.key, NULL AS outcome, a.kept, a.starts_at
    FROM (
        SELECT a.*, a.created_at >= %(range_start)s AND a.created_at < %(range_end)s
                    AND a.starts_at >= {_start_of_local_day("a.created_at")} AS booking
        FROM appts a
    ) a
    WHERE a.created_at < a.held_until OR a.booking
    UNION ALL
    SELECT j.patient_id, j.moment, 2, NULL, 'visit', j.id, j.bucket, j.key, j.outcome, NULL, NULL
    FROM judged j WHERE j.swept
    UNION ALL
    SELECT DISTINCT j.patient_id, (%(bounds)s::timestamptz[])[j.bucket + 1], 2, NULL::timestamptz, 'patient',
           NULL::bigint, j.bucket, j.key, NULL, NULL::boolean, NULL::timestamptz
    FROM judged j WHERE j.outcome = 'attended' AND %(rebook)s
),
-- `held`: the latest end among the appointments created before the row. At equal times the
-- questions come after the appointments created then (held by then), and a booking (kept
-- appointments first) sees only those made before it.
swept AS MATERIALIZED (
    SELECT s.* FROM (
        SELECT t.kind, t.id, t.patient_id, t.at, t.bucket, t.key, t.outcome, t.kept, t.starts_at,
               coalesce(max(t.hold) OVER w > t.at, false) AS held
        FROM timeline t
        WINDOW w AS (
            PARTITION BY t.patient_id ORDER BY t.at, t.ord ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING
        )
    ) s
    WHERE s.kind IS NOT NULL
),
visits AS (
    SELECT s.bucket, s.key, s.outcome, s.held AS flag FROM swept s WHERE s.kind = 'visit'
    UNION ALL
    SELECT j.bucket, j.key, j.outcome,
           coalesce(j.moment < %(range_start)s, false) AND {holds_future("j.patient_id", "j.moment")}
    FROM judged j WHERE NOT coalesce(j.swept, false)
),
-- The first attended visit of the range of each patient who had none before it: a new patient.
newcomers AS (
    SELECT k.patient_id, k.bucket, k.key, k.starts_at FROM kept k
    WHERE k.first_attended AND k.starts_at < %(range_end)s AND NOT EXISTS (
        SELECT 1 FROM patients_appointment v
        WHERE v.organization_id = %(org)s AND v.patient_id = k.patient_id AND v.starts_at < %(range_start)s
          AND {counted("v")} AND {attended("v")}
    )
),
-- Bookings (attended or still pending) made while the patient held no future appointment, with
-- the last visit before each and the usual interval then: from `kept` when it knows them (the
-- visits before the booking's appointment started before it was made, and either there are
-- enough of them or the patient's first visit ever is in the range), else looked up. Never for a
-- booking made on a day the patient had already been in: not a return.
candidates AS (
    SELECT s.patient_id, s.id, s.at AS booked_at, s.bucket, s.key, {befores},
           coalesce(
               s.starts_at > s.at AND (k.before_1 IS NULL OR k.before_1 <= s.at)
               AND (k.before_{history} IS NOT NULL OR n.patient_id IS NOT NULL), false
           ) AS known
    FROM swept s JOIN kept k ON k.id = s.id LEFT JOIN newcomers n ON n.patient_id = s.patient_id
    WHERE s.kind = 'booking' AND s.kept AND NOT s.held
      AND NOT coalesce(
          s.starts_at > s.at AND k.before_1 <= s.at AND k.before_1 >= {_start_of_local_day("s.at")}, false
      )
),
returns AS (
    SELECT c.patient_id, c.id, c.booked_at, c.bucket, c.key, c.before_1 AS last_at,
           {_usual_interval(visits)} AS usual
    FROM candidates c WHERE c.known
    UNION ALL
    SELECT c.patient_id, c.id, c.booked_at, c.bucket, c.key, h.last_at,
           CASE WHEN h.gaps >= 2 THEN h.median_gap ELSE %(fallback_interval)s::float END
    FROM candidates c
    CROSS JOIN LATERAL (
        SELECT max(g.starts_at) AS last_at, count(g.gap) AS gaps,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY g.gap) AS median_gap
        FROM (
            SELECT w.starts_at,
                   date_part('epoch', w.starts_at - lag(w.starts_at) OVER (ORDER BY w.starts_at)) / 86400.0
                       AS gap
            FROM (
                SELECT v.starts_at FROM patients_appointment v
                WHERE v.organization_id = %(org)s AND v.patient_id = c.patient_id
                  AND v.starts_at <= c.booked_at
                  AND v.id <> c.id AND {counted("v")} AND {kept("v")}
                ORDER BY v.starts_at DESC LIMIT %(visits)s
            ) w
        ) g
    ) h
    WHERE NOT c.known
),
-- Of those, the patients who were lapsing, lapsed or dormant when they booked (the profile's
-- stages): one reactivation per lapse (per last visit), its first booking.
reactivations AS (
    SELECT DISTINCT ON (r.patient_id, r.last_at) r.patient_id, r.key, r.bucket
    FROM returns r
    CROSS JOIN LATERAL (SELECT {_local_date("r.booked_at")} - {_local_date("r.last_at")} AS days) d
    CROSS JOIN LATERAL (SELECT coalesce(d.days / nullif(r.usual, 0), 'infinity'::float) AS gap_ratio) q
    WHERE r.last_at IS NOT NULL AND d.days > 0
      AND q.gap_ratio > 1.5 AND (q.gap_ratio > 3 OR d.days >= %(l_soft)s)
    ORDER BY r.patient_id, r.last_at, r.booked_at, r.id
),
billed AS (
    SELECT {invoice_key} AS key, width_bucket(i.issue_date, %(days)s::date[]) AS bucket, i.total_amount
    FROM patients_invoice i
    WHERE i.organization_id = %(org)s AND i.issue_date >= (%(days)s::date[])[1]
      AND i.issue_date < (%(days)s::date[])[cardinality(%(days)s::date[])]
      AND i.archived_at IS NULL AND i.deleted_at IS NULL
),
{_results(group_by)}
SELECT r.*, {name} AS name,
       CASE WHEN %(cohorts)s AND r.is_total AND {last_bucket} THEN {_cohorts()} END AS cohorts
FROM results r {join}
ORDER BY r.is_total DESC, name NULLS LAST, r.key NULLS LAST, r.bucket
"""
