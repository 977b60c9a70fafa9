"""The first quickstart command, end to end: real database, server, worker and demo clinic."""

import os
import re
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest

from conftest import database_url
from routiq import embedded_db

ROOT = Path(__file__).resolve().parents[2]


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def launcher_env(tmp_path, db):
    env = {**os.environ, "ROUTIQ_STATE_DIR": str(tmp_path / "state")}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    if not os.environ.get("DATABASE_URL"):
        yield env  # the launcher starts its own embedded server in the state folder
        assert not embedded_db.is_running(tmp_path / "state" / "pgdata"), "embedded server left running"
        return
    name = f"routiq_launch_{uuid.uuid4().hex[:8]}"
    admin_url = database_url("postgres")
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    env["DATABASE_URL"] = database_url(name)
    yield env
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.slow
def test_start_serves_admin_health_and_demo_then_stops(launcher_env):
    port, simulator_port = free_port(), free_port()
    result = subprocess.run(
        [sys.executable, "-m", "routiq.launcher", "--check", "--patients", "50", "--port", str(port),
         "--simulator-port", str(simulator_port)],
        cwd=ROOT, env=launcher_env, capture_output=True, text=True, timeout=240,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "Routiq is running" in output
    assert "Login:   admin / " in output
    assert "curl -H 'Authorization: Bearer " in output
    for path in ("/admin/login/", "/static/admin/css/base.css", "/api/schema/", "/api/v1/organizations/",
                 "/api/v1/cliniko/status/"):
        assert re.search(rf"check {re.escape(path)}\S*: 200", output), path
    # The demo clinic came through a real sync from the simulator, carried out by the worker.
    assert re.search(r"sync \d+ completed: [\d,]+ records", output), output[-3000:]
    assert "check demo patients imported: 50" in output
    # The server, worker and simulator were stopped with the launcher: the ports are free again.
    for used in (port, simulator_port):
        with socket.socket() as sock:
            assert sock.connect_ex(("127.0.0.1", used)) != 0
