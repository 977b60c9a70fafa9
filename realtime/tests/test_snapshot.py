"""The snapshot a process shares between clients connecting together, and only while nothing
was published."""

import json

import pytest

from realtime import snapshot
from realtime.events import EventType, publish
from realtime.snapshot import snapshot_build

pytestmark = pytest.mark.django_db


def test_clients_connecting_together_share_one_snapshot_until_an_event_is_published(world, monkeypatch):
    builds = []
    real = snapshot.sync_status
    monkeypatch.setattr(snapshot, "sync_status", lambda org: builds.append(org.pk) or real(org))
    first = snapshot_build(world.org_a.pk)
    again = snapshot_build(world.org_a.pk)
    other = snapshot_build(world.org_b.pk)  # each organization its own
    publish(world.org_a, EventType.SYNC_PROGRESS, {"n": 1})
    after_event = snapshot_build(world.org_a.pk)
    assert again == first and first[0] == 0
    assert json.loads(other[1])["organization_id"] == world.org_b.pk
    assert after_event[0] == 1 and json.loads(after_event[1])["seq"] == 1
    assert builds == [world.org_a.pk, world.org_b.pk, world.org_a.pk]


def test_a_shared_snapshot_is_built_again_after_a_moment(world, monkeypatch):
    builds = []
    real = snapshot.sync_status
    monkeypatch.setattr(snapshot, "sync_status", lambda org: builds.append(org.pk) or real(org))
    clock = [1000.0]
    monkeypatch.setattr(snapshot, "time", type("Clock", (), {"monotonic": staticmethod(lambda: clock[0])}))
    snapshot_build(world.org_a.pk)
    clock[0] += snapshot.SNAPSHOT_REUSE_SECONDS - 0.1
    snapshot_build(world.org_a.pk)
    clock[0] += 0.2
    snapshot_build(world.org_a.pk)
    assert builds == [world.org_a.pk, world.org_a.pk]
