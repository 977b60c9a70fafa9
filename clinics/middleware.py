"""The tenant scope of admin pages.

Operators (superusers) work across organizations: their admin requests run in the explicit
cross-tenant scope. A clinic staff member with one organization sees only that one. A member
of several works in one at a time (a transaction sees one tenant): the one chosen in the
organization filter, remembered in the session for the pages that have no filter (a patient's
page, a form). Anyone else gets no tenant at all, and so no tenant rows.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.urls import reverse

from clinics.rls import cross_tenant_scope, tenant_scope
from clinics.selectors import user_membership_list

# Where an admin page names the organization: the changelists' filter, the worklist's choice.
CHOICE_PARAMETERS = ("organization__id__exact", "organization")
SESSION_KEY = "admin_organization"


class AdminTenantScopeMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.prefix = reverse("admin:index")

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        if not request.path.startswith(self.prefix) or user is None or not user.is_authenticated:
            return self.get_response(request)
        if user.is_superuser:
            with cross_tenant_scope("operators in the admin"):
                return self.get_response(request)
        org_ids = [membership.organization_id for membership in user_membership_list(user)]
        request.admin_organization_ids = tuple(org_ids)  # the ORM filter (routiq.admin_tools)
        active = org_ids[0] if len(org_ids) == 1 else self._chosen(request, org_ids)
        if active is None:
            return self.get_response(request)
        with tenant_scope(active):
            return self.get_response(request)

    @staticmethod
    def _chosen(request: HttpRequest, org_ids: list[str]) -> str | None:
        for name in CHOICE_PARAMETERS:
            wanted = request.GET.get(name)
            if wanted in org_ids:
                request.session[SESSION_KEY] = wanted
                return wanted
        remembered = request.session.get(SESSION_KEY)
        return remembered if remembered in org_ids else None
