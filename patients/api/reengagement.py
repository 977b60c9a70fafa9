"""The re-engagement endpoints beyond the profile list (paths from the frontend contract):
risk metrics, the prioritised worklist, the dashboard summary, performance over a period and
one patient's details.

Like the profile endpoints they answer from the organization's versioned cache
(`ProfileView.cached`), after recomputing expired profiles, and say `data_as_of`.
Conversation and outreach figures are zero or null until a later issue records them.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from clinics.models import Organization
from patients import worklist
from patients.api.answers import answer_rendered, answer_response
from patients.api.profile_data import (
    CONTACT_PREDICTIONS,
    PatientProfileSerializer,
    ProfileSummarySerializer,
    RiskReasonSerializer,
    patient_status,
)
from patients.api.profiles import ProfileView, _choice
from patients.models import Appointment, ChurnRisk, EngagementLevel, LifecycleStage, PatientProfile
from patients.outcomes import Outcome
from patients.profiles.rules import ACTIONS, action_sentence, reason_sentence, reasons_sentence
from routiq.api.errors import NotFound
from routiq.api.pagination import PageRequest, page_parameters, query_integer
from routiq.api.schema import ORG_SCOPED_ERRORS, error_responses
from routiq.api.schema import envelope as envelope_schema

DEFAULT_TIMEFRAME = "last_30_days"
NO_SUCH_PATIENT = "No such patient."


def _iso(value: Any) -> str | None:
    return None if value is None else value.isoformat()


def _money(value: Any) -> float:
    return float(value or 0)


def _risk_facts(profile: PatientProfile, *, now: datetime, tz: Any) -> dict[str, Any]:
    """Why a patient is at risk, with the days counted in the clinic's calendar now."""
    today = now.astimezone(tz).date()
    last = profile.last_attended_at
    upcoming = (
        profile.next_appointment_at
        if profile.next_appointment_at and profile.next_appointment_at > now
        else None
    )
    return {
        "churn_risk": profile.churn_risk,
        "churn_risk_score": profile.churn_risk_score,
        "risk_reasons": [{**reason, "text": reason_sentence(reason)} for reason in profile.risk_reasons],
        "risk_summary": reasons_sentence(profile.risk_reasons),
        "lifecycle_stage": profile.lifecycle_stage,
        "engagement_level": profile.engagement_level,
        "gap_ratio": None if profile.gap_ratio is None else round(profile.gap_ratio, 2),
        "last_visit_date": _iso(last),
        "days_since_last_visit": (today - last.astimezone(tz).date()).days if last else None,
        "expected_interval_days": round(profile.expected_interval_days, 1),
        "has_upcoming_appointment": upcoming is not None,
        "next_appointment_time": _iso(upcoming),
        "value_at_risk": _money(profile.value_at_risk),
        "action_priority": profile.action_priority,
        "recommended_action": profile.recommended_action,
    }


def _phone(patient: Any) -> str | None:
    return patient.mobile_e164 or (patient.phones_e164[0] if patient.phones_e164 else None)


def risk_row(profile: PatientProfile, *, now: datetime, tz: Any, currency: str) -> dict[str, Any]:
    return {
        "patient_id": profile.patient_id,
        "patient_name": profile.patient.full_name,
        **_risk_facts(profile, now=now, tz=tz),
        "currency": currency,
    }


def worklist_row(profile: PatientProfile, *, now: datetime, tz: Any, currency: str) -> dict[str, Any]:
    """Who to contact, why, how to reach them and what to do."""
    patient = profile.patient
    practitioner = profile.primary_practitioner
    return {
        "patient_id": patient.pk,
        "patient_name": patient.full_name,
        "patient_status": patient_status(patient),
        "email": patient.email or None,
        "phone": _phone(patient),
        "accepted_sms_marketing": patient.accepted_sms_marketing,
        "accepted_email_marketing": patient.accepted_email_marketing,
        **_risk_facts(profile, now=now, tz=tz),
        "next_step": action_sentence(profile.recommended_action),
        "contact_success_prediction": profile.contact_success_prediction,
        "usual_practitioner": str(practitioner) if practitioner else None,
        "estimated_lifetime_value": _money(profile.estimated_lifetime_value),
        "currency": currency,
    }


