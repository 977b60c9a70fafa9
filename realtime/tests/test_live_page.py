"""The live dashboard page: who may open it, and a real browser watching it change when a sync
commits (headless Chromium from Debian's `chromium` package, driven through its chromedriver;
`bin/test` installs both)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from model_bakery import baker

from clinics.models import Membership, Organization, Role
from conftest import database_url
from patients.models import PatientProfile

REPO_ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def _url(org_id: str) -> str:
    return f"/live/{org_id}/"


# --- who may open it --------------------------------------------------------------------------------
def test_signing_in_is_required(client, world):
    response = client.get(_url(world.org_a.pk))
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")


def test_a_member_gets_the_page_wired_to_their_clinic(client, world):
    client.force_login(world.staff_a)
    response = client.get(_url(world.org_a.pk))
    assert response.status_code == 200
    page = response.content.decode()
    assert f'data-socket-path="/ws/clinics/{world.org_a.pk}/metrics"' in page
    assert f'data-worklist-url="/api/v1/reengagement/{world.org_a.pk}/prioritized?limit=10"' in page
    assert "/static/realtime/live.js" in page and "Harbour Physio" in page
    assert "https://" not in page.replace("https://app.routiq.example", "")  # no CDN


@pytest.mark.parametrize(
    "org_id", ["org_2yBqMfT93kLpZcVwXs4Rt8uNa1Q", "org_NoSuchClinicAtAll", "../admin", "x"]
)
def test_another_clinic_or_no_clinic_is_not_found(client, world, org_id):
    client.force_login(world.staff_a)  # a member of org A only
    response = client.get(f"/live/{org_id}/")
    assert response.status_code == 404
    assert b"Bayside" not in response.content


def test_a_superuser_may_open_any_clinic(client, world):
    client.force_login(
        baker.make(settings.AUTH_USER_MODEL, username="root", is_superuser=True, is_staff=True)
    )
    assert client.get(_url(world.org_b.pk)).status_code == 200


def test_the_index_sends_a_member_of_one_clinic_straight_to_it(client, world):
    client.force_login(world.staff_a)
    response = client.get("/live/")
    assert response.status_code == 302 and response["Location"] == _url(world.org_a.pk)


def test_the_index_lists_only_the_users_clinics(client, world):
    third = baker.make(Organization, id="org_ThirdClinicXYZ123", name="Coastal Podiatry")
    baker.make(Membership, organization=third, user=world.staff_a, role=Role.STAFF)
    client.force_login(world.staff_a)
    page = client.get("/live/").content.decode()
    assert "Harbour Physio" in page and "Coastal Podiatry" in page and "Bayside" not in page


def test_the_static_assets_are_served_by_the_project(client):
    for asset in ("realtime/live.js", "realtime/live.css"):
        response = client.get(f"/static/{asset}")
        assert response.status_code == 200, asset
        assert b"".join(response.streaming_content if response.streaming else [response.content])


# --- a real browser, a real server, a real sync ----------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """uvicorn serving the project against the test database, with this run's channel layer
    (Redis when REDIS_URL is set, else the PostgreSQL layer on the same database)."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        env = {
            **os.environ,
            "DATABASE_URL": database_url(),
            "ALLOWED_HOSTS": "127.0.0.1",
            "DEBUG": "false",
            "SECRET_KEY": "live-page-test-only",
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
        }
        env.pop("DJANGO_SETTINGS_MODULE", None)
        command = [sys.executable, "-m", "uvicorn", "routiq.asgi:application", "--host", "127.0.0.1",
                   "--port", str(self.port), "--no-access-log", "--log-level", "warning"]  # fmt: skip
        self.process = subprocess.Popen(command, cwd=REPO_ROOT, env=env)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.process.poll() is None, "the server exited"
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.25)
        raise AssertionError("the server did not start in time")

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.process = None


