from __future__ import annotations

from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import GinIndex
from django.db import models
from django.db.models import F, Q
from django.db.models.fields.json import KT

from clinics.tenancy import PmsRecord, TenantQuerySet


class Practitioner(PmsRecord):
    first_name = models.CharField(max_length=100, blank=True)
    last_name = models.CharField(max_length=100, blank=True)
    title = models.CharField(max_length=50, blank=True)
    designation = models.CharField(max_length=100, blank=True)
    email = models.CharField(max_length=254, blank=True)
    active = models.BooleanField(default=True)

    class Meta(PmsRecord.Meta):
        ordering = ["last_name", "first_name"]

    def __str__(self) -> str:
        return " ".join(p for p in (self.title, self.first_name, self.last_name) if p)


class AppointmentType(PmsRecord):
    name = models.CharField(max_length=200)
    category = models.CharField(max_length=100, blank=True)
    duration_minutes = models.PositiveIntegerField(null=True, blank=True)
    price = models.DecimalField(
        max_digits=10, decimal_places=2, null=True, blank=True, help_text="When the PMS tells us"
    )
    max_attendees = models.PositiveIntegerField(default=1)

    class Meta(PmsRecord.Meta):
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Patient(PmsRecord):
    first_name = models.CharField(max_length=100, blank=True)
    last_name = models.CharField(max_length=100, blank=True)
    preferred_first_name = models.CharField(max_length=100, blank=True)
    title = models.CharField(max_length=50, blank=True)
    date_of_birth = models.DateField(null=True, blank=True)
    sex = models.CharField(max_length=50, blank=True)
    email = models.CharField(max_length=254, blank=True, help_text="As the PMS gave it")
    email_normalized = models.CharField(
        max_length=254, blank=True, editable=False, help_text="Case-folded, for matching"
    )
    phone_numbers = models.JSONField(
        default=list, blank=True, help_text='As the PMS gave them: [{"type": ..., "number": ...}]'
    )
    phones_e164 = ArrayField(
        models.CharField(max_length=20),
        default=list,
        blank=True,
        editable=False,
        help_text="Every phone normalised to E.164 with the organization's country",
    )
    mobile_e164 = models.CharField(max_length=20, blank=True, editable=False)
    city = models.CharField(max_length=100, blank=True)
    state = models.CharField(max_length=100, blank=True)
    post_code = models.CharField(max_length=20, blank=True)
    merged_at = models.DateTimeField(null=True, blank=True)
    anonymised_at = models.DateTimeField(
        null=True, blank=True, editable=False,
        help_text="Personal fields were erased; syncs must never write them back",
    )
    accepted_sms_marketing = models.BooleanField(null=True, blank=True)
    accepted_email_marketing = models.BooleanField(null=True, blank=True)

    class Meta(PmsRecord.Meta):
        ordering = ["last_name", "first_name", "id"]
        indexes = [
            models.Index(fields=["organization", "last_name", "first_name"], name="patient_org_name"),
            models.Index(fields=["organization", "email_normalized"], name="patient_org_email"),
            models.Index(fields=["organization", "mobile_e164"], name="patient_org_mobile"),
            # btree_gin lets the phone array index lead with the organization too.
            GinIndex(fields=["organization", "phones_e164"], name="patient_org_phones_gin"),
        ]

    def __str__(self) -> str:
        return self.full_name or f"Patient {self.external_id}"

    @property
    def full_name(self) -> str:
        return " ".join(p for p in (self.first_name, self.last_name) if p)


class AppointmentQuerySet(TenantQuerySet):
    def current(self) -> AppointmentQuerySet:
        """Archived and deleted appointments are excluded from every figure."""
        return self.filter(archived_at__isnull=True, deleted_at__isnull=True)

    def with_outcome(self, *, now=None, late_cancellation_hours: int = 24) -> AppointmentQuerySet:  # noqa: ANN001
        from patients.outcomes import outcome_expression

        return self.annotate(
            outcome=outcome_expression(now=now, late_cancellation_hours=late_cancellation_hours)
        )