# --- the same, declared for the OpenAPI schema ---------------------------------------------------
class ReengagementRiskFactsSerializer(serializers.Serializer):
    churn_risk = serializers.ChoiceField(choices=ChurnRisk.choices)
    churn_risk_score = serializers.IntegerField(min_value=0, max_value=100)
    risk_reasons = RiskReasonSerializer(many=True)
    risk_summary = serializers.CharField(allow_blank=True)
    lifecycle_stage = serializers.ChoiceField(choices=LifecycleStage.choices)
    engagement_level = serializers.ChoiceField(choices=EngagementLevel.choices)
    gap_ratio = serializers.FloatField(
        allow_null=True, help_text="Days since the last visit / usual interval"
    )
    last_visit_date = serializers.DateTimeField(allow_null=True, help_text="The last attended visit")
    days_since_last_visit = serializers.IntegerField(allow_null=True, help_text="In the clinic's calendar")
    expected_interval_days = serializers.FloatField(help_text="The patient's usual interval, E(p)")
    has_upcoming_appointment = serializers.BooleanField()
    next_appointment_time = serializers.DateTimeField(allow_null=True)
    value_at_risk = serializers.FloatField()
    action_priority = serializers.IntegerField(min_value=1, max_value=5, help_text="1 most urgent")
    recommended_action = serializers.ChoiceField(choices=list(ACTIONS))


class ReengagementRiskMetricSerializer(ReengagementRiskFactsSerializer):
    patient_id = serializers.IntegerField()
    patient_name = serializers.CharField(allow_blank=True)
    currency = serializers.CharField()


class ReengagementWorklistRowSerializer(ReengagementRiskFactsSerializer):
    patient_id = serializers.IntegerField()
    patient_name = serializers.CharField(allow_blank=True)
    patient_status = serializers.ChoiceField(choices=["active", "archived", "deleted", "merged"])
    email = serializers.CharField(allow_null=True)
    phone = serializers.CharField(allow_null=True, help_text="E.164")
    accepted_sms_marketing = serializers.BooleanField(allow_null=True)
    accepted_email_marketing = serializers.BooleanField(allow_null=True)
    next_step = serializers.CharField(help_text="recommended_action in words")
    contact_success_prediction = serializers.ChoiceField(choices=CONTACT_PREDICTIONS)
    usual_practitioner = serializers.CharField(allow_null=True)
    estimated_lifetime_value = serializers.FloatField()
    currency = serializers.CharField()


class ReengagementRiskBandsSerializer(serializers.Serializer):
    critical = serializers.IntegerField()
    high = serializers.IntegerField()
    medium = serializers.IntegerField()
    low = serializers.IntegerField()
    total = serializers.IntegerField()


class ReengagementRiskMetricsEnvelope(
    envelope_schema(
        "ReengagementRiskMetricsPage", "risk_metrics", ReengagementRiskMetricSerializer, many=True
    )
):
    risk_bands = ReengagementRiskBandsSerializer(help_text="The whole organization, whatever the filter")
    data_as_of = serializers.DateTimeField(allow_null=True)


class ReengagementPrioritizedEnvelope(
    envelope_schema(
        "ReengagementPrioritizedPage", "prioritized_patients", ReengagementWorklistRowSerializer, many=True
    )
):
    data_as_of = serializers.DateTimeField(allow_null=True)


class ReengagementOutreachSerializer(serializers.Serializer):
    outreach_tracked = serializers.BooleanField(
        help_text="False until outreach is recorded: figures are 0/null"
    )
    outreach_attempts = serializers.IntegerField()
    successful_outreach = serializers.IntegerField()
    outreach_success_rate = serializers.FloatField(allow_null=True)
    patients_contacted = serializers.IntegerField()


class ReengagementDashboardSummarySerializer(ProfileSummarySerializer, ReengagementOutreachSerializer):
    """The profile summary's counts, with who needs contact and the outreach figures."""

    needing_contact = serializers.IntegerField(help_text="Patients whose recommended action is not 'none'")
    needing_contact_by_priority = serializers.DictField(
        child=serializers.IntegerField(), help_text="Keyed by action_priority, 1 (most urgent) to 5"
    )
    value_at_risk_needing_contact = serializers.FloatField()
    last_outreach_at = serializers.DateTimeField(allow_null=True)
    generated_at = serializers.DateTimeField(allow_null=True, help_text="The newest profile's computation")


