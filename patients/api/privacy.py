"""Privacy endpoints (admin only): export a patient, anonymise a patient, purge by retention."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from clinics.api.base import OrganizationScopedView
from clinics.audit import audit_record
from clinics.models import Role
from patients import privacy
from patients.models import Patient
from routiq.api import envelope
from routiq.api.errors import NotFound
from routiq.api.schema import ORG_SCOPED_ERRORS, error_responses
from routiq.api.schema import envelope as envelope_schema


class PatientExportSerializer(serializers.Serializer):
    organization_id = serializers.CharField()
    exported_at = serializers.DateTimeField()
    patient = serializers.DictField()
    appointments = serializers.ListField(child=serializers.DictField())
    invoices = serializers.ListField(child=serializers.DictField())


class AnonymisedSerializer(serializers.Serializer):
    patient_id = serializers.IntegerField()
    anonymised_at = serializers.DateTimeField()


class PurgeResultSerializer(serializers.Serializer):
    cutoff = serializers.DateTimeField()
    appointments = serializers.IntegerField()
    invoices = serializers.IntegerField()
    patients = serializers.IntegerField()
    dry_run = serializers.BooleanField()


class StrictBooleanField(serializers.BooleanField):
    """JSON `true` or `false` only: DRF's own also takes 0, "no", "off"... as false."""

    def to_internal_value(self, data: object) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid", input=data)
        return data


class PurgeRequestSerializer(serializers.Serializer):
    # Strict: `false` deletes, so nothing but `false` may mean it.
    dry_run = StrictBooleanField(default=True, help_text="Count only; send false to delete")


class PrivacyView(OrganizationScopedView):
    read_role = Role.ADMIN
    write_role = Role.ADMIN


class PatientExportView(PrivacyView):
    @extend_schema(
        operation_id="privacy_patient_export",
        summary="Everything held about one patient (audited)",
        responses={
            200: envelope_schema("PatientExport", "export", PatientExportSerializer),
            **error_responses(*ORG_SCOPED_ERRORS),
        },
    )
    def get(self, request: Request, org_id: str, patient_id: int) -> Response:
        try:
            data = privacy.patient_export(self.organization, patient_id=patient_id)
        except Patient.DoesNotExist:
            raise NotFound("No such patient.") from None
        audit_record(
            self.organization,
            actor=request,
            action="patient.export",
            object_type="patient",
            object_id=patient_id,
        )
        return envelope.ok("export", data, organization_id=self.organization.pk)


class PatientAnonymiseView(PrivacyView):
    @extend_schema(
        operation_id="privacy_patient_anonymise",
        summary="Erase one patient's personal data irreversibly; appointments and invoices stay",
        request=None,
        responses={
            200: envelope_schema("PatientAnonymised", "anonymised", AnonymisedSerializer),
            **error_responses(*ORG_SCOPED_ERRORS),
        },
    )
    def post(self, request: Request, org_id: str, patient_id: int) -> Response:
        try:
            patient = privacy.patient_anonymise(self.organization, patient_id=patient_id)
        except Patient.DoesNotExist:
            raise NotFound("No such patient.") from None
        audit_record(
            self.organization,
            actor=request,
            action="patient.anonymise",
            object_type="patient",
            object_id=patient.pk,
        )
        data = {"patient_id": patient.pk, "anonymised_at": patient.anonymised_at}
        return envelope.ok(
            "anonymised", AnonymisedSerializer(data).data, organization_id=self.organization.pk
        )


class RetentionPurgeView(PrivacyView):
    @extend_schema(
        operation_id="privacy_retention_purge",
        summary="Delete data older than the organization's retention horizon (dry run by default)",
        request=PurgeRequestSerializer,
        responses={
            200: envelope_schema("RetentionPurge", "purge", PurgeResultSerializer),
            **error_responses(400, *ORG_SCOPED_ERRORS),
        },
    )
    def post(self, request: Request, org_id: str) -> Response:
        body = PurgeRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        result = privacy.retention_purge(self.organization, dry_run=body.validated_data["dry_run"])
        data = PurgeResultSerializer(result.__dict__).data
        audit_record(self.organization, actor=request, action="retention.purge", details=dict(data))
        return envelope.ok("purge", data, organization_id=self.organization.pk)