@pytest.fixture
def server() -> Iterator[ServerProcess]:
    process = ServerProcess()
    process.start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def browser(tmp_path: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    assert Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists(), (
        "the browser test needs Debian's chromium and chromium-driver (bin/test installs them)"
    )
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium'}",
    ):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def _wait_for(driver, condition, *, timeout: float = 60.0, what: str = "") -> None:
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    # A page still loading (the redirect after signing in) can replace the body between finding
    # it and reading it: that poll is asked again, not a failure.
    WebDriverWait(
        driver, timeout, poll_frequency=0.2, ignored_exceptions=(StaleElementReferenceException,)
    ).until(lambda d: condition(d), message=what)


def _body(driver, name: str) -> str | None:
    return driver.find_element("tag name", "body").get_attribute(f"data-{name}")


def _sign_in(browser, server: ServerProcess, world) -> None:
    world.staff_a.is_staff = True
    world.staff_a.set_password("correct horse battery staple")
    world.staff_a.save()
    browser.get(f"{server.base}/admin/login/?next={_url(world.org_a.pk)}")
    browser.find_element("name", "username").send_keys(world.staff_a.username)
    browser.find_element("name", "password").send_keys("correct horse battery staple")
    browser.find_element("css selector", "[type=submit]").click()


@pytest.mark.django_db(transaction=True)  # the server process sees only committed rows
def test_the_live_page_changes_in_a_real_browser_when_a_sync_commits(
    world, sim, connection, run_sync, server, browser
):
    _sign_in(browser, server, world)  # as a person does, then the clinic's live page opens
    _wait_for(browser, lambda d: _body(d, "state") == "live", what="the socket never went live")
    assert browser.find_element("id", "total-patients").text == "0"
    start_seq = int(_body(browser, "seq"))

    # A sync in this process (the worker's part) commits the clinic's records; its events cross
    # the channel layer to the server process, and over the WebSocket to the page.
    run = run_sync("full")
    assert run.status == "completed"
    _wait_for(
        browser,
        lambda d: (_body(d, "total-patients") or "0") != "0",
        what="the page never showed the synced patients",
    )
    with_patients = int(_body(browser, "total-patients"))
    assert with_patients == PatientProfile.objects.for_org(world.org_a).count() > 0
    shown = browser.find_elements("css selector", "#events li")
    types = [item.get_attribute("data-type") for item in shown]
    seqs = [int(item.get_attribute("data-seq")) for item in shown]
    assert set(types[:3]) == {"sync_completed", "metrics_updated", "profiles_changed"}
    assert seqs == list(range(seqs[0], seqs[0] - len(seqs), -1)), "events shown out of order or with a gap"
    assert seqs[0] == int(_body(browser, "seq")) > start_seq
    assert browser.find_element("id", "total-patients").text.replace(",", "") == str(with_patients)
    _wait_for(browser, lambda d: int(_body(d, "worklist-rows") or 0) > 0, what="the worklist never loaded")
    assert browser.find_elements("css selector", "#risk-chart rect")  # the chart was drawn
    assert _body(browser, "sync-status") == "completed"


@pytest.mark.django_db(transaction=True)
def test_the_live_page_reconnects_after_the_server_restarts_and_catches_up(
    world, sim, connection, run_sync, server, browser
):
    _sign_in(browser, server, world)
    _wait_for(browser, lambda d: _body(d, "state") == "live", what="the socket never went live")
    before = int(_body(browser, "seq"))

    server.stop()
    _wait_for(browser, lambda d: _body(d, "state") == "reconnecting", what="the page did not notice")
    run_sync("full")  # committed while the page is cut off: its events are only in the log
    server.start()  # same address: the page's backoff finds it again

    _wait_for(browser, lambda d: _body(d, "state") == "live", what="the page did not reconnect")
    _wait_for(
        browser,
        lambda d: (_body(d, "total-patients") or "0") != "0",
        what="the page did not catch up with what happened while it was away",
    )
    assert int(_body(browser, "seq")) > before
    assert int(_body(browser, "total-patients")) == PatientProfile.objects.for_org(world.org_a).count()
