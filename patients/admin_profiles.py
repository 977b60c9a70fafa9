"""The back-office view of patient profiles: a read-only admin over the computed profiles, and
the worklist (who to contact first, and why) for clinic staff.

Profiles are computed by `patients.profiles`, never edited by hand: the admin reads them and can
only ask for a recomputation, through the same service a sync uses. Filters and the worklist
reuse the API's selector, so "practitioner" or "has a booking" mean one thing everywhere.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import F, QuerySet
from django.http import HttpRequest, HttpResponse, QueryDict
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from clinics.models import Organization
from clinics.rls import tenant_scope
from patients import selectors
from patients.models import ChurnRisk, LifecycleStage, Patient, PatientProfile, Practitioner
from patients.profiles import profiles_refresh, profiles_refresh_expired
from patients.profiles.rules import NO_ACTION_PRIORITY, PRIORITY_BY_BAND, action_sentence, reason_sentence
from routiq.admin_tools import CappedCountPaginator, ReadOnlyAdmin

ORGANIZATION_PARAM = "organization"
WORKLIST_PAGE_SIZE = 50
WORKLIST_TEMPLATE = "admin/patients/worklist.html"
_SHOWN_VALUE_CHARS = 40  # an ignored parameter is echoed back, but never a whole pasted essay


# --- whose profiles a request may read ----------------------------------------------------------
def organizations_in_view(request: HttpRequest) -> list[Organization]:
    """Every organization for operators; otherwise the user's memberships, as resolved by
    `AdminTenantScopeMiddleware` (memberships sit behind row-level security, organizations not)."""
    cached = getattr(request, "_profile_admin_organizations", None)
    if cached is None:
        organizations = Organization.objects.order_by("name", "id")
        if not request.user.is_superuser:
            organizations = organizations.filter(pk__in=getattr(request, "admin_organization_ids", ()))
        cached = list(organizations)
        request._profile_admin_organizations = cached  # the filters and the view ask several times
    return cached


def chosen_organization(request: HttpRequest) -> Organization | None:
    wanted = request.GET.get(ORGANIZATION_PARAM)
    return next((org for org in organizations_in_view(request) if org.pk == wanted), None)


def narrowed_scope(request: HttpRequest, organization: Organization | None) -> AbstractContextManager[Any]:
    """The middleware sets no tenant for a member of several organizations (a transaction sees
    one tenant), so row-level security would hide all their rows; a page about one chosen
    organization runs in its scope. Operators and one-organization members are already scoped."""
    several = len(getattr(request, "admin_organization_ids", ())) > 1
    if organization is None or request.user.is_superuser or not several:
        return nullcontext()
    return tenant_scope(organization)


def practitioner_choices(request: HttpRequest) -> list[Practitioner]:
    """The practitioners of the chosen organization, else of the user's organizations. Operators
    choose an organization first: every practitioner of every clinic is no list to pick from."""
    chosen = chosen_organization(request)
    if chosen is not None:
        org_ids = [chosen.pk]
    elif request.user.is_superuser:
        return []
    else:
        org_ids = [org.pk for org in organizations_in_view(request)]
    return list(
        Practitioner.objects.filter(organization_id__in=org_ids)
        .select_related("organization")
        .order_by("organization__name", "last_name", "first_name", "pk")
    )


def _practitioner_label(practitioner: Practitioner, *, with_organization: bool) -> str:
    label = str(practitioner) or f"Practitioner {practitioner.external_id}"
    if not practitioner.active:
        label += " (inactive)"
    return f"{label}, {practitioner.organization.name}" if with_organization else label


def ordered_reasons(reasons: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Heaviest first, as `rules.reasons_sentence` words them."""
    return sorted(reasons, key=lambda reason: -int(reason.get("points") or 0))


def _local_date(moment: datetime | None, tz: tzinfo) -> date | None:
    return moment.astimezone(tz).date() if moment else None


def days_since_visit(profile: PatientProfile, *, tz: tzinfo, now: datetime) -> int | None:
    """In the clinic's calendar, computed when read (as the API does): profiles store moments."""
    last = _local_date(profile.last_appointment_at, tz)
    return (now.astimezone(tz).date() - last).days if last else None


def _money(amount: Any, currency: str) -> str:
    return f"{currency} {amount:,.2f}"


# --- changelist filters -------------------------------------------------------------------------
class OrganizationFilter(admin.SimpleListFilter):
    """Only the user's own organizations, and only when there is a choice (the stock related
    filter would list every tenant's name)."""

    title = "organization"
    parameter_name = ORGANIZATION_PARAM

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        organizations = organizations_in_view(request)
        return [(org.pk, org.name) for org in organizations] if len(organizations) > 1 else []

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        # The queryset already holds only the user's organizations: a foreign id matches nothing.
        return queryset.filter(organization_id=self.value()) if self.value() else queryset


