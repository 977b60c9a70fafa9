"""`GET /api/v1/analytics/{org_id}/kpis`: the clinic KPIs of a period of clinic-local days beside
the period of equal length just before it, with the changes, optionally per practitioner or
location (retention-metrics.md, "Clinic KPIs").

Parameters: `from` and `to` (YYYY-MM-DD, both included; default the 30 days ending today in the
clinic's time zone, or the 30 ending `to`), `group_by` (practitioner or location). A malformed
date, one outside 1900-01-01..2100-12-31 or an unknown `group_by` is a 400 VALIDATION_ERROR
whose `details` name the parameter. Every request the schema allows is answered: the schema
cannot relate two parameters, so `from` after `to` is read as the same two ends the other way
round (the answer's `period` says which days were counted), and a period may be of any length
in that window (the work is bounded by the clinic's appointments from the period's start on,
not by its length).

Like the re-engagement endpoints it answers from the organization's versioned cache, keyed by
the clinic's date as well (the default period moves at its midnight), and says `data_as_of`.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from typing import Any

from django.http import HttpResponse
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request

from clinics.models import Organization
from patients.api.answers import answer_rendered, answer_response
from patients.api.profiles import ProfileView, _choice
from patients.kpis import (
    GROUP_BY_CHOICES,
    KPI_DEFINITIONS,
    Period,
    clinic_kpi_comparison,
    clinic_today,
)
from patients.kpis.figures import COUNT_FIGURES, UNAVAILABLE
from routiq.api.pagination import invalid
from routiq.api.schema import ORG_SCOPED_ERRORS, error_responses
from routiq.api.schema import envelope as envelope_schema

DEFAULT_DAYS = 30
EARLIEST = date(1900, 1, 1)
LATEST = date(2100, 12, 31)
# What the schema promises, so that a generated "valid" date is one this endpoint accepts.
DATE_PATTERN = r"^(19[0-9]{2}|20[0-9]{2}|2100)-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$"
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _query_date(request: Request, name: str) -> date | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    try:
        day = date.fromisoformat(raw) if _DATE.fullmatch(raw) else None
    except ValueError:
        day = None
    if day is None:
        raise invalid(name, "Must be a date, YYYY-MM-DD.")
    if not EARLIEST <= day <= LATEST:
        raise invalid(name, f"Must be from {EARLIEST} to {LATEST}.")
    return day


def kpi_period(request: Request, *, today: date) -> Period:
    """The period asked for: `to` (default today), `from` (default 29 days before `to`), the
    earlier of the two first."""
    end = _query_date(request, "to") or today
    start = _query_date(request, "from") or end - timedelta(days=DEFAULT_DAYS - 1)
    return Period(min(start, end), max(start, end))


def kpis_answer(
    organization: Organization,
    *,
    period: Period | None = None,
    group_by: str | None = None,
    now: datetime | None = None,
) -> bytes:
    """The answer as JSON (less the envelope's own fields), from the organization's cache; by
    default the 30 days ending today, which is also what warms the cache after a sync."""
    now = now or timezone.now()
    today = clinic_today(organization, now=now)
    period = period or Period.ending(today, days=DEFAULT_DAYS)

    def compute() -> tuple[str, Any, dict[str, Any]]:
        report = clinic_kpi_comparison(
            organization, start=period.start, end=period.end, group_by=group_by, now=now
        )
        answer = {
            "time_zone": organization.time_zone,
            "group_by": group_by,
            **report,
            "groups": report.get("groups"),
            "definitions": KPI_DEFINITIONS,
        }
        return "kpis", answer, {}

    params = {
        "from": period.start.isoformat(),
        "to": period.end.isoformat(),
        "group_by": group_by,
        # Figures move with the clinic's date (visits become attended) even when the data does not.
        "day": today.isoformat(),
        "time_zone": organization.time_zone,
        "currency": organization.currency,
    }
    return answer_rendered(organization, "analytics.kpis", params, compute, data_only=True)


# --- the same, declared for the OpenAPI schema ---------------------------------------------------
def _nullable(help_text: str) -> serializers.FloatField:
    return serializers.FloatField(allow_null=True, help_text=help_text)


AnalyticsKpiPeriodSerializer = type(
    "AnalyticsKpiPeriodSerializer",
    (serializers.Serializer,),
    {
        "from": serializers.DateField(help_text="First clinic-local day"),
        "to": serializers.DateField(help_text="Last clinic-local day, included"),
        "days": serializers.IntegerField(),
    },
)
AnalyticsKpiFiguresSerializer = type(
    "AnalyticsKpiFiguresSerializer",
    (serializers.Serializer,),
    {
        **{name: serializers.IntegerField(help_text=KPI_DEFINITIONS[name]) for name in COUNT_FIGURES},
        **{
            name: _nullable(f"{text} Null when there is nothing to divide by, or see `unavailable`.")
            for name, text in KPI_DEFINITIONS.items()
            if name not in COUNT_FIGURES and name not in {"revenue", "credits"}
        },
        "revenue": serializers.FloatField(help_text=KPI_DEFINITIONS["revenue"]),
        "credits": serializers.FloatField(help_text=KPI_DEFINITIONS["credits"]),
        "pva_definition": serializers.ChoiceField(choices=["cliniko"]),
        "currency": serializers.CharField(help_text="ISO 4217, the organization's"),
        "unavailable": serializers.DictField(
            child=serializers.CharField(), help_text=f"Why these are null: {', '.join(UNAVAILABLE)}"
        ),
    },
)


class AnalyticsKpiChangeSerializer(serializers.Serializer):
    change = _nullable("Current - previous, in the figure's unit (rates as fractions)")
    relative_change = _nullable("change / previous; null when the previous is 0 or either is null")


class AnalyticsKpiComparedSerializer(serializers.Serializer):
    current = AnalyticsKpiFiguresSerializer()
    previous = AnalyticsKpiFiguresSerializer()
    changes = serializers.DictField(child=AnalyticsKpiChangeSerializer(), help_text="Per figure")


class AnalyticsKpiGroupSerializer(AnalyticsKpiComparedSerializer):
    id = serializers.IntegerField(allow_null=True, help_text="Routiq practitioner or location id; null: none")
    name = serializers.CharField()


class AnalyticsKpisSerializer(AnalyticsKpiComparedSerializer):
    time_zone = serializers.CharField(help_text="The clinic's: every day is one of its calendar days")
    group_by = serializers.ChoiceField(choices=list(GROUP_BY_CHOICES), allow_null=True)
    period = AnalyticsKpiPeriodSerializer()
    previous_period = AnalyticsKpiPeriodSerializer(help_text="Of equal length, just before")
    groups = AnalyticsKpiGroupSerializer(
        many=True, allow_null=True, help_text="Per practitioner or location (null without group_by)"
    )
    definitions = serializers.DictField(child=serializers.CharField(), help_text="What each figure counts")


class AnalyticsKpisEnvelope(envelope_schema("AnalyticsKpis", "kpis", AnalyticsKpisSerializer)):
    data_as_of = serializers.DateTimeField(allow_null=True)


def _date_parameter(name: str, description: str) -> OpenApiParameter:
    schema = {"type": "string", "format": "date", "pattern": DATE_PATTERN}
    return OpenApiParameter(name, schema, description=description)


class ClinicKpisView(ProfileView):
    @extend_schema(
        operation_id="analytics_kpis",
        summary="The clinic KPIs of clinic-local days beside the period of equal length before, with changes",
        parameters=[
            _date_parameter(
                "from",
                f"First day, {EARLIEST} to {LATEST} (default: {DEFAULT_DAYS - 1} days before `to`). After "
                "`to`, the two are read the other way round.",
            ),
            _date_parameter(
                "to",
                f"Last day, included, {EARLIEST} to {LATEST} (default: today in the clinic's time zone).",
            ),
            OpenApiParameter(
                "group_by",
                {"type": "string", "enum": list(GROUP_BY_CHOICES)},
                description="Also per practitioner or per location (each group and the total).",
            ),
        ],
        responses={200: AnalyticsKpisEnvelope, **error_responses(400, *ORG_SCOPED_ERRORS)},
    )
    def get(self, request: Request, org_id: str) -> HttpResponse:
        organization, now = self.organization, timezone.now()
        period = kpi_period(request, today=clinic_today(organization, now=now))
        group_by = _choice(request, "group_by", list(GROUP_BY_CHOICES))
        return answer_response(
            organization, kpis_answer(organization, period=period, group_by=group_by, now=now)
        )