class ReengagementPeriodSerializer(serializers.Serializer):
    start = serializers.DateTimeField(help_text="The clinic's midnight starting the first day")
    end = serializers.DateTimeField(help_text="Now")
    first_day = serializers.DateField()
    last_day = serializers.DateField(help_text="Today, in the clinic's time zone")
    time_zone = serializers.CharField()


class ReengagementPerformanceSerializer(ReengagementOutreachSerializer):
    timeframe = serializers.ChoiceField(choices=worklist.TIMEFRAMES)
    period = ReengagementPeriodSerializer()
    outreach_conversions = serializers.IntegerField(allow_null=True)
    bookings_made = serializers.IntegerField(help_text="Appointments created in the period")
    patients_booking = serializers.IntegerField()
    bookings_made_since_cancelled = serializers.IntegerField()
    reactivations = serializers.IntegerField(help_text="Lapses ended by a booking made in the period")
    reactivated_patients = serializers.IntegerField()
    reactivated_from_lapsing = serializers.IntegerField()
    reactivated_from_lapsed = serializers.IntegerField()
    reactivated_from_dormant = serializers.IntegerField()
    patients_lapsed = serializers.IntegerField(
        help_text="Patients whose L_hard-th day without a visit fell in it"
    )


class ReengagementAppointmentSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    starts_at = serializers.DateTimeField()
    ends_at = serializers.DateTimeField()
    outcome = serializers.ChoiceField(choices=Outcome.ALL)
    appointment_type = serializers.CharField(allow_null=True)
    practitioner = serializers.CharField(allow_null=True)
    practitioner_id = serializers.IntegerField(allow_null=True)
    location = serializers.CharField(allow_null=True)
    cancelled_at = serializers.DateTimeField(allow_null=True)
    cancellation_reason = serializers.CharField(allow_null=True)


class ReengagementInvoiceTotalsSerializer(serializers.Serializer):
    invoice_count = serializers.IntegerField()
    total_amount = serializers.FloatField()
    net_amount = serializers.FloatField()
    tax_amount = serializers.FloatField()
    open_count = serializers.IntegerField()
    open_amount = serializers.FloatField()
    first_issue_date = serializers.DateField(allow_null=True)
    last_issue_date = serializers.DateField(allow_null=True)
    currency = serializers.CharField()


class ReengagementPatientDetailsSerializer(serializers.Serializer):
    profile = PatientProfileSerializer()
    recent_appointments = ReengagementAppointmentSerializer(many=True, help_text="Newest first")
    upcoming_appointments = ReengagementAppointmentSerializer(many=True, help_text="Soonest first")
    invoices = ReengagementInvoiceTotalsSerializer()


# --- the views ---------------------------------------------------------------------------------
def _risk_level_parameter() -> OpenApiParameter:
    return OpenApiParameter(
        "risk_level", {"type": "string", "enum": ChurnRisk.values}, description="Only this churn-risk band."
    )


def _page(queryset: Any, window: PageRequest, total: int) -> list[Any]:
    return list(queryset[window.offset : window.offset + window.limit]) if window.offset < total else []


def _page_extra(rows: list[Any], window: PageRequest, total: int) -> dict[str, Any]:
    return {"count": len(rows), "total": total, "limit": window.limit, "offset": window.offset}


class ReengagementView(ProfileView):
    """A profile view whose rows are built by `builder(profile, now=, tz=, currency=)`."""

    def render_rows(self, builder: Any, profiles: list[PatientProfile]) -> list[dict[str, Any]]:
        org = self.organization
        now = timezone.now()
        return [builder(p, now=now, tz=org.tzinfo, currency=org.currency) for p in profiles]


