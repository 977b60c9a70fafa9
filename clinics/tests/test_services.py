import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command

from clinics import selectors, services
from clinics.crypto import CredentialsUnreadable, decrypt_credentials
from clinics.models import ConnectionStatus, Organization, PmsConnection

NEW_ORG = "org_3aBcDeFgHiJkLmNoPqRsTuVwXy"


def test_organization_create_validates_and_saves(db):
    org = services.organization_create(
        org_id=NEW_ORG, name=" Coast Podiatry ", time_zone="Australia/Perth", currency="aud"
    )
    org.refresh_from_db()
    assert (org.name, org.time_zone, org.currency) == ("Coast Podiatry", "Australia/Perth", "AUD")
    assert org.retention.lapse_hard_days == 180


def test_organization_create_refuses_a_duplicate_id(world):
    with pytest.raises(ValidationError):
        services.organization_create(org_id=world.org_a.pk, name="Again")
    assert Organization.objects.get(pk=world.org_a.pk).name == "Harbour Physio"


def test_organization_update_retention_rejects_unknown_and_inconsistent(world):
    with pytest.raises(ValidationError):
        services.organization_update_retention(world.org_a, changes={"nope": 1})
    with pytest.raises(ValidationError):
        services.organization_update_retention(world.org_a, changes={"lapse_soft_days": 500})
    services.organization_update_retention(world.org_a, changes={"lapse_soft_days": 45})
    world.org_a.refresh_from_db()
    assert world.org_a.retention.lapse_soft_days == 45


def test_pms_connection_stores_the_key_encrypted(world):
    connection = services.pms_connection_set(world.org_a, kind="cliniko", api_key="MS0xLWFiY2RlZmdo-au2")
    raw = bytes(PmsConnection.objects.get(pk=connection.pk).credentials_ciphertext)
    assert b"MS0xLWFiY2RlZmdo" not in raw
    assert selectors.pms_connection_credentials(connection) == {"api_key": "MS0xLWFiY2RlZmdo-au2"}
    assert connection.credentials_hint == "shard au2"


def test_pms_connection_update_keeps_key_when_not_given(world):
    services.pms_connection_set(world.org_a, kind="cliniko", api_key="MS0xLWFiY2RlZmdo")
    connection = services.pms_connection_set(world.org_a, kind="cliniko", base_url="http://127.0.0.1:8765")
    assert connection.base_url == "http://127.0.0.1:8765"
    assert selectors.pms_connection_credentials(connection)["api_key"] == "MS0xLWFiY2RlZmdo"
    assert connection.credentials_hint == "shard au1"
    assert PmsConnection.objects.for_org(world.org_a).count() == 1


def test_cliniko_shards_follow_clinikos_own_pattern():
    assert services.cliniko_shard("MS0xLWFiY2RlZmdo-AU2") == "au2"
    assert services.cliniko_shard("MS0xLWFiY2RlZmdo-us1") == "us1"  # not in any list, still a shard
    assert services.cliniko_shard("MS0xLWFiY2RlZmdo") == "au1"
    with pytest.raises(ValidationError) as caught:
        services.cliniko_shard("MS0xLWFiY2RlZmdo-secrettail")
    assert "secrettail" not in str(caught.value)


@pytest.mark.parametrize("key", ["short", "has space in key", "MS0xLWFiY2RlZmdo-zz999", "MS0xLWFiY2RlZmdo-a_1x"])
def test_pms_connection_rejects_malformed_keys(world, key):
    with pytest.raises(ValidationError):
        services.pms_connection_set(world.org_a, kind="cliniko", api_key=key)
    assert not PmsConnection.objects.for_org(world.org_a).exists()


def test_new_connection_needs_a_key(world):
    with pytest.raises(ValidationError):
        services.pms_connection_set(world.org_a, kind="nookal")


def test_credentials_unreadable_after_key_loss(world, settings):
    from cryptography.fernet import Fernet

    connection = services.pms_connection_set(world.org_a, kind="nookal", api_key="nookal-key-123456")
    settings.ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(CredentialsUnreadable):
        decrypt_credentials(connection.credentials_ciphertext)


def test_key_rotation_keeps_old_ciphertext_readable(world, settings):
    from cryptography.fernet import Fernet

    connection = services.pms_connection_set(world.org_a, kind="nookal", api_key="nookal-key-123456")
    settings.ENCRYPTION_KEYS = [Fernet.generate_key().decode(), *settings.ENCRYPTION_KEYS]
    assert decrypt_credentials(connection.credentials_ciphertext) == {"api_key": "nookal-key-123456"}


def test_org_create_and_pms_connect_commands(db, capsys):
    call_command("org_create", NEW_ORG, "--name", "Coast Podiatry", "--time-zone", "Australia/Brisbane")
    call_command(
        "pms_connect",
        NEW_ORG,
        "cliniko",
        "--api-key",
        "MS0xLWFiY2RlZmdo-uk1",
        "--base-url",
        "http://127.0.0.1:9000",
    )
    out = capsys.readouterr().out
    assert "MS0xLWFiY2RlZmdo" not in out and "shard uk1" in out
    connection = PmsConnection.objects.get(organization_id=NEW_ORG)
    assert connection.status == ConnectionStatus.ACTIVE and connection.base_url == "http://127.0.0.1:9000"
    from clinics.models import AuditEvent

    actions = set(AuditEvent.objects.for_org(NEW_ORG).values_list("action", flat=True))
    assert actions == {"organization.create", "pms_connection.set"}


def test_commands_report_bad_input_clearly(db):
    with pytest.raises(CommandError, match="time zone"):
        call_command("org_create", NEW_ORG, "--name", "X", "--time-zone", "Nowhere/Land")
    with pytest.raises(CommandError, match="no organization"):
        call_command("pms_connect", NEW_ORG, "cliniko", "--api-key", "MS0xLWFiY2RlZmdo")
