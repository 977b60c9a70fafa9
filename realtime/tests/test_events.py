"""The publisher and the event log: numbering, commit-only sending, concurrency, windows,
retention and row-level security."""

import asyncio
import threading
from datetime import timedelta

import pytest
from channels.layers import get_channel_layer
from django.core.management import call_command
from django.db import connection, connections, transaction
from django.utils import timezone

from clinics.rls import tenant_scope
from realtime.events import EventType, event_latest_seq, event_window, events_prune, group_name, publish
from realtime.models import Event
from routiq.db_roles import APP_ROLE


def seqs(org):
    with tenant_scope(org):
        return list(Event.objects.for_org(org).order_by("seq").values_list("seq", flat=True))


def test_each_organization_numbers_its_events_from_one(world, sent):
    assert [publish(world.org_a, EventType.SYNC_STARTED, {"n": n}) for n in range(3)] == [1, 2, 3]
    assert publish(world.org_b.pk, EventType.SYNC_STARTED, {}) == 1
    assert event_latest_seq(world.org_a) == 3 and event_latest_seq(world.org_b) == 1
    assert seqs(world.org_a) == [1, 2, 3]


def test_unknown_types_are_refused(world, sent):
    with pytest.raises(ValueError):
        publish(world.org_a, "everything_changed", {})
    assert seqs(world.org_a) == []


def test_payloads_are_stored_and_sent_as_plain_json(world, django_capture_on_commit_callbacks, sent):
    moment = timezone.now()
    with django_capture_on_commit_callbacks(execute=True):
        publish(world.org_a, EventType.SYNC_PROGRESS, {"at": moment, "run": {"id": 7}})
    ((org_id, event),) = sent
    assert org_id == world.org_a.pk
    assert event["type"] == "sync_progress" and event["seq"] == 1
    assert event["data"] == {
        "at": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "run": {"id": 7},
    }
    with tenant_scope(world.org_a):
        assert Event.objects.for_org(world.org_a).get().payload == event["data"]


@pytest.mark.django_db(transaction=True)
def test_the_copy_is_sent_only_after_commit_and_never_after_a_rollback(world, sent):
    with transaction.atomic():
        publish(world.org_a, EventType.SYNC_STARTED, {})
        assert sent == []  # not before the commit
    assert [m["seq"] for _, m in sent] == [1]

    with pytest.raises(RuntimeError), transaction.atomic():
        publish(world.org_a, EventType.SYNC_PROGRESS, {})
        raise RuntimeError("the sync page failed")
    assert len(sent) == 1 and seqs(world.org_a) == [1]

    # A savepoint rolled back inside a committed transaction takes its event (and copy) along.
    with transaction.atomic():
        publish(world.org_a, EventType.SYNC_PROGRESS, {"kept": 1})
        with pytest.raises(RuntimeError), transaction.atomic():
            publish(world.org_a, EventType.SYNC_PROGRESS, {"kept": 0})
            raise RuntimeError
        publish(world.org_a, EventType.SYNC_PROGRESS, {"kept": 2})
    assert [m["seq"] for _, m in sent] == [1, 2, 3]
    assert [m["data"] for _, m in sent][1:] == [{"kept": 1}, {"kept": 2}]
    # The rolled-back number was given back: no gap.
    assert seqs(world.org_a) == [1, 2, 3]


def _in_thread(target):
    """Run `target` in a thread with its own database connection."""
    errors = []

    def run():
        try:
            target()
        except BaseException as exc:  # reported to the test
            errors.append(exc)
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, errors


@pytest.mark.django_db(transaction=True)
def test_concurrent_publishers_get_contiguous_numbers(world, sent):
    start = threading.Barrier(3)

    def publisher(tag):
        def run():
            start.wait()
            for n in range(25):
                publish(world.org_a, EventType.SYNC_PROGRESS, {"by": tag, "n": n})

        return run

    threads = [_in_thread(publisher(tag)) for tag in ("a", "b", "c")]
    for thread, errors in threads:
        thread.join(60)
        assert not errors, errors
    assert seqs(world.org_a) == list(range(1, 76))
    # The copies carry the same numbers, each once (their send order may differ: commit order).
    assert sorted(m["seq"] for _, m in sent) == list(range(1, 76))
    # Each publisher's own events keep their order.
    with tenant_scope(world.org_a):
        for tag in "abc":
            mine = Event.objects.for_org(world.org_a).filter(payload__by=tag).order_by("seq")
            assert [e.payload["n"] for e in mine] == list(range(25))


@pytest.mark.django_db(transaction=True)
def test_a_publisher_waits_for_one_in_flight_and_takes_its_number_if_it_rolls_back(world, sent):
    took_number = threading.Event()
    release = threading.Event()

    def slow_and_failing():
        with pytest.raises(RuntimeError), transaction.atomic():
            publish(world.org_a, EventType.SYNC_STARTED, {"who": "slow"})
            took_number.set()
            release.wait(30)
            raise RuntimeError("rolled back")

    slow, slow_errors = _in_thread(slow_and_failing)
    assert took_number.wait(30)
    result = {}
    fast, fast_errors = _in_thread(
        lambda: result.update(seq=publish(world.org_a, EventType.SYNC_STARTED, {}))
    )
    fast.join(0.5)
    assert fast.is_alive(), "the second publisher did not wait for the first one's transaction"
    release.set()
    slow.join(30)
    fast.join(30)
    assert not slow_errors and not fast_errors
    assert result["seq"] == 1
    assert seqs(world.org_a) == [1]