class RiskMetricsView(ReengagementView):
    @extend_schema(
        operation_id="reengagement_risk_metrics",
        summary="Every patient's churn risk and why, highest score first (stable paging), with band counts",
        parameters=[_risk_level_parameter(), *page_parameters()],
        responses={200: ReengagementRiskMetricsEnvelope, **error_responses(400, *ORG_SCOPED_ERRORS)},
    )
    def get(self, request: Request, org_id: str) -> Response:
        window = PageRequest.from_request(request)
        risk_level = _choice(request, "risk_level", ChurnRisk.values)

        def compute() -> tuple[str, Any, dict[str, Any]]:
            bands = worklist.risk_band_counts(self.organization)
            total = bands[risk_level or "total"]
            rows = (
                worklist.risk_metrics_page(
                    self.organization, risk_level=risk_level, offset=window.offset, limit=window.limit
                )
                if window.offset < total
                else []
            )
            extra = {**_page_extra(rows, window, total), "risk_bands": bands}
            return "risk_metrics", self.render_rows(risk_row, rows), extra

        params = {"risk_level": risk_level, "limit": window.limit, "offset": window.offset}
        return self.cached("risk_metrics", params, compute)


def _action_priority(request: Request) -> int | None:
    if request.query_params.get("action_priority") is None:
        return None
    return query_integer(request, "action_priority", default=1, least=1, most=5)


PRIORITIZED_SCHEMA = {
    "summary": "The prioritised worklist: who to contact first, why, how, and what to do",
    "parameters": [
        _risk_level_parameter(),
        OpenApiParameter(
            "engagement_status",
            {"type": "string", "enum": EngagementLevel.values},
            description="Only patients with this engagement_level.",
        ),
        OpenApiParameter(  # no default: absent means every priority
            "action_priority",
            {"type": "integer", "minimum": 1, "maximum": 5},
            description="Only this action_priority (1 most urgent).",
        ),
        *page_parameters(),
    ],
    "responses": {200: ReengagementPrioritizedEnvelope, **error_responses(400, *ORG_SCOPED_ERRORS)},
}


class PrioritizedView(ReengagementView):
    @extend_schema(operation_id="reengagement_prioritized", **PRIORITIZED_SCHEMA)
    def get(self, request: Request, org_id: str) -> Response:
        window = PageRequest.from_request(request)
        filters = {
            "risk_level": _choice(request, "risk_level", ChurnRisk.values),
            "engagement_level": _choice(request, "engagement_status", EngagementLevel.values),
            "action_priority": _action_priority(request),
        }

        def compute() -> tuple[str, Any, dict[str, Any]]:
            profiles = worklist.prioritized_list(self.organization, **filters)
            total = profiles.count()
            rows = _page(profiles, window, total)
            return (
                "prioritized_patients",
                self.render_rows(worklist_row, rows),
                _page_extra(rows, window, total),
            )

        params = {**filters, "limit": window.limit, "offset": window.offset}
        return self.cached("prioritized", params, compute)


class PrioritizedAliasView(PrioritizedView):
    """`/patients/prioritized`: the same answer under the path the frontend also calls."""

    @extend_schema(operation_id="reengagement_patients_prioritized", **PRIORITIZED_SCHEMA)
    def get(self, request: Request, org_id: str) -> Response:
        return super().get(request, org_id)


class DashboardSummaryView(ReengagementView):
    @extend_schema(
        operation_id="reengagement_dashboard_summary",
        summary="The re-engagement overview: engagement, risk, stages, who needs contact, value at risk",
        responses={
            200: envelope_schema(
                "ReengagementDashboardSummary", "summary", ReengagementDashboardSummarySerializer
            ),
            **error_responses(*ORG_SCOPED_ERRORS),
        },
    )
    def get(self, request: Request, org_id: str) -> Response:
        return answer_response(self.organization, dashboard_summary_answer(self.organization))


def dashboard_summary_answer(organization: Organization) -> bytes:
    def compute() -> tuple[str, Any, dict[str, Any]]:
        summary = worklist.reengagement_dashboard_summary(organization)
        data = {**summary, "currency": organization.currency}
        return "summary", dict(ReengagementDashboardSummarySerializer(data).data), {}

    return answer_rendered(organization, "dashboard_summary", {"currency": organization.currency}, compute)


