"""The patient-profile endpoints of the re-engagement API (paths from the frontend contract).

Before reading, the organization's expired profiles are recomputed (usually none), so every
figure is right on the day it is read; every answer says `data_as_of`, when the data was last
brought up to date from the PMS.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from clinics.api.base import OrganizationScopedView
from clinics.models import Role
from patients import selectors
from patients.api import answers
from patients.api.answers import answer_rendered, answer_response, profile_rows
from patients.api.profile_data import PatientProfileSerializer, ProfileSummarySerializer
from patients.models import ChurnRisk, EngagementLevel, LifecycleStage, PatientProfile
from patients.profiles import profiles_refresh_expired
from routiq.api import envelope
from routiq.api.errors import NotFound, ValidationFailed
from routiq.api.pagination import (
    SEARCH_PARAMETER,
    PageRequest,
    bool_parameter,
    invalid,
    page_parameters,
    query_bool,
    query_text,
)
from routiq.api.schema import ORG_SCOPED_ERRORS, error_responses
from routiq.api.schema import envelope as envelope_schema

BATCH_LIMIT = 200
_CHOICES = {
    "engagement_level": EngagementLevel.values,
    "churn_risk": ChurnRisk.values,
    "lifecycle_stage": LifecycleStage.values,
}


def _choice(request: Request, name: str, choices: list[str]) -> str | None:
    value = request.query_params.get(name)
    if value is None:
        return None
    if value not in choices:
        raise invalid(name, f"Must be one of {', '.join(choices)}.")
    return value


def _identifier(request: Request, name: str) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    if not raw.isascii() or not raw.isdigit() or not 0 < int(raw) < 2**63:
        raise invalid(name, "Must be a Routiq id (a positive whole number).")
    return int(raw)


class ProfileView(OrganizationScopedView):
    def fresh(self) -> None:
        profiles_refresh_expired(self.organization)

    def cached(self, name: str, params: dict[str, Any], compute: Any) -> HttpResponse:
        """The answer from the organization's versioned cache (see patients.api.answers)."""
        return answer_response(self.organization, answer_rendered(self.organization, name, params, compute))

    def answer(self, key: str, data: Any, **extra: Any) -> Response:
        return envelope.ok(
            key,
            data,
            organization_id=self.organization.pk,
            data_as_of=selectors.organization_data_as_of(self.organization),
            **extra,
        )

    def rows(self, profiles: Any) -> list[dict[str, Any]]:
        return profile_rows(self.organization, profiles)


def _choice_parameter(name: str, choices: list[str]) -> OpenApiParameter:
    return OpenApiParameter(
        name, {"type": "string", "enum": choices}, description=f"Only profiles with this {name}."
    )


def _id_parameter(name: str, description: str) -> OpenApiParameter:
    return OpenApiParameter(
        name, {"type": "integer", "minimum": 1, "maximum": 2**63 - 1}, description=description
    )


DATA_AS_OF = {"data_as_of": serializers.DateTimeField(allow_null=True)}


# --- the list's parameters, read and documented once for the list and its export ---------------
def profile_list_query(request: Request) -> tuple[selectors.ProfileFilters, str]:
    """The filters and ordering of a patient-profile list request (400 naming a bad one)."""
    filters = selectors.ProfileFilters(
        search=query_text(request, "search"),
        **{name: _choice(request, name, choices) for name, choices in _CHOICES.items()},
        has_upcoming=query_bool(request, "has_upcoming") if "has_upcoming" in request.query_params else None,
        practitioner_id=_identifier(request, "practitioner"),
        location_id=_identifier(request, "location"),
    )
    ordering = _choice(request, "ordering", list(selectors.PROFILE_ORDERINGS)) or "priority"
    return filters, ordering


def profile_list_parameters() -> list[OpenApiParameter]:
    return [
        SEARCH_PARAMETER,
        *(_choice_parameter(name, choices) for name, choices in _CHOICES.items()),
        bool_parameter("has_upcoming", "Only patients with (true) or without (false) a future booking."),
        _id_parameter("practitioner", "Only patients whose usual practitioner this is (Routiq id)."),
        _id_parameter("location", "Only patients whose usual location this is (Routiq id)."),
        OpenApiParameter(
            "ordering",
            {"type": "string", "enum": list(selectors.PROFILE_ORDERINGS)},
            description="priority (default: most urgent, most value at risk first), risk, value,"
            " days_since_last_visit (longest first), name.",
        ),
    ]