class PractitionerFilter(admin.SimpleListFilter):
    """Patients of one practitioner, meaning what the API's `practitioner` filter means (applied
    through the same selector, so the two cannot drift apart)."""

    title = "practitioner"
    parameter_name = "practitioner"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        practitioners = practitioner_choices(request)
        several = len({p.organization_id for p in practitioners}) > 1
        self.practitioners = {str(p.pk): p for p in practitioners}
        return [
            (key, _practitioner_label(p, with_organization=several)) for key, p in self.practitioners.items()
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() is None:
            return queryset
        practitioner = self.practitioners.get(self.value())
        if practitioner is None:  # not one of this user's practitioners (or not an id at all)
            return queryset.none()
        matching = selectors.patient_profile_list(
            practitioner.organization, filters=selectors.ProfileFilters(practitioner_id=practitioner.pk)
        )
        return queryset.filter(pk__in=matching.values("pk"))


class ActionPriorityFilter(admin.SimpleListFilter):
    """Fixed choices: the stock filter would read the distinct values of a big table."""

    title = "action priority"
    parameter_name = "action_priority"
    LABELS = {
        **{priority: f"{priority}: {band} risk" for band, priority in PRIORITY_BY_BAND.items()},
        NO_ACTION_PRIORITY: f"{NO_ACTION_PRIORITY}: nothing to do",
    }

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(str(priority), label) for priority, label in sorted(self.LABELS.items())]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() is None:
            return queryset
        if self.value() not in {str(priority) for priority in self.LABELS}:
            return queryset.none()
        return queryset.filter(action_priority=int(self.value()))


# --- the worklist's query parameters ------------------------------------------------------------
def _pick(query: QueryDict, name: str, allowed: Iterable[str], ignored: list[str]) -> str | None:
    """The parameter when it is one of `allowed`; anything else is ignored, and said so."""
    value = query.get(name)
    if not value:
        return None
    if value in set(allowed):
        return value
    shown = value if len(value) <= _SHOWN_VALUE_CHARS else value[:_SHOWN_VALUE_CHARS] + "…"
    ignored.append(f"Ignored {name} “{shown}”: not one of the choices offered.")
    return None


@dataclass(frozen=True)
class WorklistFilters:
    churn_risk: str | None = None
    lifecycle_stage: str | None = None
    practitioner_id: int | None = None

    @classmethod
    def from_query(
        cls, query: QueryDict, practitioners: list[Practitioner], ignored: list[str]
    ) -> WorklistFilters:
        practitioner = _pick(query, "practitioner", [str(p.pk) for p in practitioners], ignored)
        return cls(
            churn_risk=_pick(query, "risk", ChurnRisk.values, ignored),
            lifecycle_stage=_pick(query, "stage", LifecycleStage.values, ignored),
            practitioner_id=int(practitioner) if practitioner else None,
        )

    def for_selector(self) -> selectors.ProfileFilters:
        # Patients who already hold a booking need no call: that is what "worklist" means here.
        return selectors.ProfileFilters(
            churn_risk=self.churn_risk,
            lifecycle_stage=self.lifecycle_stage,
            practitioner_id=self.practitioner_id,
            has_upcoming=False,
        )


@dataclass(frozen=True)
class WorklistRow:
    profile: PatientProfile
    patient_url: str
    phone: str
    reasons: list[str]
    action: str
    last_visit: date | None
    days_since_last_visit: int | None


def worklist_row(profile: PatientProfile, *, tz: tzinfo, now: datetime) -> WorklistRow:
    patient = profile.patient
    return WorklistRow(
        profile=profile,
        patient_url=reverse("admin:patients_patient_change", args=[patient.pk]),
        phone=patient.mobile_e164 or next(iter(patient.phones_e164), ""),
        reasons=[reason_sentence(reason) for reason in ordered_reasons(profile.risk_reasons)],
        action=action_sentence(profile.recommended_action),
        last_visit=_local_date(profile.last_appointment_at, tz),
        days_since_last_visit=days_since_visit(profile, tz=tz, now=now),
    )


def _page_number(query: QueryDict, ignored: list[str]) -> int:
    raw = query.get("page", "1")
    if raw.isascii() and raw.isdigit() and int(raw) > 0:
        return int(raw)
    ignored.append("Ignored page: not a page number; showing the first page.")
    return 1