class PerformanceView(ReengagementView):
    @extend_schema(
        operation_id="reengagement_performance",
        summary="Bookings, reactivations and lapses in the clinic's calendar days; outreach once tracked",
        parameters=[
            OpenApiParameter(
                "timeframe",
                {"type": "string", "enum": list(worklist.TIMEFRAMES), "default": DEFAULT_TIMEFRAME},
                description="The last 7, 30 or 90 days or 6 months, today included.",
            )
        ],
        responses={
            200: envelope_schema("ReengagementPerformance", "performance", ReengagementPerformanceSerializer),
            **error_responses(400, *ORG_SCOPED_ERRORS),
        },
    )
    def get(self, request: Request, org_id: str) -> Response:
        timeframe = _choice(request, "timeframe", list(worklist.TIMEFRAMES)) or DEFAULT_TIMEFRAME
        return answer_response(self.organization, performance_answer(self.organization, timeframe=timeframe))


def performance_answer(organization: Organization, *, timeframe: str = DEFAULT_TIMEFRAME) -> bytes:
    now = timezone.now()

    def compute() -> tuple[str, Any, dict[str, Any]]:
        figures = worklist.reengagement_performance(organization, timeframe=timeframe, now=now)
        period = figures.pop("period")
        figures["timeframe"] = timeframe
        figures["period"] = {**asdict(period), "time_zone": organization.time_zone}
        return "performance", dict(ReengagementPerformanceSerializer(figures).data), {}

    # The clinic's date is part of the key: the period moves at its midnight.
    today = now.astimezone(organization.tzinfo).date()
    params = {"timeframe": timeframe, "day": today.isoformat(), "time_zone": organization.time_zone}
    return answer_rendered(organization, "performance", params, compute)


def _patient_id(raw: str) -> int:
    """A path id, or the same 404 as a missing patient (never a 500, never a different body)."""
    if not raw.isascii() or not raw.isdigit() or not 0 < int(raw) < 2**63:
        raise NotFound(NO_SUCH_PATIENT)
    return int(raw)


def appointment_row(appointment: Appointment) -> dict[str, Any]:
    kind, practitioner, location = (
        appointment.appointment_type,
        appointment.practitioner,
        appointment.location,
    )
    return {
        "id": appointment.pk,
        "starts_at": appointment.starts_at,
        "ends_at": appointment.ends_at,
        "outcome": appointment.outcome,
        "appointment_type": kind.name if kind else None,
        "practitioner": str(practitioner) if practitioner else None,
        "practitioner_id": appointment.practitioner_id,
        "location": location.name if location else None,
        "cancelled_at": appointment.cancelled_at,
        "cancellation_reason": appointment.cancellation_reason or None,
    }


class PatientDetailsView(ReengagementView):
    @extend_schema(
        operation_id="reengagement_patient_details",
        summary="One patient: the profile, recent and upcoming appointments with outcomes, invoice totals",
        parameters=[
            OpenApiParameter(
                "patient_id",
                {"type": "integer", "minimum": 1, "maximum": 2**63 - 1},
                OpenApiParameter.PATH,
                description="Routiq patient id",
            )
        ],
        responses={
            200: envelope_schema(
                "ReengagementPatientDetails", "details", ReengagementPatientDetailsSerializer
            ),
            **error_responses(*ORG_SCOPED_ERRORS),
        },
    )
    def get(self, request: Request, org_id: str, patient_id: str) -> Response:
        wanted = _patient_id(patient_id)

        def compute() -> tuple[str, Any, dict[str, Any]]:
            try:
                details = worklist.patient_details_get(self.organization, patient_id=wanted)
            except PatientProfile.DoesNotExist:
                raise NotFound(NO_SUCH_PATIENT) from None
            profile = self.rows([details.profile])[0]
            return "details", details_data(details, profile=profile, currency=self.organization.currency), {}

        return self.cached("patient_details", {"patient_id": wanted}, compute)


def details_data(
    details: worklist.PatientDetails, *, profile: dict[str, Any], currency: str
) -> dict[str, Any]:
    # The profile row is already plain (built by hand for speed); the rest goes through the
    # serializers so that dates, decimals and nulls come out as the schema says.
    def appointments(rows: list[Appointment]) -> Any:
        return ReengagementAppointmentSerializer([appointment_row(a) for a in rows], many=True).data

    return {
        "profile": profile,
        "recent_appointments": appointments(details.recent_appointments),
        "upcoming_appointments": appointments(details.upcoming_appointments),
        "invoices": ReengagementInvoiceTotalsSerializer({**details.invoices, "currency": currency}).data,
    }
