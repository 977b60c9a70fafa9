"""The one base class for organization-scoped endpoints.

It refuses to run a handler until the organization in the path is resolved and the caller
is allowed into it with a sufficient role; the handler runs in a transaction whose tenant is
set for row-level security. Views get data only through `self.organization`.
"""

from __future__ import annotations

from typing import Any, ClassVar

from django.http import HttpResponseBase
from rest_framework.request import Request
from rest_framework.views import APIView

from clinics.auth.roles import role_allows
from clinics.models import ORG_ID_RE, Membership, Organization, Role
from clinics.rls import tenant_scope, tenant_transaction
from clinics.selectors import organization_for_request
from routiq.api.errors import NotFound, OrgAccessDenied, PermissionDeniedError

READ_METHODS = {"GET", "HEAD", "OPTIONS"}
ORG_HEADER = "X-Organization-ID"


class OrganizationScopedView(APIView):
    # The least role for reads and for writes; a view may raise either.
    read_role: ClassVar[str] = Role.READ_ONLY
    write_role: ClassVar[str] = Role.ADMIN

    organization: Organization
    role: str

    def dispatch(self, request: Any, *args: Any, **kwargs: Any) -> HttpResponseBase:
        """DRF's dispatch, with the handler (only) inside a tenant transaction.

        Authentication stays outside it, so what a token teaches us about its user (the
        mirrored membership) is kept even when the request is then refused.
        """
        self.args, self.kwargs = args, kwargs
        request = self.initialize_request(request, *args, **kwargs)
        self.request = request
        self.headers = self.default_response_headers
        try:
            self.initial(request, *args, **kwargs)
            handler = getattr(self, request.method.lower(), None)
            if request.method.lower() not in self.http_method_names or handler is None:
                handler = self.http_method_not_allowed
            with tenant_transaction(self.organization.pk):
                response = handler(request, *args, **kwargs)
        except Exception as exc:  # DRF's contract: every error becomes a response
            response = self.handle_exception(exc)
        self.response = self.finalize_response(request, response, *args, **kwargs)
        return self.response

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)  # authentication, then the caller's throttles
        required = self.read_role if request.method in READ_METHODS else self.write_role
        self.organization, self.role = organization_access(request, kwargs.get("org_id", ""), required)
        # An organization's budgets are spent only by calls let into it: otherwise anyone could
        # exhaust another clinic's limits (its sync triggers above all) by being refused.
        self._check(request, [t for t in self.get_throttles() if _spends_organization_budget(t)])

    def check_throttles(self, request: Request) -> None:
        self._check(request, [t for t in self.get_throttles() if not _spends_organization_budget(t)])

    def _check(self, request: Request, throttles: list[Any]) -> None:
        waits = [throttle.wait() for throttle in throttles if not throttle.allow_request(request, self)]
        if waits:
            known = [wait for wait in waits if wait is not None]
            self.throttled(request, max(known, default=None))


def _spends_organization_budget(throttle: Any) -> bool:
    from routiq.api.throttling import OrganizationRateThrottle

    return isinstance(throttle, OrganizationRateThrottle)


def organization_access(request: Request, org_id: str, required: str) -> tuple[Organization, str]:
    if not ORG_ID_RE.fullmatch(org_id or ""):
        raise NotFound("No such organization.")
    header = request.headers.get(ORG_HEADER)
    if header is not None and header != org_id:
        raise OrgAccessDenied("X-Organization-ID does not match the organization in the path.")
    principal = request.auth
    if getattr(principal, "org_id", None) is not None and principal.org_id != org_id:
        raise OrgAccessDenied()
    organization = organization_for_request(org_id)
    if organization is None:
        # A caller whose credential names this organization learns it is not provisioned;
        # anyone else learns nothing more than "not yours".
        raise NotFound("No such organization.")
    role = _role_in(request, organization)
    if role is None:
        raise OrgAccessDenied()
    if not role_allows(role, required):
        raise PermissionDeniedError(f"This action needs the {required} role; yours is {role}.")
    request.organization_id = organization.pk  # for the error envelope
    return organization, role


def _role_in(request: Request, organization: Organization) -> str | None:
    principal = request.auth
    if principal is not None and getattr(principal, "kind", None) in {"token", "api_key"}:
        return principal.role
    user = request.user
    with tenant_scope(organization):
        membership = Membership.objects.for_org(organization).filter(user=user).first()
    if membership is not None:
        return membership.role
    return Role.ADMIN if getattr(user, "is_superuser", False) else None
