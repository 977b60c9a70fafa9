from __future__ import annotations

from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import GinIndex, OpClass
from django.db import models
from django.db.models import F, Q
from django.db.models.fields.json import KT
from django.db.models.functions import Upper

from clinics.tenancy import PmsRecord, TenantModel, TenantQuerySet


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
            # Search is "contains, ignoring case" (UPPER(col) LIKE UPPER('%text%')): trigrams
            # answer it from the index instead of reading every patient of the organization.
            *(
                GinIndex(OpClass(Upper(name), name="gin_trgm_ops"), name=f"patient_{short}_trgm")
                for name, short in (
                    ("first_name", "first"),
                    ("last_name", "last"),
                    ("preferred_first_name", "preferred"),
                )
            ),
            GinIndex(OpClass("email_normalized", name="gin_trgm_ops"), name="patient_email_trgm"),
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
            # The dashboard's activity feed: the newest bookings, cancellations and DNAs, top-N.
            models.Index(fields=["organization", "pms_created_at", "id"], name="appt_org_created"),
            models.Index(
                fields=["organization", "cancelled_at", "id"],
                condition=Q(cancelled_at__isnull=False),
                name="appt_org_cancelled",
            ),
            models.Index(
                fields=["organization", "starts_at", "id"],
                condition=Q(did_not_arrive=True, cancelled_at__isnull=True),
                name="appt_org_dna",
            ),
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


class LifecycleStage(models.TextChoices):
    ACTIVE = "active", "Active"
    DUE = "due", "Due"
    LAPSING = "lapsing", "Lapsing"
    LAPSED = "lapsed", "Lapsed"
    DORMANT = "dormant", "Dormant"
    NEVER_CONVERTED = "never_converted", "Never converted"


class EngagementLevel(models.TextChoices):
    HIGHLY_ENGAGED = "highly_engaged", "Highly engaged"
    MODERATELY_ENGAGED = "moderately_engaged", "Moderately engaged"
    LOW_ENGAGEMENT = "low_engagement", "Low engagement"
    DISENGAGED = "disengaged", "Disengaged"


class ChurnRisk(models.TextChoices):
    CRITICAL = "critical", "Critical"
    HIGH = "high", "High"
    MEDIUM = "medium", "Medium"
    LOW = "low", "Low"


