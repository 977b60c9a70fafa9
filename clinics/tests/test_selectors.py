"""Reads on tenants: the organization an API request reads, memoised per process."""

from django.db import connection
from django.test.utils import CaptureQueriesContext

from clinics import selectors
from clinics.models import Organization
from clinics.selectors import organization_for_request


def reads(org_id):
    with CaptureQueriesContext(connection) as captured:
        found = organization_for_request(org_id)
    return found, len(captured)


def test_an_organization_is_read_once_within_the_memo_time(world):
    first, queries = reads(world.org_a.pk)
    assert first.name == "Harbour Physio" and queries == 1
    again, queries = reads(world.org_a.pk)
    assert again.name == "Harbour Physio" and queries == 0
    assert reads(world.org_b.pk)[1] == 1  # each organization its own


def test_each_caller_gets_its_own_copy(world):
    mine = organization_for_request(world.org_a.pk)
    mine.name = "Changed by one request"
    assert organization_for_request(world.org_a.pk).name == "Harbour Physio"


def test_a_save_or_delete_in_this_process_is_seen_at_once(world):
    organization_for_request(world.org_a.pk)
    world.org_a.time_zone = "Australia/Perth"
    world.org_a.save()
    assert organization_for_request(world.org_a.pk).time_zone == "Australia/Perth"
    organization_for_request(world.org_b.pk)
    Organization.objects.get(pk=world.org_b.pk).delete()
    assert organization_for_request(world.org_b.pk) is None


def test_a_change_made_elsewhere_is_seen_after_the_memo_time(world, monkeypatch):
    organization_for_request(world.org_a.pk)
    # An update sends no signal, as a save in another process reaches none here.
    Organization.objects.filter(pk=world.org_a.pk).update(currency="NZD")
    assert organization_for_request(world.org_a.pk).currency == "AUD"
    monkeypatch.setattr(selectors, "ORGANIZATION_MEMO_SECONDS", 0.0)
    assert organization_for_request(world.org_a.pk).currency == "NZD"


def test_a_missing_organization_is_not_memoised(db):
    assert reads("org_NotYetMade0000000000000")[0] is None
    Organization.objects.create(pk="org_NotYetMade0000000000000", name="New", time_zone="UTC")
    found, queries = reads("org_NotYetMade0000000000000")
    assert found.name == "New" and queries == 1


def test_the_memo_is_bounded(world, monkeypatch):
    monkeypatch.setattr(selectors, "ORGANIZATION_MEMO_LIMIT", 1)
    organization_for_request(world.org_a.pk)
    organization_for_request(world.org_b.pk)  # the limit reached: what was held is dropped
    assert list(selectors._organizations) == [world.org_b.pk]
