import re

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from clinics import selectors, services
from clinics.models import PmsConnection

SECRET = "MS0xLWFiY2RlZmdoaWprbG1u-au3"


@pytest.fixture
def superuser_client(client, world):
    user = get_user_model().objects.create_superuser("root", "root@example.com", "pw-123456789")
    client.force_login(user)
    return client


def test_changelists_render_for_every_tenant_model(superuser_client):
    for name in ("organization", "location", "membership", "pmsconnection"):
        response = superuser_client.get(reverse(f"admin:clinics_{name}_changelist"))
        assert response.status_code == 200, name


def test_organization_changelist_searches(superuser_client, world):
    response = superuser_client.get(reverse("admin:clinics_organization_changelist"), {"q": "Bayside"})
    content = response.content.decode()
    assert "Bayside Chiro" in content and "Harbour Physio" not in content


def test_connection_form_never_shows_the_key(superuser_client, world):
    connection = services.pms_connection_set(world.org_a, kind="cliniko", api_key=SECRET)
    response = superuser_client.get(reverse("admin:clinics_pmsconnection_change", args=[connection.pk]))
    content = response.content.decode()
    assert response.status_code == 200
    assert SECRET not in content and "MS0xLWFiY2Rl" not in content
    assert "shard au3" in content


def test_admin_add_connection_encrypts_through_the_service(superuser_client, world):
    response = superuser_client.post(
        reverse("admin:clinics_pmsconnection_add"),
        {
            "organization": world.org_b.pk,
            "kind": "cliniko",
            "api_key": SECRET,
            "base_url": "",
            "status": "active",
            "status_detail": "",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    connection = PmsConnection.objects.for_org(world.org_b).get()
    assert selectors.pms_connection_credentials(connection) == {"api_key": SECRET}
    assert SECRET.encode() not in bytes(connection.credentials_ciphertext)


def test_admin_add_connection_requires_a_key(superuser_client, world):
    response = superuser_client.post(
        reverse("admin:clinics_pmsconnection_add"),
        {
            "organization": world.org_b.pk,
            "kind": "cliniko",
            "api_key": "",
            "base_url": "",
            "status": "active",
        },
    )
    assert response.status_code == 200
    assert "An API key is required" in response.content.decode()
    assert not PmsConnection.objects.for_org(world.org_b).exists()


def test_admin_change_keeps_the_key_when_left_blank(superuser_client, world):
    connection = services.pms_connection_set(world.org_a, kind="cliniko", api_key=SECRET)
    response = superuser_client.post(
        reverse("admin:clinics_pmsconnection_change", args=[connection.pk]),
        {
            "api_key": "",
            "base_url": "http://127.0.0.1:9999",
            "status": "needs_attention",
            "status_detail": "checking",
        },
    )
    assert response.status_code == 302
    connection.refresh_from_db()
    assert connection.base_url == "http://127.0.0.1:9999"
    assert connection.status == "needs_attention"
    assert selectors.pms_connection_credentials(connection) == {"api_key": SECRET}


def test_admin_connection_changes_are_audited_without_the_key(superuser_client, world):
    from clinics.models import AuditEvent

    superuser_client.post(
        reverse("admin:clinics_pmsconnection_add"),
        {"organization": world.org_b.pk, "kind": "cliniko", "api_key": SECRET, "base_url": "", "status": "active", "status_detail": ""},
    )
    event = AuditEvent.objects.for_org(world.org_b).get(action="pms_connection.create")
    assert event.actor_label == "root" and event.details["key_changed"] is True
    assert SECRET not in str(event.details)


def test_admin_creates_api_key_shown_once_and_audited(superuser_client, world):
    from clinics.models import ApiKey, AuditEvent

    response = superuser_client.post(
        reverse("admin:clinics_apikey_add"), {"organization": world.org_a.pk, "name": "warehouse", "role": "read_only"}, follow=True
    )
    content = response.content.decode()
    key = ApiKey.objects.for_org(world.org_a).get(name="warehouse")
    shown = re.search(rf"rq_{key.prefix}_([A-Za-z0-9_-]{{40,}})", content)
    assert shown, "the new key is shown once, in the confirmation message"
    secret = shown.group(1)
    assert AuditEvent.objects.for_org(world.org_a).filter(action="api_key.create", object_id=str(key.pk)).exists()
    superuser_client.post(
        reverse("admin:clinics_apikey_changelist"), {"action": "revoke", "_selected_action": [key.pk]}
    )
    key.refresh_from_db()
    assert key.revoked_at is not None
    assert AuditEvent.objects.for_org(world.org_a).filter(action="api_key.revoke").exists()
    # Later views of the key never show the secret again.
    assert secret not in superuser_client.get(reverse("admin:clinics_apikey_change", args=[key.pk])).content.decode()