class PatientProfileListView(ProfileView):
    @extend_schema(
        operation_id="reengagement_patient_profiles",
        summary="Patient profiles, filtered, searched and ordered (stable: paging never repeats or skips)",
        parameters=[*profile_list_parameters(), *page_parameters()],
        responses={
            200: envelope_schema(
                "PatientProfileList", "patient_profiles", PatientProfileSerializer, many=True
            ),
            **error_responses(400, *ORG_SCOPED_ERRORS),
        },
    )
    def get(self, request: Request, org_id: str) -> Response:
        window = PageRequest.from_request(request)
        filters, ordering = profile_list_query(request)

        page = answers.profile_page(
            self.organization, filters=filters, ordering=ordering, limit=window.limit, offset=window.offset
        )
        return answer_response(self.organization, page)


class PatientProfileDetailView(ProfileView):
    @extend_schema(
        operation_id="reengagement_patient_profile",
        summary="One patient's profile",
        responses={
            200: envelope_schema("PatientProfileDetail", "profile", PatientProfileSerializer),
            **error_responses(*ORG_SCOPED_ERRORS),
        },
    )
    def get(self, request: Request, org_id: str, patient_id: int) -> Response:
        def compute() -> tuple[str, Any, dict[str, Any]]:
            try:
                profile = selectors.patient_profile_get(self.organization, patient_id=patient_id)
            except PatientProfile.DoesNotExist:
                raise NotFound("No such patient.") from None
            return "profile", self.rows([profile])[0], {}

        return self.cached("detail", {"patient_id": patient_id}, compute)


class PatientProfileSummaryView(ProfileView):
    @extend_schema(
        operation_id="reengagement_patient_profiles_summary",
        summary="How many patients in each engagement level, risk band and stage; the value at risk",
        responses={
            200: envelope_schema("PatientProfileSummary", "summary", ProfileSummarySerializer),
            **error_responses(*ORG_SCOPED_ERRORS),
        },
    )
    def get(self, request: Request, org_id: str) -> Response:
        return answer_response(self.organization, answers.profile_summary(self.organization))


class PatientProfileDebugView(ProfileView):
    read_role = Role.ADMIN

    @extend_schema(
        operation_id="reengagement_patient_profiles_debug",
        summary="Freshness and coverage of the profiles, the thresholds in use, the sync state (admins)",
        responses={
            200: envelope_schema("PatientProfileDebug", "debug", serializers.DictField()),
            **error_responses(*ORG_SCOPED_ERRORS),
        },
    )
    def get(self, request: Request, org_id: str) -> Response:
        self.fresh()
        debug = selectors.patient_profile_debug(self.organization)
        return self.answer("debug", serializers.JSONField().to_representation(_plain(debug)))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "as_tuple"):  # Decimal
        return float(value)
    return value


class BatchRequestSerializer(serializers.Serializer):
    patient_ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=2**63 - 1),
        min_length=1,
        max_length=BATCH_LIMIT,
        help_text=f"Routiq patient ids, at most {BATCH_LIMIT}",
    )


class PatientProfileBatchView(ProfileView):
    read_role = Role.READ_ONLY
    write_role = Role.READ_ONLY  # a read, POSTed because the id list can be long

    @extend_schema(
        operation_id="reengagement_patient_profiles_batch",
        summary=f"The profiles of up to {BATCH_LIMIT} patients; ids not found are listed, not errors",
        request=BatchRequestSerializer,
        responses={
            200: envelope_schema(
                "PatientProfileBatch", "patient_profiles", PatientProfileSerializer(many=True)
            ),
            **error_responses(400, *ORG_SCOPED_ERRORS),
        },
    )
    def post(self, request: Request, org_id: str) -> Response:
        if not isinstance(request.data, dict):
            raise ValidationFailed(
                "The body must be a JSON object.", details={"body": ["Expected an object."]}
            )
        body = BatchRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        wanted = list(dict.fromkeys(body.validated_data["patient_ids"]))
        self.fresh()
        found = {
            p.patient_id: p
            for p in selectors.patient_profiles(self.organization).filter(patient_id__in=wanted)
        }
        rows = self.rows([found[i] for i in wanted if i in found])
        return self.answer(
            "patient_profiles", rows, count=len(rows), not_found=[i for i in wanted if i not in found]
        )