class Appointment(PmsRecord):
    patient = models.ForeignKey(
        Patient,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="appointments",
        db_index=False,
    )
    practitioner = models.ForeignKey(
        Practitioner,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        db_index=False,
    )
    appointment_type = models.ForeignKey(
        AppointmentType,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        db_index=False,
    )
    location = models.ForeignKey(
        "clinics.Location",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        db_index=False,
    )
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    cancelled_at = models.DateTimeField(null=True, blank=True)
    cancellation_reason_code = models.PositiveSmallIntegerField(null=True, blank=True)
    cancellation_reason = models.CharField(max_length=100, blank=True)
    cancellation_note = models.TextField(blank=True)
    did_not_arrive = models.BooleanField(default=False)
    patient_arrived = models.BooleanField(default=False)

    objects = AppointmentQuerySet.as_manager()

    class Meta(PmsRecord.Meta):
        ordering = ["-starts_at"]
        constraints = [
            *PmsRecord.Meta.constraints,
            models.CheckConstraint(
                condition=Q(ends_at__gte=F("starts_at")), name="appointment_ends_after_start"
            ),
        ]
        indexes = [
            models.Index(fields=["organization", "patient", "starts_at"], name="appt_org_patient_start"),
            models.Index(fields=["organization", "starts_at"], name="appt_org_start"),
            models.Index(fields=["organization", "practitioner", "starts_at"], name="appt_org_pract_start"),
            models.Index(fields=["organization", "location", "starts_at"], name="appt_org_loc_start"),
            models.Index(fields=["organization", "pms_updated_at"], name="appt_org_updated"),
            # Appointments whose patient had not been synced yet, found when it arrives.
            models.Index(
                F("organization"), KT("pms_refs__patient"), condition=Q(patient__isnull=True),
                name="appt_org_unlinked_patient",
            ),
        ]

    def __str__(self) -> str:
        return f"Appointment {self.external_id} at {self.starts_at:%Y-%m-%d %H:%M}"

    def outcome_at(self, *, now=None, late_cancellation_hours: int = 24) -> str:  # noqa: ANN001
        from patients.outcomes import appointment_outcome

        return appointment_outcome(self, now=now, late_cancellation_hours=late_cancellation_hours)


class InvoiceStatus(models.TextChoices):
    OPEN = "open", "Open"
    PAID = "paid", "Paid"
    CLOSED = "closed", "Closed"
    OPEN_CREDIT = "open_credit", "Open credit"
    UNKNOWN = "unknown", "Unknown"


class Invoice(PmsRecord):
    patient = models.ForeignKey(
        Patient,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="invoices",
        db_index=False,
    )
    appointment = models.ForeignKey(
        Appointment,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="invoices",
        db_index=False,
    )
    practitioner = models.ForeignKey(
        Practitioner,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        db_index=False,
    )
    location = models.ForeignKey(
        "clinics.Location",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        db_index=False,
    )
    number = models.CharField(max_length=50, blank=True)
    issue_date = models.DateField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=InvoiceStatus.choices, default=InvoiceStatus.OPEN)
    status_code = models.CharField(max_length=16, blank=True, help_text="The PMS's own status value")
    total_amount = models.DecimalField(max_digits=12, decimal_places=2, default=0)
    tax_amount = models.DecimalField(max_digits=12, decimal_places=2, default=0)
    net_amount = models.DecimalField(max_digits=12, decimal_places=2, default=0)
    discounted_amount = models.DecimalField(max_digits=12, decimal_places=2, default=0)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta(PmsRecord.Meta):
        ordering = ["-issue_date", "-id"]
        indexes = [
            models.Index(fields=["organization", "patient", "issue_date"], name="invoice_org_patient_date"),
            models.Index(fields=["organization", "issue_date"], name="invoice_org_date"),
            models.Index(fields=["organization", "appointment"], name="invoice_org_appointment"),
            models.Index(
                F("organization"), KT("pms_refs__patient"), condition=Q(patient__isnull=True),
                name="invoice_org_unlinked_patient",
            ),
            models.Index(
                F("organization"), KT("pms_refs__appointment"), condition=Q(appointment__isnull=True),
                name="invoice_org_unlinked_appt",
            ),
        ]

    def __str__(self) -> str:
        return f"Invoice {self.number or self.external_id}"
