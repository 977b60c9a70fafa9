"""The back-office side of the sync: the admin's "sync now" actions and run pages, and the
`manage.py sync` command (inline with its progress, and queued for the worker)."""

from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse
from django_q.models import OrmQ

from clinics.models import AuditEvent
from clinics.rls import tenant_scope
from patients.models import Patient
from sync.models import QuarantinedRecord, SyncRun

pytestmark = pytest.mark.django_db


@pytest.fixture
def superuser_client(client, world):
    user = get_user_model().objects.create_superuser("root", "root@example.com", "pw-123456789")
    client.force_login(user)
    return client


@pytest.fixture
def fast(settings):
    settings.CLINIKO_RATE_PER_MINUTE = 600_000
    settings.SYNC_WINDOW_MARGIN_SECONDS = 0
    settings.SYNC_BACKOFF_BASE = 0.001


def test_sync_now_action_queues_a_run_and_says_so(
    superuser_client, world, connection, django_capture_on_commit_callbacks
):
    url = reverse("admin:clinics_pmsconnection_changelist")
    with django_capture_on_commit_callbacks(execute=True):
        response = superuser_client.post(
            url, {"action": "sync_now", "_selected_action": [connection.pk]}, follow=True
        )
    assert response.status_code == 200
    with tenant_scope(world.org_a):
        run = SyncRun.objects.for_org(world.org_a).get()
        assert run.trigger == "admin" and run.requested_by == "root" and run.mode == "incremental"
        assert AuditEvent.objects.for_org(world.org_a).filter(action="sync.trigger").count() == 1
    assert (
        f'Queued <a href="/admin/sync/syncrun/{run.pk}/change/">sync {run.pk}</a>'
        in response.content.decode()
    )
    assert OrmQ.objects.count() == 1
    again = superuser_client.post(
        url, {"action": "full_sync_now", "_selected_action": [connection.pk]}, follow=True
    )
    assert "is already queued" in again.content.decode()


def test_run_and_quarantine_pages_show_what_happened(superuser_client, world, sim, run_sync):
    sim.store.edit("patients", sim.store.ids("patients")[0], first_name="z" * 120)
    run = run_sync()
    page = superuser_client.get(reverse("admin:sync_syncrun_change", args=[run.pk]))
    assert page.status_code == 200 and "run_finished" in page.content.decode()
    listing = superuser_client.get(reverse("admin:sync_syncrun_changelist") + "?status=completed")
    assert listing.status_code == 200 and str(run.pk) in listing.content.decode()
    with tenant_scope(world.org_a):
        quarantined = QuarantinedRecord.objects.for_org(world.org_a).get()
    detail = superuser_client.get(reverse("admin:sync_quarantinedrecord_change", args=[quarantined.pk]))
    assert detail.status_code == 200 and "longer than 100 characters" in detail.content.decode()
    assert superuser_client.get(reverse("admin:sync_synccursor_changelist")).status_code == 200
    assert superuser_client.get(reverse("admin:sync_syncrun_add")).status_code == 403


def test_a_clinic_admin_sees_only_their_runs(client, world, connection, cliniko_simulator_factory):
    from clinics.services import pms_connection_set

    other = cliniko_simulator_factory(api_key="othercommandkey01234-au1", rate_limit=0)
    with tenant_scope(world.org_b):
        connection_b = pms_connection_set(
            world.org_b, kind="cliniko", api_key=other.api_key, base_url=other.base_url
        )
        SyncRun.objects.create(
            organization=world.org_b, connection=connection_b, pms="cliniko", trigger="api"
        )
    with tenant_scope(world.org_a):
        mine = SyncRun.objects.create(
            organization=world.org_a, connection=connection, pms="cliniko", trigger="api"
        )
    world.admin_a.is_staff = True
    world.admin_a.save()
    user_model = get_user_model()
    from django.contrib.auth.models import Permission

    world.admin_a.user_permissions.add(Permission.objects.get(codename="view_syncrun"))
    world.admin_a = user_model.objects.get(pk=world.admin_a.pk)
    client.force_login(world.admin_a)
    listing = client.get(reverse("admin:sync_syncrun_changelist"))
    assert listing.status_code == 200
    assert list(listing.context["cl"].queryset.values_list("pk", flat=True)) == [mine.pk]


def test_sync_command_inline_imports_and_reports(world, sim, connection, fast):
    out = StringIO()
    call_command("sync", world.org_a.pk, "--inline", stdout=out)
    text = out.getvalue()
    assert "completed" in text and "patient" in text and "created 60" in text
    with tenant_scope(world.org_a):
        assert Patient.objects.for_org(world.org_a).count() == 60
        run = SyncRun.objects.for_org(world.org_a).get()
    assert run.trigger == "command" and run.mode == "full" or run.mode == "incremental"


def test_sync_command_queues_for_the_worker_and_refuses_bad_input(
    world, connection, django_capture_on_commit_callbacks
):
    out = StringIO()
    with django_capture_on_commit_callbacks(execute=True):
        call_command("sync", world.org_a.pk, "--full", "--no-wait", stdout=out)
    assert "Queued sync" in out.getvalue() and OrmQ.objects.count() == 1
    with pytest.raises(CommandError, match="no organization"):
        call_command("sync", "org_doesnotexist00000")
    with pytest.raises(CommandError, match="needs --full and --inline"):
        call_command("sync", world.org_a.pk, "--allow-mass-delete")
    with pytest.raises(CommandError, match="unknown resources"):
        call_command("sync", world.org_a.pk, "--inline", "--resources", "patient,widgets")
    with pytest.raises(CommandError, match="no such PMS connection"):
        call_command("sync", world.org_b.pk, "--no-wait")


def test_sync_command_fails_loudly_when_the_pms_refuses(world, sim, connection, fast):
    sim._users.clear()
    with pytest.raises(CommandError, match="PMS_AUTH_FAILED"):
        call_command("sync", world.org_a.pk, "--inline", stdout=StringIO())
