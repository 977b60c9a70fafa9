from __future__ import annotations

import json
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from clinics.audit import audit_record
from clinics.models import Membership, Organization, Role
from patients import admin_profiles, privacy  # noqa: F401 - admin_profiles registers the profile admin
from patients.models import Appointment, AppointmentType, Invoice, Patient, Practitioner
from routiq.admin_tools import PmsCopyAdmin


@admin.register(Practitioner)
class PractitionerAdmin(PmsCopyAdmin):
    list_display = ("__str__", "organization", "designation", "active", "external_id")
    list_filter = ("organization", "active")
    search_fields = ("first_name", "last_name", "email", "external_id")
    list_select_related = ("organization",)


@admin.register(AppointmentType)
class AppointmentTypeAdmin(PmsCopyAdmin):
    list_display = ("name", "organization", "category", "duration_minutes", "price", "external_id")
    search_fields = ("name", "category", "external_id")
    list_select_related = ("organization",)


@admin.register(Patient)
class PatientAdmin(PmsCopyAdmin):
    list_display = ("__str__", "organization", "email", "mobile_e164", "date_of_birth", "archived_at")
    list_filter = ("organization", ("archived_at", admin.EmptyFieldListFilter))
    search_fields = ("first_name", "last_name", "email_normalized", "=mobile_e164", "=external_id")
    list_select_related = ("organization",)
    actions = ["export_json", "anonymise"]

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        from patients.phones import to_e164

        results, distinct = super().get_search_results(request, queryset, search_term)
        # A phone typed in any spelling finds the patient through the normalised numbers.
        countries = set(Organization.objects.values_list("country", flat=True).distinct()) or {"AU"}
        variants = {to_e164(search_term, country) for country in countries} - {None}
        if variants:
            results = results | queryset.filter(phones_e164__overlap=list(variants))
        return results, distinct

    @admin.action(description="Export selected patient as JSON")
    def export_json(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        patients = list(queryset.select_related("organization")[:2])
        if len(patients) != 1:
            self.message_user(request, "Select exactly one patient to export.", messages.WARNING)
            return None
        patient = patients[0]
        if not self._may_run_privacy_actions(request, patients):
            return None
        data = privacy.patient_export(patient.organization, patient_id=patient.pk)
        audit_record(
            patient.organization,
            actor=request,
            action="patient.export",
            object_type="patient",
            object_id=patient.pk,
            details={"via": "admin"},
        )
        response = HttpResponse(
            json.dumps(data, indent=2, ensure_ascii=False), content_type="application/json; charset=utf-8"
        )
        filename = f"patient-{patient.organization_id}-{patient.pk}.json"
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response

    @admin.action(description="Anonymise selected patients")
    def anonymise(self, request: HttpRequest, queryset: QuerySet) -> TemplateResponse | None:
        patients = list(queryset.select_related("organization").order_by("organization_id", "pk"))
        if not patients:  # selected rows this user may not see are not in the queryset
            self.message_user(request, "Select at least one patient to anonymise.", messages.WARNING)
            return None
        if not self._may_run_privacy_actions(request, patients):
            return None
        if request.POST.get("post") != "yes":
            return TemplateResponse(
                request,
                "admin/patients/anonymise_confirm.html",
                {
                    **self.admin_site.each_context(request),
                    "title": "Anonymise patients?",
                    "opts": self.model._meta,
                    "patients": patients,
                    "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
                },
            )
        for patient in patients:
            privacy.patient_anonymise(patient.organization, patient_id=patient.pk)
            audit_record(
                patient.organization,
                actor=request,
                action="patient.anonymise",
                object_type="patient",
                object_id=patient.pk,
                details={"via": "admin"},
            )
        self.message_user(request, f"Anonymised {len(patients)} patient(s).", messages.SUCCESS)
        return None

    def _may_run_privacy_actions(self, request: HttpRequest, patients: list[Patient]) -> bool:
        """Operators, or an admin of every selected patient's organization; says so if not."""
        user = request.user
        if user.is_superuser:
            return True
        org_ids = {patient.organization_id for patient in patients}
        admin_of = set(
            Membership.objects.filter(user=user, role=Role.ADMIN, organization_id__in=org_ids).values_list(
                "organization_id", flat=True
            )
        )
        if org_ids <= admin_of:
            return True
        self.message_user(
            request, "Only an admin of the patient's organization may export or anonymise.", messages.ERROR
        )
        return False


@admin.register(Appointment)
class AppointmentAdmin(PmsCopyAdmin):
    list_display = (
        "starts_at",
        "patient",
        "practitioner",
        "appointment_type",
        "location",
        "outcome_display",
        "organization",
    )
    list_filter = ("organization", "did_not_arrive", ("cancelled_at", admin.EmptyFieldListFilter))
    search_fields = ("=external_id", "patient__last_name", "patient__first_name")
    list_select_related = ("organization", "patient", "practitioner", "appointment_type", "location")

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).with_outcome()

    @admin.display(description="Outcome", ordering="outcome")
    def outcome_display(self, obj: Any) -> str:
        return obj.outcome.replace("_", " ")


@admin.register(Invoice)
class InvoiceAdmin(PmsCopyAdmin):
    list_display = ("__str__", "patient", "issue_date", "status", "total_amount", "organization")
    list_filter = ("organization", "status")
    search_fields = ("number", "=external_id", "patient__last_name")
    list_select_related = ("organization", "patient")