def test_a_window_is_what_a_client_is_missing(world, sent):
    for _ in range(5):
        publish(world.org_a, EventType.SYNC_PROGRESS, {})
    now = event_window(world.org_a, since=None, limit=10)
    assert (now.since, now.events, now.latest_seq, now.snapshot_required) == (5, [], 5, False)
    window = event_window(world.org_a, since=2, limit=10)
    assert [e.seq for e in window.events] == [3, 4, 5] and not window.has_more
    first = event_window(world.org_a, since=0, limit=2)
    assert [e.seq for e in first.events] == [1, 2] and first.has_more
    assert event_window(world.org_a, since=5, limit=10).events == []
    ahead = event_window(world.org_a, since=9, limit=10)
    assert ahead.snapshot_required and ahead.events == []
    # Another organization's log is its own.
    assert event_window(world.org_b, since=0, limit=10).events == []


def test_a_client_older_than_the_log_needs_a_snapshot(world, sent, settings):
    settings.REALTIME_EVENT_KEEP_PER_ORGANIZATION = 3
    for _ in range(6):
        publish(world.org_a, EventType.SYNC_PROGRESS, {})
    assert events_prune() == 3
    assert seqs(world.org_a) == [4, 5, 6]
    assert event_window(world.org_a, since=3, limit=10).events[0].seq == 4  # still complete
    stale = event_window(world.org_a, since=2, limit=10)
    assert stale.snapshot_required and stale.events == [] and stale.latest_seq == 6


def test_pruning_keeps_the_retention_window_and_the_newest_per_organization(world, sent, settings):
    settings.REALTIME_EVENT_RETENTION_HOURS = 24
    settings.REALTIME_EVENT_KEEP_PER_ORGANIZATION = 100
    for _ in range(4):
        publish(world.org_a, EventType.SYNC_PROGRESS, {})
    publish(world.org_b, EventType.SYNC_PROGRESS, {})
    with tenant_scope(world.org_a):
        Event.objects.for_org(world.org_a).filter(seq__lte=2).update(
            created_at=timezone.now() - timedelta(hours=25)
        )
    call_command("realtime_prune", stdout=open("/dev/null", "w"))
    assert seqs(world.org_a) == [3, 4] and seqs(world.org_b) == [1]
    # Numbering goes on from the counter, not from what is left.
    assert publish(world.org_a, EventType.SYNC_PROGRESS, {}) == 5


def test_the_prune_job_is_scheduled_hourly(db):
    from django_q.models import Schedule

    schedule = Schedule.objects.get(name="realtime:events-prune")
    assert (schedule.func, schedule.schedule_type, schedule.repeats) == (
        "realtime.tasks.events_prune_task",
        Schedule.HOURLY,
        -1,
    )


@pytest.fixture
def as_app_role(app_role):
    """The application role (not owner, not superuser), as the product connects."""
    with connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL ROLE {APP_ROLE}")
    yield
    with connection.cursor() as cursor:
        cursor.execute("RESET ROLE")


def test_the_log_is_under_row_level_security(world, sent, as_app_role):
    assert publish(world.org_a, EventType.SYNC_STARTED, {}) == 1
    assert publish(world.org_b, EventType.SYNC_STARTED, {}) == 1
    with tenant_scope(world.org_a), connection.cursor() as cursor:
        # Without the ORM's organization filter, the database shows org A's rows only.
        cursor.execute(
            "SELECT organization_id FROM realtime_event UNION ALL SELECT organization_id FROM realtime_event_counter"
        )
        assert {row[0] for row in cursor.fetchall()} == {world.org_a.pk}
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM realtime_event")
        assert cursor.fetchone()[0] == 0  # no tenant, no rows


@pytest.mark.django_db(transaction=True)
def test_a_committed_event_reaches_the_organizations_group(world):
    async def scenario():
        from channels.db import database_sync_to_async

        layer = get_channel_layer()
        mine, theirs = await layer.new_channel(), await layer.new_channel()
        await layer.group_add(group_name(world.org_a.pk), mine)
        await layer.group_add(group_name(world.org_b.pk), theirs)
        await database_sync_to_async(publish)(world.org_a, EventType.SYNC_STARTED, {"run": {"id": 1}})
        message = await asyncio.wait_for(layer.receive(mine), 10)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(layer.receive(theirs), 0.5)
        await layer.group_discard(group_name(world.org_a.pk), mine)
        await layer.group_discard(group_name(world.org_b.pk), theirs)
        return message

    message = asyncio.run(scenario())
    assert message["type"] == "realtime.event"
    assert message["event"]["seq"] == 1 and message["event"]["data"] == {"run": {"id": 1}}