class PatientProfile(TenantModel):
    """What a clinic needs to know about one patient to decide whether to contact them,
    materialised from appointments and invoices by `patients.profiles` (set-based SQL).

    Everything that drifts with the calendar (stage, risk, 90-day counts) is computed for the
    moment in `generated_at` and stays right until `valid_until`, the next instant at which any
    of it would change (a booking passing, a threshold crossed, a visit leaving the 90-day
    window); readers refresh expired rows first (`profiles_refresh_expired`). Days since and
    until are computed when read. Conversation and outreach fields live in their own tables.
    """

    patient = models.OneToOneField(Patient, on_delete=models.CASCADE, related_name="profile")
    generated_at = models.DateTimeField()
    valid_until = models.DateTimeField(null=True, blank=True)
    # Visits (current appointments, excluded appointment types left out).
    total_appointments = models.PositiveIntegerField(default=0)
    attended_count = models.PositiveIntegerField(default=0)
    dna_count = models.PositiveIntegerField(default=0)
    cancelled_count = models.PositiveIntegerField(default=0)
    late_cancelled_count = models.PositiveIntegerField(default=0)
    rescheduled_count = models.PositiveIntegerField(default=0)
    upcoming_count = models.PositiveIntegerField(default=0)
    recent_count = models.PositiveIntegerField(default=0, help_text="Visits attended or missed, last 90 days")
    attended_90d = models.PositiveIntegerField(default=0)
    dna_90d = models.PositiveIntegerField(default=0)
    cancelled_90d = models.PositiveIntegerField(default=0)
    late_cancelled_90d = models.PositiveIntegerField(default=0)
    rescheduled_90d = models.PositiveIntegerField(default=0)
    first_appointment_at = models.DateTimeField(null=True, blank=True)
    first_attended_at = models.DateTimeField(null=True, blank=True)
    last_attended_at = models.DateTimeField(null=True, blank=True)
    last_appointment_at = models.DateTimeField(null=True, blank=True, help_text="Last visit, kept or missed")
    last_appointment_outcome = models.CharField(max_length=16, blank=True)
    last_appointment_type = models.CharField(max_length=200, blank=True)
    next_appointment_at = models.DateTimeField(null=True, blank=True)
    next_appointment_type = models.CharField(max_length=200, blank=True)
    next_practitioner = models.CharField(max_length=200, blank=True)
    primary_appointment_type = models.CharField(max_length=200, blank=True)
    primary_practitioner = models.ForeignKey(
        Practitioner, on_delete=models.SET_NULL, null=True, blank=True, related_name="+", db_index=False
    )
    primary_location = models.ForeignKey(
        "clinics.Location", on_delete=models.SET_NULL, null=True, blank=True, related_name="+", db_index=False
    )
    # Rhythm.
    expected_interval_days = models.FloatField()
    interval_source = models.CharField(max_length=16, help_text="patient, organization or default")
    last_gap_days = models.FloatField(null=True, blank=True)
    gap_ratio = models.FloatField(null=True, blank=True)
    # Judgement, as of generated_at.
    lifecycle_stage = models.CharField(max_length=16, choices=LifecycleStage.choices)
    engagement_level = models.CharField(max_length=20, choices=EngagementLevel.choices)
    churn_risk_score = models.PositiveSmallIntegerField()
    churn_risk = models.CharField(max_length=10, choices=ChurnRisk.choices)
    risk_reasons = models.JSONField(default=list, blank=True)
    action_priority = models.PositiveSmallIntegerField()
    recommended_action = models.CharField(max_length=32)
    contact_success_prediction = models.CharField(max_length=10)
    # Value, in the organization's currency.
    realised_value = models.DecimalField(max_digits=14, decimal_places=2, default=0)
    value_source = models.CharField(max_length=16, help_text="invoices, prices or none")
    predicted_value = models.DecimalField(max_digits=14, decimal_places=2, default=0)
    estimated_lifetime_value = models.DecimalField(max_digits=14, decimal_places=2, default=0)
    value_at_risk = models.DecimalField(max_digits=14, decimal_places=2, default=0)

    class Meta:
        indexes = [
            models.Index(fields=["organization", "valid_until"], name="profile_org_valid_until"),
            # The list orderings in full (patients.selectors.PROFILE_ORDERINGS), so a page is
            # an index range read however deep, and no sort of the ties is needed.
            models.Index(
                fields=["organization", "action_priority", "-value_at_risk", "patient"],
                name="profile_org_priority_page",
            ),
            models.Index(
                fields=["organization", "-churn_risk_score", "-value_at_risk", "patient"],
                name="profile_org_risk_page",
            ),
            models.Index(
                fields=["organization", "-estimated_lifetime_value", "patient"], name="profile_org_value_page"
            ),
            models.Index(fields=["organization", "lifecycle_stage"], name="profile_org_stage"),
        ]
        db_table = "patient_conversation_profile"

    def __str__(self) -> str:
        return f"Profile of patient {self.patient_id}"


class ProfileBaseline(TenantModel):
    """Organization-wide figures a patient's profile falls back on (refreshed with every full
    profile refresh): the median gap between visits, the average value of a visit."""

    median_interval_days = models.FloatField(null=True, blank=True)
    interval_gaps = models.PositiveIntegerField(default=0, help_text="Gaps the median was taken over")
    average_visit_value = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    generated_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["organization"], name="profilebaseline_one_per_org")]

    def __str__(self) -> str:
        return f"Profile baseline of {self.organization_id}"
