"""The profile refresh as one SQL statement: appointments and invoices of the target patients in,
one upserted `patient_conversation_profile` row per patient out. No per-patient round trips.

Parameters (all named): org, tz (IANA zone), now, today (the clinic's date), all_patients
(bool) or ids (patient ids), late (interval), excluded (appointment type ids), visits (how many
last visits the usual interval is taken over), default_interval, baseline_interval,
baseline_value, l_soft, l_hard, dormant.

Appointment outcomes are `patients.outcomes` (the same rule as `outcome_expression`; tests
hold the two equal). Lifecycle stages, engagement, risk and actions follow
retention-metrics.md with the weights of `rules.py`.
"""

from __future__ import annotations

from functools import cache

from patients.profiles import rules


def _gap_points() -> str:
    steps = " ".join(f"WHEN gap_ratio <= {ratio} THEN {points}" for ratio, points in rules.GAP_POINTS)
    return f"CASE WHEN days_since IS NULL THEN 0 {steps} ELSE {rules.GAP_POINTS_MAX} END"


def _band() -> str:
    steps = " ".join(f"WHEN score >= {floor} THEN '{band}'" for floor, band in rules.BANDS)
    return f"CASE {steps} ELSE 'low' END"


def _by_stage(mapping: dict[str, object], *, quote: bool) -> str:
    cases = " ".join(
        f"WHEN stage = '{stage}' THEN {repr(value) if quote else value}" for stage, value in mapping.items()
    )
    return f"CASE {cases} END"


def _earliest_after(after: str, candidates: list[str]) -> str:
    """The earliest of `candidates` later than `after` (NULL when none is): `least` skips the
    NULLs. Plain expressions, where a subquery over the candidates cost a subplan per profile."""
    return "least(" + ", ".join(f"CASE WHEN {c} > {after} THEN {c} END" for c in candidates) + ")"


def _gap_days(starts_at: str, window: str) -> str:
    """Days since the visit before this one (the next row of `window`, which orders the newest
    first), on the clinic's clock: 9 am to 9 am a fortnight later is 14 days across a change to
    daylight saving too, as days since the last visit are counted in its calendar. A patient's
    usual interval and the organization's baseline are both measured this way."""
    return (
        f"extract(epoch FROM ({starts_at} AT TIME ZONE %(tz)s)"
        f" - (lead({starts_at}) OVER {window} AT TIME ZONE %(tz)s)) / 86400.0"
    )


def _expiry() -> str:
    return _earliest_after("%(now)s", ["j.next_at", "(j.oldest_in_90d + interval '90 days')"])


def _day_expiry() -> str:
    last = "(j.last_attended_at AT TIME ZONE %(tz)s)::date"
    multiples = [f"floor({m} * j.interval_days)::int + 1" for m in (1, 1.5, 2, 3)]
    days = [*multiples, "%(l_soft)s", "%(l_hard)s", "%(dormant)s"]
    return _earliest_after("%(today)s::date", [f"({last} + {d})" for d in days])