def worklist_context(request: HttpRequest, organization: Organization, ignored: list[str]) -> dict[str, Any]:
    """One organization's worklist page; runs inside that organization's tenant scope."""
    # As the API does before reading: a booking that has passed changes who belongs here.
    profiles_refresh_expired(organization)
    practitioners = list(Practitioner.objects.for_org(organization).order_by("last_name", "first_name", "pk"))
    filters = WorklistFilters.from_query(request.GET, practitioners, ignored)
    now = timezone.now()
    profiles = selectors.patient_profile_list(
        organization, filters=filters.for_selector(), ordering="priority", now=now
    )
    paginator = CappedCountPaginator(profiles, WORKLIST_PAGE_SIZE)
    page = paginator.get_page(_page_number(request.GET, ignored))
    tz = organization.tzinfo
    return {
        "filters": filters,
        "practitioners": [(p.pk, _practitioner_label(p, with_organization=False)) for p in practitioners],
        "page_obj": page,
        "more_than_cap": paginator.count > paginator.cap,
        "cap": paginator.cap,
        "rows": [worklist_row(profile, tz=tz, now=now) for profile in page],
    }


# --- the admin ----------------------------------------------------------------------------------
def _fieldset(title: str | None, names: str) -> tuple[str | None, dict[str, tuple[str, ...]]]:
    return (title, {"fields": tuple(names.split())})


FIELDSETS = (
    _fieldset(None, "patient_link organization generated_at valid_until"),
    _fieldset(
        "Judgement",
        "lifecycle_stage engagement_level churn_risk churn_risk_score risk_reasons_list action_priority"
        " recommended_action_text contact_success_prediction",
    ),
    _fieldset(
        "Visits",
        "total_appointments attended_count dna_count cancelled_count late_cancelled_count rescheduled_count"
        " upcoming_count recent_count",
    ),
    _fieldset("Last 90 days", "attended_90d dna_90d cancelled_90d late_cancelled_90d rescheduled_90d"),
    _fieldset(
        "Timeline",
        "first_appointment_at first_attended_at last_attended_at last_appointment_at last_appointment_outcome"
        " last_appointment_type next_appointment_at next_appointment_type next_practitioner",
    ),
    _fieldset("Usual care", "primary_appointment_type primary_practitioner primary_location"),
    _fieldset("Rhythm", "expected_interval_days interval_source last_gap_days gap_ratio"),
    _fieldset("Value", "realised_value value_source predicted_value estimated_lifetime_value value_at_risk"),
)


