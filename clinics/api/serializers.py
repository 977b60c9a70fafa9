from __future__ import annotations

from rest_framework import serializers

from clinics.models import Organization, PmsConnection


class PmsConnectionPublicSerializer(serializers.ModelSerializer):
    """A connection as any member may see it: never the credentials, nor a hint of them."""

    class Meta:
        model = PmsConnection
        fields = ["kind", "status", "status_detail", "base_url", "last_successful_sync_at", "created_at"]
        read_only_fields = fields


class OrganizationDetailSerializer(serializers.ModelSerializer):
    organization_id = serializers.CharField(source="pk")
    your_role = serializers.SerializerMethodField()
    connections = serializers.SerializerMethodField()
    retention_settings = serializers.SerializerMethodField()

    class Meta:
        model = Organization
        fields = [
            "organization_id",
            "name",
            "time_zone",
            "currency",
            "country",
            "your_role",
            "connections",
            "retention_settings",
            "created_at",
        ]

    def get_your_role(self, organization: Organization) -> str:
        return self.context["role"]

    def get_connections(self, organization: Organization) -> list[dict]:  # type: ignore[type-arg]
        connections = PmsConnection.objects.for_org(organization).order_by("kind")
        return PmsConnectionPublicSerializer(connections, many=True).data

    def get_retention_settings(self, organization: Organization) -> dict:  # type: ignore[type-arg]
        return organization.retention.to_json()


class MembershipBriefSerializer(serializers.Serializer):
    organization_id = serializers.CharField()
    organization_name = serializers.CharField()
    role = serializers.CharField()


class MeSerializer(serializers.Serializer):
    user_id = serializers.CharField()
    authenticated_by = serializers.ChoiceField(choices=["token", "api_key", "session"])
    active_organization_id = serializers.CharField(allow_null=True)
    active_role = serializers.CharField(allow_null=True)
    memberships = MembershipBriefSerializer(many=True)
    token_expires_at = serializers.DateTimeField(allow_null=True)
