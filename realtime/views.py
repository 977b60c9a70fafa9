"""The live dashboard page for logged-in staff (the Django session).

The page is a shell: its numbers arrive over the metrics WebSocket (`realtime.consumers`, which
authenticates the same session) and its worklist from the re-engagement API (session
authentication too). Who may open it is who may open the stream: a member of the organization,
or a superuser; anyone else gets the same 404 as for an organization that does not exist.
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from clinics.models import ORG_ID_RE, Membership, Organization
from clinics.rls import tenant_scope
from clinics.selectors import user_membership_list

LOGIN_URL = "admin:login"


def _organizations_of(user) -> list[Organization]:
    if user.is_superuser:
        return list(Organization.objects.order_by("name"))
    return [membership.organization for membership in user_membership_list(user)]


@login_required(login_url=LOGIN_URL)
def live_index(request: HttpRequest) -> HttpResponse:
    organizations = _organizations_of(request.user)
    if len(organizations) == 1:
        return redirect("live-dashboard", org_id=organizations[0].pk)
    return render(request, "realtime/live_index.html", {"organizations": organizations})


def _organization_for(user, org_id: str) -> Organization:
    organization = Organization.objects.filter(pk=org_id).first() if ORG_ID_RE.fullmatch(org_id) else None
    if organization is None:
        raise Http404("No such organization.")
    if not user.is_superuser:
        with tenant_scope(organization):
            if not Membership.objects.for_org(organization).filter(user=user).exists():
                raise Http404("No such organization.")
    return organization


@login_required(login_url=LOGIN_URL)
def live_dashboard(request: HttpRequest, org_id: str) -> HttpResponse:
    organization = _organization_for(request.user, org_id)
    return render(
        request,
        "realtime/live.html",
        {
            "organization": organization,
            "socket_path": f"/ws/clinics/{organization.pk}/metrics",
            "worklist_url": f"/api/v1/reengagement/{organization.pk}/prioritized?limit=10",
        },
    )
