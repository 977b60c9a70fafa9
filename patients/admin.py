from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from clinics.models import Organization
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
