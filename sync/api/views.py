"""Sync endpoints: trigger a run, follow it, see a connection's state, count what is held.

The PMS is only read. A trigger when the PMS is out of reach (circuit open, credentials
refused) answers 503 with `fallback_data`, while every other endpoint keeps serving the data
already held.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any, ClassVar

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from clinics.api.base import OrganizationScopedView
from clinics.audit import audit_record
from clinics.models import ConnectionStatus, PmsConnection, Role
from clinics.tenancy import PmsKind
from patients.selectors import patient_sync_details, patient_sync_stats
from routiq.api import envelope
from routiq.api.errors import Conflict, NotFound, PmsAuthFailed, PmsUnavailable, ValidationFailed
from routiq.api.pagination import (
    bool_parameter,
    integer_parameter,
    page_parameters,
    paginate,
    query_bool,
    query_integer,
)
from routiq.api.schema import ORG_SCOPED_ERRORS, error_responses
from routiq.api.schema import envelope as envelope_schema
from routiq.api.throttling import CallerRateThrottle, OrganizationRateThrottle, SyncTriggerThrottle
from sync import selectors, services
from sync.api.serializers import (
    MODE_ALIASES,
    AgnosticSyncTriggerRequestSerializer,
    PatientStatsResponseSerializer,
    SyncRunSerializer,
    SyncRunWithLogSerializer,
    SyncStatusSerializer,
    SyncTriggerRequestSerializer,
    run_status_url,
)
from sync.models import SyncMode, SyncRun, SyncTrigger

RECENT_RUNS_MAX = 50


def _caller_label(request: Request) -> str:
    principal = request.auth
    if getattr(principal, "kind", None) == "api_key":
        return f"api-key:{principal.api_key.prefix}"
    return request.user.get_username() if request.user.is_authenticated else "anonymous"


class SyncTriggerBase(OrganizationScopedView):
    write_role = Role.STAFF
    throttle_classes: ClassVar[list[Any]] = [
        CallerRateThrottle,
        OrganizationRateThrottle,
        SyncTriggerThrottle,
    ]
    request_serializer: ClassVar[type] = SyncTriggerRequestSerializer
    # Each route says which connection it syncs: `connection(validated_data)`.
    connection: Any

    def post(self, request: Request, org_id: str) -> Response:
        if not isinstance(request.data, dict):  # JSON null, a list...: an empty body is fine
            raise ValidationFailed(
                "The body must be a JSON object.", details={"body": ["Expected an object."]}
            )
        body = self.request_serializer(data=request.data)
        body.is_valid(raise_exception=True)
        mode, resources = MODE_ALIASES[body.validated_data["mode"]]
        if body.validated_data["force_full"]:
            mode = SyncMode.FULL
        connection = self.connection(body.validated_data)
        _refuse_if_unreachable(connection)
        run, created = services.sync_run_request(
            self.organization,
            connection=connection,
            mode=mode,
            trigger=SyncTrigger.API,
            requested_by=_caller_label(request),
            resources=resources,
        )
        if created:
            services.sync_run_enqueue(run)
            audit_record(
                self.organization,
                actor=request,
                action="sync.trigger",
                object_type="sync_run",
                object_id=run.pk,
                details={"mode": mode, "resources": resources},
            )
        return envelope.ok(
            "run",
            SyncRunSerializer(run).data,
            organization_id=self.organization.pk,
            status=202 if created else 200,
            created=created,
            status_url=run_status_url(run),
        )


def _refuse_if_unreachable(connection: PmsConnection) -> None:
    if connection.status == ConnectionStatus.DISABLED:
        raise Conflict("The PMS connection is disabled; an admin must enable it first.")
    fallback = selectors.fallback_data(connection)
    if connection.status == ConnectionStatus.NEEDS_ATTENTION:
        raise PmsAuthFailed(
            "The PMS refused the stored credentials; an admin must update them. The data held is still"
            " served.",
            fallback_data=fallback,
        )
    circuit = selectors.connection_circuit(connection)
    if selectors.circuit_is_open(circuit):
        retry = datetime.fromtimestamp(circuit.retry_at, UTC).isoformat() if circuit.retry_at else None
        raise PmsUnavailable(
            "The PMS kept failing, so calls to it are paused; the data held is still served.",
            fallback_data=fallback,
            details={"retry_at": retry},
        )


_TRIGGER_RESPONSES = {
    200: envelope_schema("SyncAlreadyRunning", "run", SyncRunSerializer, org=True),
    202: envelope_schema("SyncQueued", "run", SyncRunSerializer, org=True),
    **error_responses(400, *ORG_SCOPED_ERRORS, 409, 503),
}


class ClinikoSyncTriggerView(SyncTriggerBase):
    def connection(self, data: dict[str, Any]) -> PmsConnection:
        found = selectors.pms_connection_for(self.organization, kind=PmsKind.CLINIKO)
        if found is None:
            raise NotFound("This organization has no Cliniko connection.")
        return found

    @extend_schema(
        operation_id="cliniko_sync_trigger",
        summary="Start a Cliniko sync (staff); 202 with the new run, 200 with the one already running",
        request=SyncTriggerRequestSerializer,
        responses=_TRIGGER_RESPONSES,
    )
    def post(self, request: Request, org_id: str) -> Response:
        return super().post(request, org_id)


class SyncTriggerView(SyncTriggerBase):
    request_serializer = AgnosticSyncTriggerRequestSerializer

    def connection(self, data: dict[str, Any]) -> PmsConnection:
        found = selectors.pms_connection_for(self.organization, kind=data.get("pms"))
        if found is not None:
            return found
        if data.get("pms") is None and PmsConnection.objects.for_org(self.organization).exists():
            raise ValidationFailed(
                "This organization has several PMS connections; say which with `pms`.",
                details={"pms": ["Required when there is more than one connection."]},
            )
        raise NotFound("This organization has no such PMS connection.")

    @extend_schema(
        operation_id="sync_trigger",
        summary="Start a sync of the organization's PMS, whichever it is (staff)",
        request=AgnosticSyncTriggerRequestSerializer,
        responses=_TRIGGER_RESPONSES,
    )
    def post(self, request: Request, org_id: str) -> Response:
        return super().post(request, org_id)


INCLUDE_LOGS = bool_parameter("include_logs", "Add each run's log (what happened, step by step).")


class SyncRunDetailView(OrganizationScopedView):
    @extend_schema(
        operation_id="sync_run_detail",
        summary="One sync run: status, counts per resource, requests, errors",
        parameters=[INCLUDE_LOGS],
        responses={
            200: envelope_schema("SyncRun", "run", SyncRunWithLogSerializer),
            **error_responses(400, *ORG_SCOPED_ERRORS),
        },
    )
    def get(self, request: Request, org_id: str, run_id: int) -> Response:
        include_logs = query_bool(request, "include_logs")
        try:
            run = selectors.sync_run_get(self.organization, run_id=run_id)
        except SyncRun.DoesNotExist:
            raise NotFound("No such sync run.") from None
        data = SyncRunSerializer(run, context={"include_logs": include_logs}).data
        return envelope.ok("run", data, organization_id=self.organization.pk)


class SyncRunListView(OrganizationScopedView):
    @extend_schema(
        operation_id="sync_run_list",
        summary="The organization's sync runs, newest first",
        parameters=[INCLUDE_LOGS, *page_parameters(default_limit=20)],
        responses={
            200: envelope_schema("SyncRunList", "runs", SyncRunWithLogSerializer, many=True),
            **error_responses(400, *ORG_SCOPED_ERRORS),
        },
    )
    def get(self, request: Request, org_id: str) -> Response:
        context = {"include_logs": query_bool(request, "include_logs")}
        return paginate(
            request,
            selectors.sync_run_list(self.organization),
            key="runs",
            ordering=("-created_at", "-pk"),
            serialize=lambda runs: SyncRunSerializer(runs, many=True, context=context).data,
            organization_id=self.organization.pk,
            default_limit=20,
        )


class ClinikoStatusView(OrganizationScopedView):
    @extend_schema(
        operation_id="cliniko_status",
        summary="The Cliniko connection: state, circuit, last success, data age, recent runs",
        parameters=[
            INCLUDE_LOGS,
            integer_parameter(
                "logs_limit", "How many recent runs to show.", default=10, least=1, most=RECENT_RUNS_MAX
            ),
            bool_parameter("include_health_check", "Also make one cheap read from Cliniko now (admins)."),
        ],
        responses={
            200: envelope_schema("ClinikoStatus", "sync_status", SyncStatusSerializer),
            **error_responses(400, *ORG_SCOPED_ERRORS),
        },
    )
    def get(self, request: Request, org_id: str) -> Response:
        include_logs = query_bool(request, "include_logs")
        limit = query_integer(request, "logs_limit", default=10, least=1, most=RECENT_RUNS_MAX)
        health = query_bool(request, "include_health_check")
        connection = selectors.pms_connection_for(self.organization, kind=PmsKind.CLINIKO)
        if connection is None:
            raise NotFound("This organization has no Cliniko connection.")
        circuit = selectors.connection_circuit(connection)
        runs = list(selectors.sync_run_list(self.organization, connection=connection)[:limit])
        active = selectors.sync_run_active(self.organization, connection)
        context = {"include_logs": include_logs}
        data: dict[str, Any] = {
            "pms": connection.kind,
            "connected": connection.status == ConnectionStatus.ACTIVE,
            "connection": connection,
            "circuit": {
                "state": circuit.state.value,
                "consecutive_failures": circuit.consecutive_failures,
                "retry_at": datetime.fromtimestamp(circuit.retry_at, UTC) if circuit.retry_at else None,
            },
            "last_successful_sync_at": connection.last_successful_sync_at,
            "data_age_minutes": selectors.data_age_minutes(connection),
            "active_run": active,
            "recent_runs": runs,
        }
        if health:
            if self.role != Role.ADMIN:
                raise ValidationFailed(
                    "Only admins may ask for a health check.",
                    details={"include_health_check": ["Admins only."]},
                )
            data["health_check"] = asdict(selectors.connection_health_check(connection))
        return envelope.ok(
            "sync_status",
            SyncStatusSerializer(data, context=context).data,
            organization_id=self.organization.pk,
        )


class ClinikoPatientStatsView(OrganizationScopedView):
    @extend_schema(
        operation_id="cliniko_patient_stats",
        summary="How many patients are held and in what state; optionally the first of them",
        parameters=[
            bool_parameter("include_details", "Add a list of patients with their appointment counts."),
            bool_parameter("with_appointments_only", "The list: only patients with appointments."),
            integer_parameter("limit", "The list: how many patients.", default=50, least=1, most=200),
        ],
        responses={
            200: envelope_schema("PatientStats", "patient_stats", PatientStatsResponseSerializer),
            **error_responses(400, *ORG_SCOPED_ERRORS),
        },
    )
    def get(self, request: Request, org_id: str) -> Response:
        include_details = query_bool(request, "include_details")
        with_appointments_only = query_bool(request, "with_appointments_only")
        limit = query_integer(request, "limit", default=50, least=1, most=200)
        stats = patient_sync_stats(self.organization)
        connection = selectors.pms_connection_for(self.organization, kind=PmsKind.CLINIKO)
        stats["data_age_minutes"] = selectors.data_age_minutes(connection) if connection else None
        data: dict[str, Any] = {"stats": stats}
        if include_details:
            data["patients"] = patient_sync_details(
                self.organization, with_appointments_only=with_appointments_only, limit=limit
            )
            audit_record(
                self.organization,
                actor=request,
                action="patient.list",
                object_type="patient",
                details={"count": len(data["patients"]), "endpoint": "cliniko_patient_stats"},
            )
        return envelope.ok(
            "patient_stats", PatientStatsResponseSerializer(data).data, organization_id=self.organization.pk
        )
