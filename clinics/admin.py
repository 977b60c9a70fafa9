from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.http import HttpRequest

from clinics import services
from clinics.audit import audit_record
from clinics.auth.api_keys import api_key_create, api_key_revoke
from clinics.models import ApiKey, AuditEvent, Location, Membership, Organization, PmsConnection
from routiq.admin_tools import CappedCountPaginator, PmsCopyAdmin, TenantAdminMixin


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    list_display = ("name", "id", "time_zone", "currency", "country", "created_at")
    search_fields = ("name", "id")
    list_filter = ("country", "currency")
    readonly_fields = ("created_at", "updated_at")

    def get_queryset(self, request: HttpRequest) -> Any:
        # Organizations have no row-level security (they are the tenants): clinic staff see
        # their own here, operators all of them.
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        return queryset.filter(pk__in=getattr(request, "admin_organization_ids", ()))

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        # The id is the Clerk organization id: fixed once created.
        return (*self.readonly_fields, "id") if obj else self.readonly_fields


@admin.register(Location)
class LocationAdmin(PmsCopyAdmin):
    list_display = ("name", "organization", "city", "time_zone", "pms", "external_id", "archived_at")
    search_fields = ("name", "city", "external_id")
    list_select_related = ("organization",)


@admin.register(Membership)
class MembershipAdmin(TenantAdminMixin, admin.ModelAdmin):
    list_display = ("user", "organization", "role", "created_at")
    list_filter = ("organization", "role")
    search_fields = ("user__username", "user__email", "organization__name")
    list_select_related = ("user", "organization")
    autocomplete_fields = ("user",)


class PmsConnectionForm(forms.ModelForm):
    """The API key can be written, never read back: the field always renders empty."""

    api_key = forms.CharField(
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Write-only. Leave blank to keep the stored key.",
    )

    base_url = forms.URLField(
        required=False,
        assume_scheme="https",
        help_text="Override for sandboxes and simulators; blank uses the PMS default",
    )

    sync_interval_minutes = forms.IntegerField(
        required=False,
        min_value=0,
        max_value=7 * 24 * 60,
        initial=60,
        help_text="Minutes between scheduled syncs; 0 syncs only when asked. Blank keeps the current value.",
    )

    class Meta:
        model = PmsConnection
        fields = (
            "organization", "kind", "base_url", "sync_interval_minutes", "rate_limit_per_minute", "status",
            "status_detail",
        )

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if self.instance.pk is None and not data.get("api_key"):
            raise ValidationError({"api_key": "An API key is required for a new connection."})
        return data


@admin.register(PmsConnection)
class PmsConnectionAdmin(TenantAdminMixin, admin.ModelAdmin):
    form = PmsConnectionForm
    list_display = (
        "organization",
        "kind",
        "status",
        "credentials_hint",
        "base_url",
        "last_successful_sync_at",
    )
    list_filter = ("organization", "kind", "status")
    search_fields = ("organization__name", "organization__id")
    list_select_related = ("organization",)
    readonly_fields = (
        "credentials_hint",
        "last_successful_sync_at",
        "created_at",
        "updated_at",
    )

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        return (*self.readonly_fields, "organization", "kind") if obj else self.readonly_fields

    def save_model(self, request: HttpRequest, obj: PmsConnection, form: Any, change: bool) -> None:  # noqa: FBT001 - Django's signature
        # Through the service, so the admin cannot store an unencrypted or malformed key.
        try:
            saved = services.pms_connection_set(
                obj.organization,
                kind=obj.kind,
                api_key=form.cleaned_data.get("api_key") or None,
                base_url=obj.base_url,
                sync_interval_minutes=form.cleaned_data.get("sync_interval_minutes"),
                rate_limit_per_minute=form.cleaned_data.get("rate_limit_per_minute") or 0,
            )
        except ValidationError as exc:
            raise ValidationError(exc.messages) from None
        if obj.status != saved.status or obj.status_detail != saved.status_detail:
            saved.status, saved.status_detail = obj.status, obj.status_detail
            saved.save(update_fields=["status", "status_detail", "updated_at"])
        obj.pk = saved.pk
        audit_record(
            saved.organization_id,
            actor=request,
            action="pms_connection.update" if change else "pms_connection.create",
            object_type="pms_connection",
            object_id=saved.pk,
            details={"kind": saved.kind, "key_changed": bool(form.cleaned_data.get("api_key"))},
        )


@admin.register(AuditEvent)
class AuditEventAdmin(TenantAdminMixin, admin.ModelAdmin):
    list_display = (
        "occurred_at",
        "organization",
        "actor_label",
        "action",
        "object_type",
        "object_id",
        "request_id",
    )
    list_filter = ("organization", "action")
    search_fields = ("actor_label", "action", "=object_id", "=request_id")
    list_select_related = ("organization",)
    paginator = CappedCountPaginator
    show_full_result_count = False

    # The log is evidence: nobody edits or deletes it by hand (retention purges it).
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(ApiKey)
class ApiKeyAdmin(TenantAdminMixin, admin.ModelAdmin):
    list_display = ("name", "organization", "prefix", "role", "created_at", "last_used_at", "revoked_at")
    list_filter = ("organization", "role")
    search_fields = ("name", "=prefix")
    list_select_related = ("organization",)
    readonly_fields = ("prefix", "created_by", "created_at", "last_used_at", "revoked_at")
    fields = ("organization", "name", "role", *readonly_fields)
    actions = ["revoke"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        return (*self.readonly_fields, "organization") if obj else self.readonly_fields

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:  # noqa: FBT001
        if change:
            obj.save(update_fields=["name", "role"])
            audit_record(
                obj.organization_id,
                actor=request,
                action="api_key.update",
                object_type="api_key",
                object_id=obj.pk,
                details={"role": obj.role},
            )
            return
        issued = api_key_create(obj.organization, name=obj.name, role=obj.role, created_by=request.user)
        obj.pk = issued.api_key.pk
        audit_record(
            obj.organization_id,
            actor=request,
            action="api_key.create",
            object_type="api_key",
            object_id=obj.pk,
            details={"role": obj.role, "prefix": issued.api_key.prefix},
        )
        # Shown once, here; only the hash is kept.
        self.message_user(request, f"API key created. Copy it now, it is not shown again: {issued.plaintext}")

    @admin.action(description="Revoke selected keys")
    def revoke(self, request: HttpRequest, queryset: Any) -> None:
        for api_key in queryset:
            api_key_revoke(api_key)
            audit_record(
                api_key.organization_id,
                actor=request,
                action="api_key.revoke",
                object_type="api_key",
                object_id=api_key.pk,
            )
        self.message_user(request, f"Revoked {queryset.count()} key(s).")
