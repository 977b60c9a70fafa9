from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from clinics.api.base import OrganizationScopedView
from clinics.api.serializers import MeSerializer, OrganizationDetailSerializer
from clinics.selectors import user_membership_list
from routiq.api import envelope
from routiq.api.schema import AUTHENTICATED_ERRORS, ORG_SCOPED_ERRORS, error_responses
from routiq.api.schema import envelope as envelope_schema


class MeView(APIView):
    @extend_schema(
        operation_id="auth_me",
        summary="Who am I",
        responses={
            200: envelope_schema("Me", "me", MeSerializer, org=False),
            **error_responses(*AUTHENTICATED_ERRORS),
        },
    )
    def get(self, request: Request) -> Response:
        principal = request.auth
        kind = getattr(principal, "kind", "session")
        if kind == "api_key":
            key = principal.api_key
            memberships = [
                {
                    "organization_id": key.organization_id,
                    "organization_name": key.organization.name,
                    "role": key.role,
                }
            ]
            user_id = f"api-key:{key.prefix}"
        else:
            rows = user_membership_list(request.user)
            memberships = [
                {
                    "organization_id": m.organization_id,
                    "organization_name": m.organization.name,
                    "role": m.role,
                }
                for m in rows
            ]
            user_id = request.user.get_username()
        expires = principal.claims.expires_at if kind == "token" and principal.claims else None
        data: dict[str, Any] = {
            "user_id": user_id,
            "authenticated_by": kind,
            "active_organization_id": getattr(principal, "org_id", None),
            "active_role": getattr(principal, "role", None),
            "memberships": memberships,
            "token_expires_at": datetime.fromtimestamp(expires, tz=UTC) if expires else None,
        }
        return envelope.ok("me", MeSerializer(data).data)


class OrganizationDetailView(OrganizationScopedView):
    @extend_schema(
        operation_id="organization_detail",
        summary="The organization, your role in it, and its PMS connections (never their secrets)",
        responses={
            200: envelope_schema("OrganizationDetail", "organization", OrganizationDetailSerializer),
            **error_responses(*ORG_SCOPED_ERRORS),
        },
    )
    def get(self, request: Request, org_id: str) -> Response:
        data = OrganizationDetailSerializer(self.organization, context={"role": self.role}).data
        return envelope.ok("organization", data, organization_id=self.organization.pk)