@admin.register(PatientProfile)
class PatientProfileAdmin(ReadOnlyAdmin):
    list_display = (
        "patient_link",
        "lifecycle_stage",
        "engagement_level",
        "risk",
        "action_priority",
        "days_since_last_visit",
        "next_visit",
        "value_at_risk_display",
        "lifetime_value",
    )
    list_display_links = ("risk",)  # the patient column links to the patient; the risk, to its reasons
    list_filter = (
        "churn_risk",
        "lifecycle_stage",
        "engagement_level",
        ActionPriorityFilter,
        PractitionerFilter,
        OrganizationFilter,
    )
    list_select_related = ("patient", "organization")
    # Shows the search box; the search itself is the patient admin's (names, email, any phone spelling).
    search_fields = ("patient__first_name", "patient__last_name", "patient__email_normalized")
    search_help_text = "Patient name, email, or phone number in any spelling."
    ordering = selectors.PROFILE_ORDERINGS["priority"]
    show_facets = admin.ShowFacets.NEVER  # facet counts are one COUNT per choice on a big table
    fieldsets = FIELDSETS
    readonly_fields = tuple(name for _, options in FIELDSETS for name in options["fields"])
    actions = ["recompute"]

    def get_urls(self) -> list[URLPattern]:
        worklist = path(
            "worklist/",
            self.admin_site.admin_view(self.worklist_view),
            name="patients_patientprofile_worklist",
        )
        return [worklist, *super().get_urls()]

    def get_list_display(self, request: HttpRequest) -> tuple[str, ...]:
        if len(organizations_in_view(request)) > 1:
            return (*self.list_display[:1], "organization_name", *self.list_display[1:])
        return self.list_display

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        if not search_term.strip():
            return queryset, False
        patient_admin = self.admin_site.get_model_admin(Patient)
        patients, _ = patient_admin.get_search_results(
            request, patient_admin.get_queryset(request), search_term
        )
        return queryset.filter(patient__in=patients.values("pk")), False

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        with narrowed_scope(request, chosen_organization(request)):
            response = super().changelist_view(request, extra_context)
            if isinstance(response, TemplateResponse):
                response.render()  # inside the scope: the rows are read while rendering
        return response

    def render_change_form(
        self, request: HttpRequest, context: dict[str, Any], *args: Any, **kwargs: Any
    ) -> Any:
        original = context.get("original")
        if original is None:
            return super().render_change_form(request, context, *args, **kwargs)
        # Who this is, rather than the model's "Profile of patient 7".
        context["subtitle"] = f"{original.patient}, {original.organization.name}"
        # Moments in the clinic's own time zone: "last visit 9 am" means 9 am at the clinic.
        with timezone.override(original.organization.tzinfo):
            return super().render_change_form(request, context, *args, **kwargs).render()

    # --- columns and fields ---
    @admin.display(description="Patient", ordering="patient__last_name")
    def patient_link(self, obj: PatientProfile) -> str:
        url = reverse("admin:patients_patient_change", args=[obj.patient_id])
        return format_html('<a href="{}">{}</a>', url, obj.patient)

    @admin.display(description="Organization", ordering="organization__name")
    def organization_name(self, obj: PatientProfile) -> str:
        return obj.organization.name

    @admin.display(description="Churn risk", ordering="-churn_risk_score")
    def risk(self, obj: PatientProfile) -> str:
        return f"{obj.get_churn_risk_display()} ({obj.churn_risk_score})"

    @admin.display(
        description="Days since last visit", ordering=F("last_appointment_at").desc(nulls_last=True)
    )
    def days_since_last_visit(self, obj: PatientProfile) -> int | None:
        return days_since_visit(obj, tz=obj.organization.tzinfo, now=timezone.now())

    @admin.display(description="Next appointment", ordering="next_appointment_at")
    def next_visit(self, obj: PatientProfile) -> str:
        upcoming = obj.next_appointment_at
        if upcoming is None or upcoming <= timezone.now():  # a booking that has passed is no next visit
            return "-"
        return f"{upcoming.astimezone(obj.organization.tzinfo):%a %d %b %Y %H:%M}"

    @admin.display(description="Value at risk", ordering="-value_at_risk")
    def value_at_risk_display(self, obj: PatientProfile) -> str:
        return _money(obj.value_at_risk, obj.organization.currency)

    @admin.display(description="Lifetime value", ordering="-estimated_lifetime_value")
    def lifetime_value(self, obj: PatientProfile) -> str:
        return _money(obj.estimated_lifetime_value, obj.organization.currency)

    @admin.display(description="Risk reasons")
    def risk_reasons_list(self, obj: PatientProfile) -> str:
        reasons = ordered_reasons(obj.risk_reasons)
        if not reasons:
            return "None: nothing raises this patient's risk."
        items = format_html_join(
            "",
            "<li><code>{}</code> (+{} points): {}</li>",
            ((r.get("code", "?"), r.get("points") or 0, reason_sentence(r)) for r in reasons),
        )
        return format_html("<ul>{}</ul>", items)

    @admin.display(description="Recommended action")
    def recommended_action_text(self, obj: PatientProfile) -> str:
        return format_html(
            "{} <code>{}</code>", action_sentence(obj.recommended_action), obj.recommended_action
        )

    # --- actions ---
    @admin.action(description="Recompute selected profiles", permissions=["view"])
    def recompute(self, request: HttpRequest, queryset: QuerySet) -> None:
        recomputed = 0
        for organization in self._organizations_selected(request, queryset):
            # Read the selection in the organization's own scope (row-level security), then let
            # the service recompute it in its own.
            with tenant_scope(organization):
                patient_ids = list(
                    queryset.filter(organization_id=organization.pk).values_list("patient_id", flat=True)
                )
            recomputed += profiles_refresh(organization, patient_ids=patient_ids).patients
        self.message_user(request, f"Recomputed {recomputed} profile(s).", messages.SUCCESS)

    def _organizations_selected(self, request: HttpRequest, queryset: QuerySet) -> list[Organization]:
        if not request.user.is_superuser:
            return organizations_in_view(request)  # the queryset holds nothing of anyone else's
        org_ids = queryset.order_by().values("organization_id")
        return list(Organization.objects.filter(pk__in=org_ids).order_by("name", "id"))

    # --- the worklist ---
    def worklist_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        organizations = organizations_in_view(request)
        ignored: list[str] = []
        wanted = _pick(request.GET, ORGANIZATION_PARAM, [org.pk for org in organizations], ignored)
        organization = next((org for org in organizations if org.pk == wanted), None)
        organization = organization or (organizations[0] if organizations else None)
        context = {
            **self.admin_site.each_context(request),
            "title": "Worklist: who to contact first",
            "opts": self.model._meta,
            "organizations": organizations,
            "organization": organization,
            "risk_choices": ChurnRisk.choices,
            "stage_choices": LifecycleStage.choices,
        }
        if organization is None:  # no membership: nobody to list
            return self._worklist_response(request, context, ignored)
        # One organization at a time, in its tenant scope: row-level security sees one tenant.
        with tenant_scope(organization):
            context.update(worklist_context(request, organization, ignored))
            return self._worklist_response(request, context, ignored)

    def _worklist_response(
        self, request: HttpRequest, context: dict[str, Any], ignored: list[str]
    ) -> HttpResponse:
        for note in ignored:
            messages.warning(request, note)
        response = TemplateResponse(request, WORKLIST_TEMPLATE, context)
        return response.render()
