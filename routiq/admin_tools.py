"""Admin plumbing shared by every app: cheap counts on big tables, read-only PMS copies."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.core.paginator import Paginator
from django.db import connection
from django.http import HttpRequest
from django.utils.functional import cached_property


class CappedCountPaginator(Paginator):
    """Counts at most `cap` rows, and reads the planner's estimate for an unfiltered table.

    `COUNT(*)` over a million appointments on every changelist page is the classic admin
    slowdown; nobody pages past the first few thousand rows anyway.
    """

    cap = 10_000

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        if not queryset.query.where:
            estimate = _estimated_rows(queryset.model._meta.db_table)
            if estimate > self.cap:
                return estimate
        return queryset.order_by()[: self.cap + 1].count()


def _estimated_rows(table: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass", [table])
        row = cursor.fetchone()
    return max(int(row[0]), 0) if row else 0


class OwnOrganizationFilter(admin.SimpleListFilter):
    """The organization filter, offering only the organizations the user may see (Django's
    related-field filter lists every row of the organizations table, which has no row-level
    security: every tenant's name), and only when there is a choice."""

    title = "organization"
    parameter_name = "organization__id__exact"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        from clinics.models import Organization

        organizations = Organization.objects.order_by("name", "pk")
        if not request.user.is_superuser:
            organizations = organizations.filter(pk__in=getattr(request, "admin_organization_ids", ()))
        choices = [(org.pk, org.name) for org in organizations]
        return choices if len(choices) > 1 else []

    def queryset(self, request: HttpRequest, queryset: Any) -> Any:
        # The queryset holds only the user's organizations already: a foreign id matches nothing.
        return queryset.filter(organization_id=self.value()) if self.value() else queryset


class TenantAdminMixin:
    """The organization filter in the ORM for clinic staff in the admin (row-level security,
    set by `AdminTenantScopeMiddleware`, is the second wall). Operators see every tenant."""

    def get_queryset(self, request: HttpRequest) -> Any:
        queryset = super().get_queryset(request)  # type: ignore[misc]
        if request.user.is_superuser:
            return queryset
        return queryset.filter(organization_id__in=getattr(request, "admin_organization_ids", ()))

    def get_list_filter(self, request: HttpRequest) -> Any:
        filters = super().get_list_filter(request)  # type: ignore[misc]
        return [OwnOrganizationFilter if f == "organization" else f for f in filters]


class BigTableAdmin(TenantAdminMixin, admin.ModelAdmin):
    paginator = CappedCountPaginator
    show_full_result_count = False
    list_per_page = 50


class ReadOnlyAdmin(BigTableAdmin):
    """Rows that only the product writes (PMS copies, sync runs): the admin reads them."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class PmsCopyAdmin(ReadOnlyAdmin):
    """PMS-sourced rows are a copy: the PMS is where they change, so the admin only reads."""

    list_filter: Any = ("organization",)
    readonly_fields_exclude: tuple[str, ...] = ()