@cache
def refresh_sql() -> str:
    priority = " ".join(f"WHEN band = '{band}' THEN {p}" for band, p in rules.PRIORITY_BY_BAND.items())
    return f"""
WITH targets AS (
    SELECT p.id AS patient_id FROM patients_patient p
    WHERE p.organization_id = %(org)s AND (%(all_patients)s OR p.id = ANY(%(ids)s::bigint[]))
),
appts AS (
    SELECT a.id, a.patient_id, a.starts_at, a.cancelled_at, a.pms_created_at, a.appointment_type_id,
           a.practitioner_id, a.location_id, ty.price,
           CASE
               WHEN a.cancelled_at IS NOT NULL AND a.cancelled_at > a.starts_at - %(late)s THEN 'late_cancelled'
               WHEN a.cancelled_at IS NOT NULL THEN 'cancelled'
               WHEN a.did_not_arrive THEN 'dna'
               WHEN a.patient_arrived OR a.starts_at <= %(now)s THEN 'attended'
               ELSE 'booked'
           END AS outcome
    FROM patients_appointment a
    LEFT JOIN patients_appointmenttype ty ON ty.organization_id = %(org)s AND ty.id = a.appointment_type_id
    -- The targets as a filter (a hashed list), not a join: joined, the planner (which knows
    -- nothing of a CTE's values) hashed the whole organization's appointments to probe them.
    WHERE a.organization_id = %(org)s AND a.patient_id IS NOT NULL
      AND (%(all_patients)s OR a.patient_id = ANY(%(ids)s::bigint[])) AND a.archived_at IS NULL AND a.deleted_at IS NULL
      AND (a.appointment_type_id IS NULL OR NOT a.appointment_type_id = ANY(%(excluded)s::bigint[]))
),
-- A cancellation or DNA is a reschedule when, at the end of that day (the cancellation's day,
-- or the missed visit's), the patient holds a future appointment: created by then, starting
-- later, not cancelled by then.
marked AS (
    SELECT x.*, (x.event_eod IS NOT NULL AND EXISTS (
        SELECT 1 FROM patients_appointment b
        WHERE b.organization_id = %(org)s AND b.patient_id = x.patient_id AND b.starts_at > x.event_eod
          AND b.id <> x.id AND b.archived_at IS NULL AND b.deleted_at IS NULL
          AND coalesce(b.pms_created_at, '-infinity') <= x.event_eod
          AND (b.cancelled_at IS NULL OR b.cancelled_at > x.event_eod)
          AND (b.appointment_type_id IS NULL OR NOT b.appointment_type_id = ANY(%(excluded)s::bigint[]))
    )) AS rescheduled,
    x.starts_at >= %(now)s - interval '90 days' AND x.starts_at <= %(now)s AS in_90d
    FROM (
        SELECT a.*, CASE WHEN a.outcome IN ('cancelled', 'late_cancelled', 'dna') THEN
            (date_trunc('day', (CASE WHEN a.outcome = 'dna' THEN a.starts_at ELSE a.cancelled_at END)
                AT TIME ZONE %(tz)s) + interval '1 day') AT TIME ZONE %(tz)s END AS event_eod
        FROM appts a
        -- Kept a subquery (not folded into the lookup above), so that event_eod reaches it as a
        -- value: folded in, its time zone functions, which are not leakproof, may not run before
        -- the row-level security policy, and the application role's lookup read every one of
        -- the patient's appointments instead of the index range after event_eod.
        OFFSET 0
    ) x
),
visits AS (
    SELECT patient_id, appointment_type_id, practitioner_id, location_id,
           row_number() OVER w_desc AS rn,
           -- the gap since the visit before it (the next one down: one ordering, one sort)
           {_gap_days("starts_at", "w_desc")} AS gap
    FROM marked WHERE outcome = 'attended'
    WINDOW w_desc AS (PARTITION BY patient_id ORDER BY starts_at DESC, id DESC)
),
rhythm AS (
    SELECT patient_id,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY gap)
               FILTER (WHERE rn <= %(visits)s - 1 AND gap IS NOT NULL) AS median_gap,
           count(gap) FILTER (WHERE rn <= %(visits)s - 1) AS gaps,
           max(gap) FILTER (WHERE rn = 1) AS last_gap,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY gap)
               FILTER (WHERE rn BETWEEN 2 AND %(visits)s AND gap IS NOT NULL) AS earlier_gap,
           count(gap) FILTER (WHERE rn BETWEEN 2 AND %(visits)s) AS earlier_gaps,
           mode() WITHIN GROUP (ORDER BY appointment_type_id) AS primary_type_id,
           mode() WITHIN GROUP (ORDER BY practitioner_id) AS primary_practitioner_id,
           mode() WITHIN GROUP (ORDER BY location_id) AS primary_location_id
    FROM visits GROUP BY patient_id
),
counts AS (
    SELECT patient_id,
           count(*) AS total,
           count(*) FILTER (WHERE outcome = 'attended') AS attended,
           count(*) FILTER (WHERE outcome = 'dna' AND NOT rescheduled) AS dna,
           count(*) FILTER (WHERE outcome = 'cancelled' AND NOT rescheduled) AS cancelled,
           count(*) FILTER (WHERE outcome = 'late_cancelled' AND NOT rescheduled) AS late_cancelled,
           count(*) FILTER (WHERE rescheduled) AS rescheduled,
           count(*) FILTER (WHERE outcome = 'booked') AS upcoming,
           count(*) FILTER (WHERE in_90d AND outcome IN ('attended', 'dna')) AS recent,
           count(*) FILTER (WHERE in_90d AND outcome = 'attended') AS attended_90d,
           count(*) FILTER (WHERE in_90d AND outcome = 'dna' AND NOT rescheduled) AS dna_90d,
           count(*) FILTER (WHERE in_90d AND outcome = 'cancelled' AND NOT rescheduled) AS cancelled_90d,
           count(*) FILTER (WHERE in_90d AND outcome = 'late_cancelled' AND NOT rescheduled) AS late_90d,
           count(*) FILTER (WHERE in_90d AND rescheduled) AS rescheduled_90d,
           min(starts_at) AS first_at,
           min(starts_at) FILTER (WHERE outcome = 'attended') AS first_attended_at,
           max(starts_at) FILTER (WHERE outcome = 'attended') AS last_attended_at,
           max(starts_at) FILTER (WHERE outcome IN ('attended', 'dna')) AS last_at,
           min(starts_at) FILTER (WHERE outcome = 'booked') AS next_at,
           min(starts_at) FILTER (WHERE in_90d) AS oldest_in_90d,
           sum(price) FILTER (WHERE outcome = 'attended') AS priced
    FROM marked GROUP BY patient_id
),
next_visit AS (
    SELECT DISTINCT ON (m.patient_id) m.patient_id, t.name AS type_name,
           concat_ws(' ', pr.first_name, pr.last_name) AS practitioner_name
    FROM marked m
    LEFT JOIN patients_appointmenttype t ON t.organization_id = %(org)s AND t.id = m.appointment_type_id
    LEFT JOIN patients_practitioner pr ON pr.organization_id = %(org)s AND pr.id = m.practitioner_id
    WHERE m.outcome = 'booked' ORDER BY m.patient_id, m.starts_at, m.id
),
last_visit AS (
    SELECT l.patient_id, l.outcome, t.name AS type_name
    FROM (  -- sorted narrow, named after
        SELECT DISTINCT ON (m.patient_id) m.patient_id, m.outcome, m.appointment_type_id
        FROM marked m WHERE m.starts_at <= %(now)s ORDER BY m.patient_id, m.starts_at DESC, m.id DESC
    ) l LEFT JOIN patients_appointmenttype t ON t.organization_id = %(org)s AND t.id = l.appointment_type_id
),
invoiced AS (
    SELECT i.patient_id, sum(i.total_amount) AS total, count(*) AS n
    FROM patients_invoice i
    WHERE i.organization_id = %(org)s AND i.patient_id IS NOT NULL
      AND (%(all_patients)s OR i.patient_id = ANY(%(ids)s::bigint[])) AND i.archived_at IS NULL AND i.deleted_at IS NULL
    GROUP BY i.patient_id
),
base AS MATERIALIZED (
    SELECT t.patient_id,
           coalesce(c.total, 0) AS total, coalesce(c.attended, 0) AS attended, coalesce(c.dna, 0) AS dna,
           coalesce(c.cancelled, 0) AS cancelled, coalesce(c.late_cancelled, 0) AS late_cancelled,
           coalesce(c.rescheduled, 0) AS rescheduled, coalesce(c.upcoming, 0) AS upcoming,
           coalesce(c.recent, 0) AS recent, coalesce(c.attended_90d, 0) AS attended_90d,
           coalesce(c.dna_90d, 0) AS dna_90d, coalesce(c.cancelled_90d, 0) AS cancelled_90d,
           coalesce(c.late_90d, 0) AS late_90d, coalesce(c.rescheduled_90d, 0) AS rescheduled_90d,
           c.first_at, c.first_attended_at, c.last_attended_at, c.last_at, c.next_at, c.oldest_in_90d,
           lv.outcome AS last_outcome, lv.type_name AS last_type, nv.type_name AS next_type,
           nv.practitioner_name AS next_practitioner,
           pt.name AS primary_type, r.primary_practitioner_id, r.primary_location_id,
           r.last_gap, r.earlier_gap, coalesce(r.earlier_gaps, 0) AS earlier_gaps,
           CASE WHEN coalesce(r.gaps, 0) >= 2 THEN r.median_gap
                WHEN %(baseline_interval)s::float IS NOT NULL THEN %(baseline_interval)s::float
                ELSE %(default_interval)s::float END AS interval_days,
           CASE WHEN coalesce(r.gaps, 0) >= 2 THEN 'patient'
                WHEN %(baseline_interval)s::float IS NOT NULL THEN 'organization' ELSE 'default' END AS interval_source,
           CASE WHEN coalesce(inv.n, 0) > 0 THEN inv.total ELSE coalesce(c.priced, 0) END AS realised,
           CASE WHEN coalesce(inv.n, 0) > 0 THEN 'invoices' WHEN c.priced IS NOT NULL THEN 'prices'
                ELSE 'none' END AS value_source,
           (%(today)s::date - (c.last_attended_at AT TIME ZONE %(tz)s)::date) AS days_since
    FROM targets t
    LEFT JOIN counts c ON c.patient_id = t.patient_id
    LEFT JOIN rhythm r ON r.patient_id = t.patient_id
    LEFT JOIN patients_appointmenttype pt ON pt.organization_id = %(org)s AND pt.id = r.primary_type_id
    LEFT JOIN next_visit nv ON nv.patient_id = t.patient_id
    LEFT JOIN last_visit lv ON lv.patient_id = t.patient_id
    LEFT JOIN invoiced inv ON inv.patient_id = t.patient_id
),
staged AS MATERIALIZED (
    SELECT b.*, gap_ratio,
           CASE WHEN b.next_at IS NOT NULL OR gap_ratio <= 1.5 THEN 'active'
                WHEN b.days_since IS NULL THEN 'never_converted'
                WHEN gap_ratio <= 3 AND b.days_since < %(l_soft)s THEN 'due'
                WHEN b.days_since < %(l_hard)s THEN 'lapsing'
                WHEN b.days_since < %(dormant)s THEN 'lapsed'
                ELSE 'dormant' END AS stage
    FROM base b, LATERAL (SELECT b.days_since / b.interval_days AS gap_ratio) g
),
scored AS MATERIALIZED (
    SELECT s.*, points.*,
           least(100, p_overdue + p_no_booking + p_dna + p_late + p_unrebooked + p_falling + p_never) AS score
    FROM staged s, LATERAL (SELECT
        CASE WHEN s.stage = 'never_converted' OR s.next_at IS NOT NULL THEN 0 ELSE {_gap_points()} END
            AS p_overdue,
        CASE WHEN s.next_at IS NULL AND s.stage <> 'never_converted' THEN {rules.NO_FUTURE_BOOKING} ELSE 0 END
            AS p_no_booking,
        least({rules.DNA_MAX}, {rules.DNA_POINTS} * s.dna_90d) AS p_dna,
        least({rules.LATE_MAX}, {rules.LATE_POINTS} * s.late_90d) AS p_late,
        CASE WHEN s.next_at IS NULL AND s.last_outcome IN ('cancelled', 'late_cancelled')
             THEN {rules.UNREBOOKED_CANCELLATION} ELSE 0 END AS p_unrebooked,
        CASE WHEN s.earlier_gaps >= 2 AND s.last_gap > {rules.FALLING_FACTOR} * s.earlier_gap
             THEN {rules.FALLING_FREQUENCY} ELSE 0 END AS p_falling,
        CASE WHEN s.stage = 'never_converted' THEN {rules.NEVER_CONVERTED} ELSE 0 END AS p_never
    ) points
),
judged AS MATERIALIZED (
    SELECT s.*, {_band().replace("score", "s.score")} AS band,
           CASE WHEN s.stage = 'active' AND (s.days_since <= s.interval_days) THEN 'highly_engaged'
                WHEN s.stage IN ('active', 'due') THEN 'moderately_engaged'
                WHEN s.stage = 'lapsing' THEN 'low_engagement' ELSE 'disengaged' END AS engagement,
           round((365.0 / s.interval_days * {_by_stage(rules.STAGE_RETENTION, quote=False)}
                 * CASE WHEN s.attended > 0 AND s.realised > 0 THEN s.realised / s.attended
                        ELSE coalesce(%(baseline_value)s::numeric, 0) END)::numeric, 2) AS predicted
    FROM scored s
),
final AS (
    SELECT j.*,
           round(j.predicted * j.score / 100.0, 2) AS at_risk,
           CASE WHEN j.stage = 'active' AND j.score < 25 THEN {rules.NO_ACTION_PRIORITY} {priority} END AS priority,
           CASE WHEN j.stage = 'never_converted' THEN 'first_visit_invite'
                WHEN j.next_at IS NOT NULL THEN 'none'
                WHEN j.dna_90d > 0 AND j.stage IN ('active', 'due', 'lapsing') THEN 'follow_up_missed'
                WHEN j.stage = 'active' THEN 'suggest_next_booking'
                WHEN j.stage = 'due' THEN 'reminder'
                WHEN j.stage = 'lapsing' THEN 'rebook_call'
                WHEN j.stage = 'lapsed' THEN 'win_back'
                ELSE 'reactivation_message' END AS action,
           to_jsonb(array_remove(ARRAY[
               CASE WHEN j.p_no_booking > 0 THEN jsonb_build_object('code', 'no_future_booking', 'points', j.p_no_booking) END,
               CASE WHEN j.p_overdue > 0 THEN jsonb_build_object('code', 'overdue', 'points', j.p_overdue,
                   'days', j.days_since, 'usual', round(j.interval_days)::int) END,
               CASE WHEN j.p_dna > 0 THEN jsonb_build_object('code', 'recent_dna', 'points', j.p_dna, 'count', j.dna_90d) END,
               CASE WHEN j.p_late > 0 THEN jsonb_build_object('code', 'recent_late_cancellation', 'points', j.p_late,
                   'count', j.late_90d) END,
               CASE WHEN j.p_unrebooked > 0 THEN jsonb_build_object('code', 'unrebooked_cancellation', 'points', j.p_unrebooked) END,
               CASE WHEN j.p_falling > 0 THEN jsonb_build_object('code', 'falling_frequency', 'points', j.p_falling,
                   'last_gap', round(j.last_gap)::int) END,
               CASE WHEN j.p_never > 0 THEN jsonb_build_object('code', 'never_converted', 'points', j.p_never) END
           ], NULL)) AS reasons,
           -- The next moment any of this changes: a booking passing, a visit leaving the 90 days,
           -- a day threshold crossed (stage, engagement, the gap points).
           {_expiry()} AS data_expiry,
           {_day_expiry()} AS day_expiry
    FROM judged j
)
INSERT INTO patient_conversation_profile AS t (
    organization_id, patient_id, generated_at, valid_until,
    total_appointments, attended_count, dna_count, cancelled_count, late_cancelled_count, rescheduled_count,
    upcoming_count, recent_count, attended_90d, dna_90d, cancelled_90d, late_cancelled_90d, rescheduled_90d,
    first_appointment_at, first_attended_at, last_attended_at, last_appointment_at, last_appointment_outcome,
    last_appointment_type, next_appointment_at, next_appointment_type, next_practitioner,
    primary_appointment_type, primary_practitioner_id, primary_location_id,
    expected_interval_days, interval_source, last_gap_days, gap_ratio,
    lifecycle_stage, engagement_level, churn_risk_score, churn_risk, risk_reasons, action_priority,
    recommended_action, contact_success_prediction,
    realised_value, value_source, predicted_value, estimated_lifetime_value, value_at_risk
)
SELECT %(org)s, f.patient_id, %(now)s,
       least(f.data_expiry, (f.day_expiry::timestamp AT TIME ZONE %(tz)s)),
       f.total, f.attended, f.dna, f.cancelled, f.late_cancelled, f.rescheduled,
       f.upcoming, f.recent, f.attended_90d, f.dna_90d, f.cancelled_90d, f.late_90d, f.rescheduled_90d,
       f.first_at, f.first_attended_at, f.last_attended_at, f.last_at, coalesce(f.last_outcome, ''),
       coalesce(f.last_type, ''), f.next_at, coalesce(f.next_type, ''), coalesce(f.next_practitioner, ''),
       coalesce(f.primary_type, ''), f.primary_practitioner_id, f.primary_location_id,
       f.interval_days, f.interval_source, f.last_gap, f.gap_ratio,
       f.stage, f.engagement, f.score, f.band, f.reasons, f.priority,
       f.action, {_by_stage(rules.CONTACT_PREDICTION, quote=True).replace("stage", "f.stage")},
       f.realised, f.value_source, f.predicted, f.realised + f.predicted, f.at_risk
FROM final f
ON CONFLICT (patient_id) DO UPDATE SET
    generated_at = EXCLUDED.generated_at, valid_until = EXCLUDED.valid_until,
    total_appointments = EXCLUDED.total_appointments, attended_count = EXCLUDED.attended_count,
    dna_count = EXCLUDED.dna_count, cancelled_count = EXCLUDED.cancelled_count,
    late_cancelled_count = EXCLUDED.late_cancelled_count, rescheduled_count = EXCLUDED.rescheduled_count,
    upcoming_count = EXCLUDED.upcoming_count, recent_count = EXCLUDED.recent_count,
    attended_90d = EXCLUDED.attended_90d, dna_90d = EXCLUDED.dna_90d, cancelled_90d = EXCLUDED.cancelled_90d,
    late_cancelled_90d = EXCLUDED.late_cancelled_90d, rescheduled_90d = EXCLUDED.rescheduled_90d,
    first_appointment_at = EXCLUDED.first_appointment_at, first_attended_at = EXCLUDED.first_attended_at,
    last_attended_at = EXCLUDED.last_attended_at, last_appointment_at = EXCLUDED.last_appointment_at,
    last_appointment_outcome = EXCLUDED.last_appointment_outcome,
    last_appointment_type = EXCLUDED.last_appointment_type, next_appointment_at = EXCLUDED.next_appointment_at,
    next_appointment_type = EXCLUDED.next_appointment_type, next_practitioner = EXCLUDED.next_practitioner,
    primary_appointment_type = EXCLUDED.primary_appointment_type,
    primary_practitioner_id = EXCLUDED.primary_practitioner_id, primary_location_id = EXCLUDED.primary_location_id,
    expected_interval_days = EXCLUDED.expected_interval_days, interval_source = EXCLUDED.interval_source,
    last_gap_days = EXCLUDED.last_gap_days, gap_ratio = EXCLUDED.gap_ratio,
    lifecycle_stage = EXCLUDED.lifecycle_stage, engagement_level = EXCLUDED.engagement_level,
    churn_risk_score = EXCLUDED.churn_risk_score, churn_risk = EXCLUDED.churn_risk,
    risk_reasons = EXCLUDED.risk_reasons, action_priority = EXCLUDED.action_priority,
    recommended_action = EXCLUDED.recommended_action,
    contact_success_prediction = EXCLUDED.contact_success_prediction,
    realised_value = EXCLUDED.realised_value, value_source = EXCLUDED.value_source,
    predicted_value = EXCLUDED.predicted_value, estimated_lifetime_value = EXCLUDED.estimated_lifetime_value,
    value_at_risk = EXCLUDED.value_at_risk
"""


BASELINE_SQL = f"""
WITH visits AS (
    SELECT row_number() OVER w AS rn, {_gap_days("a.starts_at", "w")} AS gap
    FROM patients_appointment a
    WHERE a.organization_id = %(org)s AND a.patient_id IS NOT NULL AND a.archived_at IS NULL
      AND a.deleted_at IS NULL AND a.cancelled_at IS NULL AND NOT a.did_not_arrive
      AND (a.patient_arrived OR a.starts_at <= %(now)s)
      AND (a.appointment_type_id IS NULL OR NOT a.appointment_type_id = ANY(%(excluded)s::bigint[]))
    WINDOW w AS (PARTITION BY a.patient_id ORDER BY a.starts_at DESC, a.id DESC)
)
SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY gap) FILTER (WHERE rn <= %(visits)s - 1 AND gap IS NOT NULL),
       count(gap) FILTER (WHERE rn <= %(visits)s - 1),
       round((
           SELECT sum(total_amount) FROM patients_invoice
           WHERE organization_id = %(org)s AND patient_id IS NOT NULL AND archived_at IS NULL AND deleted_at IS NULL
       ) / nullif(count(*), 0), 2)  -- the average attended visit's invoiced value
FROM visits
"""
