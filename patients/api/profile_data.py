"""A profile as the frontend reads it: its 62 fields (names kept from the earlier backend, values
true), then what the earlier backend never had (stage, risk and its reasons, counts, value).

Built by hand rather than by a DRF serializer: a page of 200 profiles is 16,000 values, and
this is the hot path. `PatientProfileSerializer` declares the same fields for the OpenAPI
schema; a test holds the two to the same keys. Conversation and outreach fields read tables a
later issue fills: until then they are zero or null, never invented.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from rest_framework import serializers

from patients.models import ChurnRisk, EngagementLevel, LifecycleStage, PatientProfile
from patients.profiles.rules import action_sentence, reason_sentence, reasons_sentence

CONTACT_PREDICTIONS = ["very_high", "high", "medium", "low", "very_low"]


def _money(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


def _iso(value: datetime | date | None) -> str | None:
    return None if value is None else value.isoformat()


def patient_status(patient: Any) -> str:
    if patient.deleted_at is not None:
        return "deleted"
    if patient.merged_at is not None:
        return "merged"
    return "archived" if patient.archived_at is not None else "active"


def profile_data(profile: PatientProfile, *, now: datetime, tz: Any, currency: str) -> dict[str, Any]:
    patient = profile.patient
    today = now.astimezone(tz).date()
    last_date = profile.last_appointment_at.astimezone(tz).date() if profile.last_appointment_at else None
    upcoming = (
        profile.next_appointment_at
        if profile.next_appointment_at and profile.next_appointment_at > now
        else None
    )
    next_date = upcoming.astimezone(tz).date() if upcoming else None
    status = patient_status(patient)
    return {
        "patient_id": patient.pk,
        "organization_id": profile.organization_id,
        "patient_name": patient.full_name,
        "email": patient.email or None,
        "phone": patient.mobile_e164 or (patient.phones_e164[0] if patient.phones_e164 else None),
        "cliniko_patient_id": patient.external_id if patient.pms == "cliniko" else None,
        "is_active": status == "active",
        "activity_status": profile.lifecycle_stage,
        "contact_type": "patient",
        "treatment_summary": None,
        "last_treatment_note": None,
        "patient_status": status,
        "medical_record_number": None,
        "total_appointment_count": profile.total_appointments,
        "recent_appointment_count": profile.recent_count,
        "upcoming_appointment_count": profile.upcoming_count,
        "first_appointment_date": _iso(profile.first_appointment_at),
        "last_appointment_date": _iso(profile.last_appointment_at),
        "next_appointment_time": _iso(upcoming),
        "next_appointment_type": (profile.next_appointment_type or None) if upcoming else None,
        "primary_appointment_type": profile.primary_appointment_type or None,
        "treatment_notes": None,
        "current_appointment_type": profile.last_appointment_type or None,
        "current_appointment_status": profile.last_appointment_outcome or None,
        "current_appointment_notes": None,
        "next_appointment_date": _iso(next_date),
        "next_appointment_status": "booked" if upcoming else None,
        "next_appointment_notes": None,
        "total_conversations": 0,
        "active_conversations": 0,
        "last_conversation_date": None,
        "days_since_last_conversation": None,
        "overall_sentiment": None,
        "avg_sentiment_score": None,
        "escalation_count": 0,
        "quality_rating_avg": None,
        "total_messages": 0,
        "patient_messages": 0,
        "agent_messages": 0,
        "last_message_date": None,
        "last_message_sentiment": None,
        "avg_message_sentiment": None,
        "days_since_last_message": None,
        "total_outreach_attempts": 0,
        "successful_outreach": 0,
        "last_outreach_date": None,
        "last_outreach_method": None,
        "last_outreach_outcome": None,
        "outreach_success_rate": None,
        "days_since_last_outreach": None,
        "engagement_level": profile.engagement_level,
        "churn_risk": profile.churn_risk,
        "estimated_lifetime_value": _money(profile.estimated_lifetime_value),
        "contact_success_prediction": profile.contact_success_prediction,
        "action_priority": profile.action_priority,
        "days_since_last_appointment": (today - last_date).days if last_date else None,
        "days_until_next_appointment": (next_date - today).days if next_date else None,
        "days_until_next_appointment_detailed": round((upcoming - now).total_seconds() / 86400, 2)
        if upcoming
        else None,
        "patient_created_at": _iso(patient.pms_created_at),
        "patient_updated_at": _iso(patient.pms_updated_at),
        "last_synced_at": _iso(patient.last_synced_at),
        "view_generated_at": _iso(profile.generated_at),
        # --- beyond the earlier backend's fields ---
        "lifecycle_stage": profile.lifecycle_stage,
        "expected_interval_days": round(profile.expected_interval_days, 1),
        "expected_interval_source": profile.interval_source,
        "gap_ratio": None if profile.gap_ratio is None else round(profile.gap_ratio, 2),
        "churn_risk_score": profile.churn_risk_score,
        "risk_reasons": [{**reason, "text": reason_sentence(reason)} for reason in profile.risk_reasons],
        "risk_summary": reasons_sentence(profile.risk_reasons),
        "recommended_action": profile.recommended_action,
        "recommended_action_text": action_sentence(profile.recommended_action),
        "attended_count": profile.attended_count,
        "dna_count": profile.dna_count,
        "cancelled_count": profile.cancelled_count,
        "late_cancelled_count": profile.late_cancelled_count,
        "rescheduled_count": profile.rescheduled_count,
        "attended_count_90d": profile.attended_90d,
        "dna_count_90d": profile.dna_90d,
        "cancelled_count_90d": profile.cancelled_90d,
        "late_cancelled_count_90d": profile.late_cancelled_90d,
        "rescheduled_count_90d": profile.rescheduled_90d,
        "first_attended_date": _iso(profile.first_attended_at),
        "last_attended_date": _iso(profile.last_attended_at),
        "realised_value": _money(profile.realised_value),
        "realised_value_source": profile.value_source,
        "predicted_value_12m": _money(profile.predicted_value),
        "value_at_risk": _money(profile.value_at_risk),
        "currency": currency,
    }


def profiles_data(profiles: Any, *, now: datetime, tz: Any, currency: str) -> list[dict[str, Any]]:
    return [profile_data(p, now=now, tz=tz, currency=currency) for p in profiles]


# --- the same, declared for the OpenAPI schema ---------------------------------------------------
class RiskReasonSerializer(serializers.Serializer):
    code = serializers.ChoiceField(
        choices=[
            "overdue",
            "no_future_booking",
            "recent_dna",
            "recent_late_cancellation",
            "unrebooked_cancellation",
            "falling_frequency",
            "never_converted",
        ]
    )
    points = serializers.IntegerField()
    text = serializers.CharField()


def _text(**kwargs: Any) -> serializers.CharField:
    return serializers.CharField(allow_null=True, **kwargs)


def _moment(**kwargs: Any) -> serializers.DateTimeField:
    return serializers.DateTimeField(allow_null=True, **kwargs)


class PatientProfileSerializer(serializers.Serializer):
    patient_id = serializers.IntegerField()
    organization_id = serializers.CharField()
    patient_name = serializers.CharField()
    email = _text()
    phone = _text(help_text="E.164")
    cliniko_patient_id = _text()
    is_active = serializers.BooleanField(help_text="Not archived, deleted or merged away in the PMS")
    activity_status = serializers.ChoiceField(choices=LifecycleStage.choices, help_text="= lifecycle_stage")
    contact_type = serializers.CharField()
    treatment_summary = _text(help_text="Not synced: always null")
    last_treatment_note = _text(help_text="Not synced: always null")
    patient_status = serializers.ChoiceField(choices=["active", "archived", "deleted", "merged"])
    medical_record_number = _text(help_text="Not synced: always null")
    total_appointment_count = serializers.IntegerField()
    recent_appointment_count = serializers.IntegerField(help_text="Attended or missed, last 90 days")
    upcoming_appointment_count = serializers.IntegerField()
    first_appointment_date = _moment()
    last_appointment_date = _moment(help_text="Last visit attended or missed; never a future one")
    next_appointment_time = _moment()
    next_appointment_type = _text()
    primary_appointment_type = _text()
    treatment_notes = _text(help_text="Not synced: always null")
    current_appointment_type = _text(help_text="The most recent past appointment's type")
    current_appointment_status = _text(help_text="Its outcome: attended, dna, cancelled, late_cancelled")
    current_appointment_notes = _text(help_text="Not synced: always null")
    next_appointment_date = serializers.DateField(allow_null=True, help_text="In the clinic's time zone")
    next_appointment_status = _text()
    next_appointment_notes = _text(help_text="Not synced: always null")
    total_conversations = serializers.IntegerField()
    active_conversations = serializers.IntegerField()
    last_conversation_date = _moment()
    days_since_last_conversation = serializers.IntegerField(allow_null=True)
    overall_sentiment = _text()
    avg_sentiment_score = serializers.FloatField(allow_null=True)
    escalation_count = serializers.IntegerField()
    quality_rating_avg = serializers.FloatField(allow_null=True)
    total_messages = serializers.IntegerField()
    patient_messages = serializers.IntegerField()
    agent_messages = serializers.IntegerField()
    last_message_date = _moment()
    last_message_sentiment = _text()
    avg_message_sentiment = serializers.FloatField(allow_null=True)
    days_since_last_message = serializers.IntegerField(allow_null=True)
    total_outreach_attempts = serializers.IntegerField()
    successful_outreach = serializers.IntegerField()
    last_outreach_date = _moment()
    last_outreach_method = _text()
    last_outreach_outcome = _text()
    outreach_success_rate = serializers.FloatField(allow_null=True)
    days_since_last_outreach = serializers.IntegerField(allow_null=True)
    engagement_level = serializers.ChoiceField(choices=EngagementLevel.choices)
    churn_risk = serializers.ChoiceField(choices=ChurnRisk.choices)
    estimated_lifetime_value = serializers.FloatField(help_text="realised_value + predicted_value_12m")
    contact_success_prediction = serializers.ChoiceField(choices=CONTACT_PREDICTIONS)
    action_priority = serializers.IntegerField(min_value=1, max_value=5, help_text="1 most urgent")
    days_since_last_appointment = serializers.IntegerField(allow_null=True)
    days_until_next_appointment = serializers.IntegerField(allow_null=True)
    days_until_next_appointment_detailed = serializers.FloatField(allow_null=True)
    patient_created_at = _moment(help_text="In the PMS")
    patient_updated_at = _moment(help_text="In the PMS")
    last_synced_at = _moment()
    view_generated_at = _moment()
    lifecycle_stage = serializers.ChoiceField(choices=LifecycleStage.choices)
    expected_interval_days = serializers.FloatField()
    expected_interval_source = serializers.ChoiceField(choices=["patient", "organization", "default"])
    gap_ratio = serializers.FloatField(allow_null=True)
    churn_risk_score = serializers.IntegerField(min_value=0, max_value=100)
    risk_reasons = RiskReasonSerializer(many=True)
    risk_summary = serializers.CharField()
    recommended_action = serializers.CharField()
    recommended_action_text = serializers.CharField()
    attended_count = serializers.IntegerField()
    dna_count = serializers.IntegerField(help_text="Reschedules apart")
    cancelled_count = serializers.IntegerField(help_text="Reschedules apart")
    late_cancelled_count = serializers.IntegerField(help_text="Reschedules apart")
    rescheduled_count = serializers.IntegerField()
    attended_count_90d = serializers.IntegerField()
    dna_count_90d = serializers.IntegerField()
    cancelled_count_90d = serializers.IntegerField()
    late_cancelled_count_90d = serializers.IntegerField()
    rescheduled_count_90d = serializers.IntegerField()
    first_attended_date = _moment()
    last_attended_date = _moment()
    realised_value = serializers.FloatField()
    realised_value_source = serializers.ChoiceField(choices=["invoices", "prices", "none"])
    predicted_value_12m = serializers.FloatField()
    value_at_risk = serializers.FloatField()
    currency = serializers.CharField()


class ProfileSummarySerializer(serializers.Serializer):
    total_patients = serializers.IntegerField()
    highly_engaged = serializers.IntegerField()
    moderately_engaged = serializers.IntegerField()
    low_engagement = serializers.IntegerField()
    disengaged = serializers.IntegerField()
    critical_risk = serializers.IntegerField()
    high_risk = serializers.IntegerField()
    medium_risk = serializers.IntegerField()
    low_risk = serializers.IntegerField()
    by_lifecycle_stage = serializers.DictField(child=serializers.IntegerField())
    with_upcoming = serializers.IntegerField()
    value_at_risk = serializers.FloatField()
    estimated_lifetime_value = serializers.FloatField()
    currency = serializers.CharField()
    generated_at = serializers.DateTimeField(allow_null=True)
