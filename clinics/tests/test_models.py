import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from model_bakery import baker

from clinics.models import Location, Membership, Organization, PmsConnection, RetentionSettings, Role
from conftest import ORG_A_ID


def test_world_has_two_tenants_with_their_people(world):
    roles_a = dict(Membership.objects.for_org(world.org_a).values_list("user__username", "role"))
    assert roles_a == {"alice-admin": Role.ADMIN, "sam-staff": Role.STAFF}
    assert list(Membership.objects.for_org(world.org_b).values_list("user__username", flat=True)) == [
        "bob-admin"
    ]


def test_for_org_returns_only_that_tenants_rows(world):
    baker.make(Location, organization=world.org_a, pms="cliniko", external_id="1", name="A site")
    baker.make(Location, organization=world.org_b, pms="cliniko", external_id="1", name="B site")
    assert list(Location.objects.for_org(world.org_a).values_list("name", flat=True)) == ["A site"]
    assert list(Location.objects.for_org(world.org_b.pk).values_list("name", flat=True)) == ["B site"]


def test_for_org_refuses_to_run_without_an_organization():
    with pytest.raises(ValueError):
        Location.objects.for_org("")


def test_pms_external_id_unique_per_tenant(world):
    baker.make(Location, organization=world.org_a, pms="cliniko", external_id="77")
    with pytest.raises(IntegrityError), transaction.atomic():
        baker.make(Location, organization=world.org_a, pms="cliniko", external_id="77")
    # Same id in another PMS or another tenant is a different record.
    baker.make(Location, organization=world.org_a, pms="nookal", external_id="77")
    baker.make(Location, organization=world.org_b, pms="cliniko", external_id="77")
    assert Location.objects.filter(external_id="77").count() == 3


def test_one_membership_per_user_and_organization(world):
    with pytest.raises(IntegrityError), transaction.atomic():
        baker.make(Membership, organization=world.org_a, user=world.admin_a, role=Role.STAFF)


@pytest.mark.parametrize(
    "bad_id", ["org_short", "user_2xwHiNrj68eaRUlX10anlXGvzX7", "org_has space in it", ""]
)
def test_organization_id_must_look_like_a_clerk_id(db, bad_id):
    with pytest.raises(ValidationError):
        Organization(id=bad_id, name="X").full_clean()
    with pytest.raises(IntegrityError), transaction.atomic():
        Organization.objects.create(id=bad_id, name="X")


def test_organization_rejects_unknown_time_zone(db):
    with pytest.raises(ValidationError) as exc:
        Organization(id=ORG_A_ID, name="X", time_zone="Mars/Olympus").full_clean()
    assert "time_zone" in exc.value.message_dict


def test_retention_settings_default_to_the_documented_thresholds(world):
    retention = world.org_a.retention
    assert (retention.lapse_soft_days, retention.lapse_hard_days) == (60, 180)
    assert retention.default_interval_days == 21
    assert retention.late_cancellation_hours == 24


def test_retention_settings_validation():
    with pytest.raises(ValidationError):
        RetentionSettings(lapse_soft_days=200, lapse_hard_days=180).validate()
    RetentionSettings.from_json({"lapse_soft_days": 45, "unknown": 1}).validate()


def test_pms_connection_repr_never_shows_credentials(world):
    connection = PmsConnection(organization=world.org_a, kind="cliniko", credentials_ciphertext=b"secret")
    assert "secret" not in repr(connection) and "secret" not in str(connection)
