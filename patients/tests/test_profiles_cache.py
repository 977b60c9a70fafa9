"""The versioned cache of profile answers: served again until the profiles change, never stale
after a refresh, an expiry, an anonymisation, a purge or a finished sync, never across tenants."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta
from unittest import mock

import pytest
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
from django.db import connection as db
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from model_bakery import baker

from clinics.models import PmsConnection
from clinics.rls import tenant_scope
from patients import privacy
from patients.changes import RecordsChanged, records_changed_announce
from patients.models import Appointment, Patient, PatientProfile
from patients.profiles import profiles_refresh, profiles_refresh_all
from patients.profiles.cache import profiles_cache_bump, profiles_state

pytestmark = pytest.mark.django_db


def _patient(org, external_id, first_name, *, days_ago=(100, 114)):
    now = timezone.now()
    patient = baker.make(
        Patient,
        organization=org,
        pms="cliniko",
        external_id=external_id,
        first_name=first_name,
        last_name="Citizen",
        phones_e164=[],
        last_synced_at=now,
    )
    for n, days in enumerate(days_ago):
        baker.make(
            Appointment,
            organization=org,
            pms="cliniko",
            external_id=f"{external_id}-{n}",
            patient=patient,
            starts_at=now - timedelta(days=days),
            ends_at=now - timedelta(days=days) + timedelta(minutes=30),
        )
    return patient


@pytest.fixture
def clinics(world):
    jane = _patient(world.org_a, "a1", "Jane")
    _patient(world.org_a, "a2", "Omar")
    bob = _patient(world.org_b, "b1", "Bob")
    for org in (world.org_a, world.org_b):
        with tenant_scope(org):
            profiles_refresh_all(org)
    return {"jane": jane, "bob": bob}


def _get(api, token, org, rest=""):
    response = api("get", f"/api/v1/reengagement/{org.pk}/patient-profiles{rest}", token)
    assert response.status_code == 200, response.content
    return json.loads(response.content)


def _names(page):
    return sorted(row["patient_name"] for row in page["patient_profiles"])


def test_a_repeated_answer_comes_from_the_cache_until_the_version_moves(world, clinics, api, token_for):
    token = token_for(world.org_a)
    first = _get(api, token, world.org_a)
    assert _names(first) == ["Jane Citizen", "Omar Citizen"]
    with tenant_scope(world.org_a):  # a change made behind the cache's back...
        Patient.objects.filter(pk=clinics["jane"].pk).update(first_name="Janet")
    with CaptureQueriesContext(db) as captured:
        again = _get(api, token, world.org_a)
    assert _names(again) == ["Jane Citizen", "Omar Citizen"]  # ...is not seen: it was cached
    assert not any("patient_conversation_profile" in q["sql"] for q in captured.captured_queries)
    assert again["timestamp"] >= first["timestamp"] and again["success"] is True
    profiles_cache_bump(world.org_a.pk)
    assert _names(_get(api, token, world.org_a)) == ["Janet Citizen", "Omar Citizen"]


def test_a_refresh_starts_a_new_version_once_it_commits(world, clinics, django_capture_on_commit_callbacks):
    before, _ = profiles_state(world.org_a.pk)
    with django_capture_on_commit_callbacks(execute=False) as pending:
        profiles_refresh(world.org_a, patient_ids=[clinics["jane"].pk])
    assert profiles_state(world.org_a.pk)[0] == before  # not before the commit
    for callback in pending:
        callback()
    version, next_expiry = profiles_state(world.org_a.pk)
    assert version == before + 1
    with tenant_scope(world.org_a):
        earliest = PatientProfile.objects.order_by("valid_until").values_list("valid_until", flat=True)[0]
    assert next_expiry == earliest


def test_an_expired_profile_is_recomputed_even_when_its_answer_was_cached(world, clinics, api, token_for):
    token = token_for(world.org_a)
    jane = clinics["jane"]
    assert _get(api, token, world.org_a, f"/{jane.pk}")["profile"]["upcoming_appointment_count"] == 0
    with tenant_scope(world.org_a):
        baker.make(
            Appointment,
            organization=world.org_a,
            pms="cliniko",
            external_id="soon",
            patient=jane,
            starts_at=timezone.now() + timedelta(days=2),
            ends_at=timezone.now() + timedelta(days=2, minutes=30),
        )
        PatientProfile.objects.filter(patient=jane).update(valid_until=timezone.now() - timedelta(seconds=1))
    # The cache recorded when the next profile expires; the expiry is now earlier than that.
    profiles_cache_bump(world.org_a.pk)
    profile = _get(api, token, world.org_a, f"/{jane.pk}")["profile"]
    assert profile["upcoming_appointment_count"] == 1


def test_the_recorded_expiry_passing_recomputes_before_answering(world, clinics, api, token_for, monkeypatch):
    token = token_for(world.org_a)
    jane = clinics["jane"]
    _get(api, token, world.org_a, f"/{jane.pk}")
    _, next_expiry = profiles_state(world.org_a.pk)
    assert next_expiry is not None
    with tenant_scope(world.org_a):
        Patient.objects.filter(pk=jane.pk).update(first_name="Later")
    later = next_expiry + timedelta(seconds=1)
    monkeypatch.setattr("patients.profiles.cache.timezone.now", lambda: later)
    monkeypatch.setattr("patients.profiles.timezone.now", lambda: later)
    assert _get(api, token, world.org_a, f"/{jane.pk}")["profile"]["patient_name"] == "Later Citizen"


def test_anonymising_a_patient_removes_them_from_cached_answers_at_once(
    world, clinics, api, token_for, django_capture_on_commit_callbacks
):
    token = token_for(world.org_a)
    jane = clinics["jane"]
    assert "Jane Citizen" in _names(_get(api, token, world.org_a))
    assert _get(api, token, world.org_a, f"/{jane.pk}")["profile"]["patient_name"] == "Jane Citizen"
    with django_capture_on_commit_callbacks(execute=True):
        privacy.patient_anonymise(world.org_a, patient_id=jane.pk)
    assert "Jane Citizen" not in _names(_get(api, token, world.org_a))
    detail = _get(api, token, world.org_a, f"/{jane.pk}")["profile"]
    assert detail["patient_name"] != "Jane Citizen" and detail["email"] is None


def test_a_purge_recomputes_the_profiles_of_those_who_remain(world, clinics, api, token_for):
    token = token_for(world.org_a)
    jane = clinics["jane"]
    _patient(world.org_a, "a3", "Old", days_ago=())
    with tenant_scope(world.org_a):
        Appointment.objects.filter(patient=jane).update(starts_at=timezone.now() - timedelta(days=4000))
        profiles_refresh_all(world.org_a)
    profiles_cache_bump(world.org_a.pk)
    assert _get(api, token, world.org_a, f"/{jane.pk}")["profile"]["total_appointment_count"] == 2
    with tenant_scope(world.org_a):
        result = privacy.retention_purge(world.org_a)
    assert result.appointments == 2
    profiles_cache_bump(world.org_a.pk)  # the test's transaction never commits: bump as a commit would
    assert _get(api, token, world.org_a, f"/{jane.pk}")["profile"]["total_appointment_count"] == 0


def test_a_finished_sync_with_no_changes_still_moves_data_as_of(
    world, clinics, api, token_for, django_capture_on_commit_callbacks
):
    token = token_for(world.org_a)
    first = _get(api, token, world.org_a, "/summary")
    connection = baker.make(PmsConnection, organization=world.org_a, kind="cliniko")
    synced_at = timezone.now()
    with tenant_scope(world.org_a):
        PmsConnection.objects.filter(pk=connection.pk).update(last_successful_sync_at=synced_at)
    with django_capture_on_commit_callbacks(execute=True):
        records_changed_announce(
            RecordsChanged(organization_id=world.org_a.pk, source="sync", run_id=1, final=True)
        )
    after = _get(api, token, world.org_a, "/summary")
    assert after["data_as_of"] != first["data_as_of"]
    assert after["data_as_of"].startswith(synced_at.strftime("%Y-%m-%dT%H:%M"))


def test_one_organizations_cached_answer_is_never_anothers(world, clinics, api, token_for):
    assert _names(_get(api, token_for(world.org_a), world.org_a)) == ["Jane Citizen", "Omar Citizen"]
    assert _names(_get(api, token_for(world.org_b, user="user_bob"), world.org_b)) == ["Bob Citizen"]
    bob = clinics["bob"]
    response = api(
        "get", f"/api/v1/reengagement/{world.org_a.pk}/patient-profiles/{bob.pk}", token_for(world.org_a)
    )
    assert response.status_code == 404
    # And a token for A asking for B's (cached) listing is refused, not served.
    response = api("get", f"/api/v1/reengagement/{world.org_b.pk}/patient-profiles", token_for(world.org_a))
    assert response.status_code in (403, 404)


def test_with_the_answer_cache_off_every_answer_is_computed(world, clinics, api, token_for, settings):
    settings.ANSWER_CACHE_SECONDS = 0
    token = token_for(world.org_a)
    assert _names(_get(api, token, world.org_a)) == ["Jane Citizen", "Omar Citizen"]
    with tenant_scope(world.org_a):
        Patient.objects.filter(pk=clinics["jane"].pk).update(first_name="Janet")
    assert _names(_get(api, token, world.org_a)) == ["Janet Citizen", "Omar Citizen"]


@pytest.mark.django_db(transaction=True)  # commits for real: the bump runs before the warming
def test_a_finished_sync_warms_the_first_answers(world, clinics, api, token_for):
    token = token_for(world.org_a)
    _get(api, token, world.org_a, "/summary")  # mirrors the token's user: not what is measured
    with tenant_scope(world.org_a):
        Patient.objects.filter(pk=clinics["jane"].pk).update(first_name="Janet")
    records_changed_announce(  # outside a transaction: sent at once, as after a sync's commit
        RecordsChanged(
            organization_id=world.org_a.pk,
            source="sync",
            run_id=7,
            final=True,
            patient_ids=(clinics["jane"].pk,),
        )
    )
    for rest in ("", "/summary"):
        with CaptureQueriesContext(db) as captured:
            page = _get(api, token, world.org_a, rest)
        assert not any("patient_conversation_profile" in q["sql"] for q in captured.captured_queries), rest
    assert _names(_get(api, token, world.org_a)) == ["Janet Citizen", "Omar Citizen"]
    assert page["summary"]["total_patients"] == 2
    for rest in ("dashboard-summary", "performance"):
        with CaptureQueriesContext(db) as captured:
            response = api("get", f"/api/v1/reengagement/{world.org_a.pk}/{rest}", token)
        assert response.status_code == 200
        assert not any("patients_appointment" in q["sql"] for q in captured.captured_queries), rest
        assert not any("patient_conversation_profile" in q["sql"] for q in captured.captured_queries), rest


def test_warming_failures_are_logged_not_raised(world, clinics, monkeypatch, caplog):
    from patients.api import answers

    def broken(org):
        raise RuntimeError("boom")

    monkeypatch.setitem(answers.WARMERS, "profiles_summary", broken)
    warmed = answers.answers_warm(world.org_a)
    assert "profiles_summary" not in warmed and "profiles_page" in warmed
    assert "warming profiles_summary" in caplog.text


def test_a_new_organization_is_warmed_by_the_job_queue(django_capture_on_commit_callbacks):
    from django.core.cache import cache
    from django_q.models import OrmQ
    from django_q.signing import SignedPackage

    from clinics.services import organization_create
    from patients.api import answers
    from patients.tasks import answers_warm_task

    with django_capture_on_commit_callbacks(execute=True):
        organization = organization_create(org_id="org_NewClinicWarm0001", name="New Clinic")
    (queued,) = OrmQ.objects.all()
    task = SignedPackage.loads(queued.payload)
    assert task["func"] == "patients.tasks.answers_warm_task" and task["args"] == (organization.pk,)

    cache.clear()
    assert set(answers_warm_task(organization.pk)) >= {"profiles_page", "profiles_summary"}
    with mock.patch.object(
        answers.selectors, "patient_profile_summary", side_effect=AssertionError("computed")
    ):
        summary = json.loads(answers.profile_summary(organization))  # served as warmed
    assert summary["summary"]["total_patients"] == 0
    assert answers_warm_task("org_NoSuchClinic") == []


def test_updating_an_organization_queues_no_warming(world, django_capture_on_commit_callbacks):
    from django_q.models import OrmQ

    with django_capture_on_commit_callbacks(execute=True):
        world.org_a.name = "Harbour Physio & Pilates"
        world.org_a.save(update_fields=["name"])
    assert not OrmQ.objects.exists()


def test_warming_under_row_level_security_caches_the_clinics_real_figures(world, clinics, app_role):
    """Warming runs in a worker, outside any request's tenant scope; as the application role it
    must still see the clinic's rows, or it would cache empty answers as this version's."""
    from patients.api import answers

    with db.cursor() as cursor:
        cursor.execute(f"SET ROLE {app_role}")
        cursor.execute("SELECT set_config('app.org_id', '', false)")
    try:
        assert Patient.objects.count() == 0  # no tenant, no rows: the wall is up
        assert "profiles_summary" in answers.answers_warm(world.org_a)
    finally:
        with db.cursor() as cursor:
            cursor.execute("RESET ROLE")
    with mock.patch.object(
        answers.selectors, "patient_profile_summary", side_effect=AssertionError("computed")
    ):
        summary = json.loads(answers.profile_summary(world.org_a))  # the warmed answer
    assert summary["summary"]["total_patients"] == 2


# --- many readers at once --------------------------------------------------------------------------
def test_readers_finding_one_expiry_together_start_one_version(world, clinics):
    from patients.profiles import RefreshResult
    from patients.profiles.cache import _EXPIRY, _bump, cached_answer

    org = world.org_a.pk
    profiles_cache_bump(org)
    version, _ = profiles_state(org)
    caches["default"].set(_EXPIRY.format(org=org), timezone.now() - timedelta(seconds=1), None)

    def refreshed_by_another():
        # What a reader finds once the first one's refresh committed: nothing left to do, and
        # the version the first one started.
        _bump(org)
        return RefreshResult(0, 0.0)

    assert cached_answer(org, "probe", {}, lambda: "answer", refresh_expired=refreshed_by_another) == "answer"
    assert profiles_state(org)[0] == version + 1


def test_a_reader_finding_another_refreshing_answers_from_the_version_as_it_stands(world, clinics):
    from patients.profiles import RefreshResult
    from patients.profiles.cache import _EXPIRY, cached_answer

    org = world.org_a.pk
    profiles_cache_bump(org)
    version, _ = profiles_state(org)
    caches["default"].set(_EXPIRY.format(org=org), timezone.now() - timedelta(seconds=1), None)
    answer = cached_answer(
        org, "probe", {}, lambda: "answer", refresh_expired=lambda: RefreshResult(0, 0.0, busy=True)
    )
    assert answer == "answer" and profiles_state(org)[0] == version  # the other refresh moves it


def test_a_readers_expiry_refresh_starts_one_version_when_it_commits(
    world, clinics, django_capture_on_commit_callbacks
):
    from patients.api.answers import answer_cached

    org = world.org_a
    profiles_cache_bump(org.pk)
    version, _ = profiles_state(org.pk)
    with tenant_scope(org):
        PatientProfile.objects.filter(patient=clinics["jane"]).update(
            valid_until=timezone.now() - timedelta(seconds=1)
        )
    _expire_now(org.pk)
    made = []
    with django_capture_on_commit_callbacks(execute=False) as pending:
        # The reader that finds the expiry answers from what it recomputed, and keeps nothing.
        assert answer_cached(org, "probe", {}, _counting(made)) == "answer 1"
        assert profiles_state(org.pk)[0] == version  # not before its commit
        _, next_expiry = profiles_state(org.pk)
        assert next_expiry > timezone.now()  # the others do not try again meanwhile
        assert answer_cached(org, "probe", {}, _counting(made)) == "answer 2"  # kept under `version`
        assert answer_cached(org, "probe", {}, _counting(made)) == "answer 2"
    for callback in pending:
        callback()
    assert profiles_state(org.pk)[0] == version + 1  # one version for the expiry
    assert answer_cached(org, "probe", {}, _counting(made)) == "answer 3"
    with tenant_scope(org):
        assert PatientProfile.objects.get(patient=clinics["jane"]).valid_until > timezone.now()


def test_a_stale_recorded_expiry_with_nothing_to_recompute_records_the_real_next_one(world, clinics):
    from patients.profiles import RefreshResult
    from patients.profiles.cache import cached_answer

    org = world.org_a.pk
    profiles_cache_bump(org)
    version, real = profiles_state(org)
    _expire_now(org)  # recorded as passed, though no profile is due
    cached_answer(org, "probe", {}, lambda: "answer", refresh_expired=lambda: RefreshResult(0, 0.0))
    # No commit follows to record it: the reader does (not a recheck in a few seconds, forever).
    assert profiles_state(org) == (version, real)


# --- answers that read no profile: the data version ------------------------------------------------
def _counting(answers_made):
    def compute():
        answers_made.append(1)
        return f"answer {len(answers_made)}"

    return compute


def _expire_now(org_id):
    from patients.profiles.cache import _EXPIRY

    caches["default"].set(_EXPIRY.format(org=org_id), timezone.now() - timedelta(seconds=1), None)


def test_an_expiry_moves_the_profile_answers_but_not_those_that_read_no_profile(world, clinics):
    from patients.profiles import RefreshResult
    from patients.profiles.cache import cached_answer

    org = world.org_a.pk
    profiles_cache_bump(org)
    profile_made, data_made = [], []

    def read_both(refresh):
        return (
            cached_answer(org, "profiles", {}, _counting(profile_made), refresh_expired=refresh),
            cached_answer(org, "kpis", {}, _counting(data_made), refresh_expired=refresh, data_only=True),
        )

    assert read_both(lambda: RefreshResult(0, 0.0)) == ("answer 1", "answer 1")
    _expire_now(org)
    refreshes = []
    # One profile recomputed by the first reader: the profile answers start again, the KPIs not.
    assert read_both(lambda: refreshes.append(1) or RefreshResult(1, 0.0)) == ("answer 2", "answer 1")
    assert refreshes == [1]  # the data-only read did not refresh the expired profiles
    profiles_cache_bump(org)  # a data change (a sync's refresh, a load): both
    assert read_both(lambda: RefreshResult(0, 0.0)) == ("answer 3", "answer 2")


def test_an_expiry_refresh_moves_only_the_profile_version(world, clinics, django_capture_on_commit_callbacks):
    from patients.profiles import profiles_refresh_expired
    from patients.profiles.cache import _state

    org = world.org_a
    profiles_cache_bump(org.pk)
    version, _, data_version = _state(org.pk)
    with tenant_scope(org):
        PatientProfile.objects.filter(patient=clinics["jane"]).update(
            valid_until=timezone.now() - timedelta(seconds=1)
        )
    with django_capture_on_commit_callbacks(execute=True):
        assert profiles_refresh_expired(org).patients == 1
    assert _state(org.pk)[0] == version + 1 and _state(org.pk)[2] == data_version
    with django_capture_on_commit_callbacks(execute=True):
        profiles_refresh(org, patient_ids=[clinics["jane"].pk])  # what a sync asks for
    assert _state(org.pk)[0] == version + 2 and _state(org.pk)[2] > data_version


def test_without_a_data_version_the_profile_version_keys_the_answer(world, clinics):
    from patients.profiles import RefreshResult
    from patients.profiles.cache import _DATA_VERSION, _state, cached_answer

    org = world.org_a.pk
    profiles_cache_bump(org)
    caches["default"].delete(_DATA_VERSION.format(org=org))  # lost from the cache
    made = []

    def read():
        return cached_answer(
            org, "kpis", {}, _counting(made), refresh_expired=lambda: RefreshResult(0, 0.0), data_only=True
        )

    assert read() == "answer 1" and read() == "answer 1"
    profiles_cache_bump(org)
    version, _, data_version = _state(org)
    # Started again from the profile version, beyond any number it held before.
    assert data_version == version
    assert read() == "answer 2"


def test_the_kpis_follow_a_sync_but_not_an_expiry(world, clinics, api, token_for):
    token = token_for(world.org_a)
    org = world.org_a

    def kpis():
        response = api("get", f"/api/v1/analytics/{org.pk}/kpis", token)
        assert response.status_code == 200, response.content
        return json.loads(response.content)["kpis"]

    first = kpis()
    with tenant_scope(org):
        baker.make(
            Appointment,
            organization=org,
            pms="cliniko",
            external_id="today",
            patient=clinics["jane"],
            starts_at=timezone.now() - timedelta(hours=1),
            ends_at=timezone.now() - timedelta(minutes=30),
            patient_arrived=True,
        )
        PatientProfile.objects.filter(patient=clinics["jane"]).update(
            valid_until=timezone.now() - timedelta(seconds=1)
        )
    _expire_now(org.pk)
    # An expiry: the profile is recomputed by its reader and shows the visit; the KPIs are kept.
    profile = _get(api, token, org, f"/{clinics['jane'].pk}")["profile"]
    assert profile["attended_count"] == 3
    assert kpis() == first
    profiles_cache_bump(org.pk)  # what the sync that brought the visit does once it commits
    assert kpis()["current"]["attended"] == first["current"]["attended"] + 1


def test_an_answer_being_computed_elsewhere_is_waited_for_not_computed_again(db):
    from patients.profiles.cache import COMPUTE_WAIT_SECONDS, _computed_once

    cache = caches["default"]
    if not isinstance(cache, RedisCache):
        # The database cache's entries are written inside each request's transaction, where no
        # other request sees them: a claim there is not waited for.
        cache.set("probe:computing", 1, 60)
        began = time.monotonic()
        assert _computed_once(cache, "probe", lambda: "computed here", 60) == "computed here"
        assert time.monotonic() - began < COMPUTE_WAIT_SECONDS / 2 and cache.get("probe") == "computed here"
        return
    computed, started, answers = [], threading.Event(), []

    def slow():
        computed.append("first")
        started.set()
        time.sleep(0.5)
        return "first's answer"

    def other():
        computed.append("second")
        return "second's answer"

    first = threading.Thread(target=lambda: answers.append(_computed_once(cache, "probe", slow, 60)))
    first.start()
    assert started.wait(10)
    second = _computed_once(cache, "probe", other, 60)
    first.join(10)
    assert computed == ["first"] and second == answers[0] == "first's answer"
    assert cache.get("probe:computing") is None


def test_a_reader_waiting_for_an_answer_that_fails_elsewhere_computes_it(db):
    from patients.profiles.cache import _computed_once

    cache = caches["default"]
    started, release, failures = threading.Event(), threading.Event(), []

    def failing():
        started.set()
        release.wait(10)
        raise RuntimeError("the first one failed")

    def run_failing():
        try:
            _computed_once(cache, "probe-fails", failing, 60)
        except RuntimeError as error:
            failures.append(error)

    first = threading.Thread(target=run_failing)
    first.start()
    assert started.wait(10)
    threading.Timer(0.2, release.set).start()
    assert _computed_once(cache, "probe-fails", lambda: "computed here", 60) == "computed here"
    first.join(10)
    assert len(failures) == 1 and cache.get("probe-fails") == "computed here"


# --- the settings profiles depend on ---------------------------------------------------------------
def _queued_tasks():
    from django_q.models import OrmQ
    from django_q.signing import SignedPackage

    return [
        (task["func"], task["args"]) for task in (SignedPackage.loads(q.payload) for q in OrmQ.objects.all())
    ]


def test_changing_the_retention_settings_or_time_zone_queues_a_full_refresh(
    world, django_capture_on_commit_callbacks
):
    from clinics.services import organization_update_retention

    refresh = ("patients.tasks.profiles_refresh_task", (world.org_a.pk,))
    with django_capture_on_commit_callbacks(execute=True):
        organization_update_retention(world.org_a, changes={"lapse_soft_days": 45})
    assert _queued_tasks() == [refresh]
    with django_capture_on_commit_callbacks(execute=True):
        world.org_b.time_zone = "Australia/Perth"
        world.org_b.save()  # as the admin saves: every field
    assert _queued_tasks() == [refresh, ("patients.tasks.profiles_refresh_task", (world.org_b.pk,))]


def test_saving_an_organization_with_the_same_settings_queues_nothing(
    world, django_capture_on_commit_callbacks
):
    from clinics.services import organization_update_retention

    with django_capture_on_commit_callbacks(execute=True):
        world.org_a.name = "Harbour Physio & Pilates"
        world.org_a.save()
        organization_update_retention(world.org_a, changes={})
    assert _queued_tasks() == []


def test_the_refresh_task_recomputes_every_profile_under_the_new_settings(world, clinics):
    from clinics.services import organization_update_retention
    from patients.tasks import profiles_refresh_task

    jane = clinics["jane"]  # last seen 100 days ago
    with tenant_scope(world.org_a):
        assert PatientProfile.objects.get(patient=jane).lifecycle_stage == "lapsing"  # 60 <= 100 < 180
    version, _ = profiles_state(world.org_a.pk)
    changes = {"lapse_soft_days": 30, "lapse_hard_days": 60, "dormant_days": 90}
    organization_update_retention(world.org_a, changes=changes)
    assert profiles_refresh_task(world.org_a.pk) == 2
    with tenant_scope(world.org_a):
        assert PatientProfile.objects.get(patient=jane).lifecycle_stage == "dormant"
    assert profiles_state(world.org_a.pk)[0] > version  # the cached answers follow
    assert profiles_refresh_task("org_NoSuchClinic") == 0
