"""Start-up refuses bad configuration with one line naming the setting."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def current_database_url(name: str = "postgres") -> str:
    """The server this test run uses (embedded or external), as a DATABASE_URL."""
    from urllib.parse import quote

    from django.conf import settings

    db = settings.DATABASES["default"]
    host = quote(db["HOST"], safe="") if db["HOST"].startswith("/") else db["HOST"]
    return f"postgresql://{db['USER']}@{host}:{db['PORT'] or 5432}/{name}"


def run_check(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "REDIS_URL", "SECRET_KEY", "ROUTIQ_ENCRYPTION_KEY", "ROUTIQ_PRODUCTION"}
    }
    base["ROUTIQ_STATE_DIR"] = str(tmp_path / "state")
    return subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("env", "setting"),
    [
        ({"DATABASE_URL": "mysql://root@localhost/routiq"}, "DATABASE_URL"),
        ({"DATABASE_URL": "postgresql://postgres@127.0.0.1:1/routiq"}, "DATABASE_URL"),
        (
            {"DATABASE_URL": current_database_url(""), "ROUTIQ_CHECK_SERVICES": "false"},
            "DATABASE_URL",
        ),
        (
            {"DATABASE_URL": current_database_url(), "REDIS_URL": "http://cache"},
            "REDIS_URL",
        ),
        (
            {
                "DATABASE_URL": current_database_url(),
                "REDIS_URL": "redis://127.0.0.1:1/0",
            },
            "REDIS_URL",
        ),
        (
            {
                "DATABASE_URL": current_database_url(),
                "ROUTIQ_PRODUCTION": "true",
                "ROUTIQ_ENCRYPTION_KEY": "x" * 44,
            },
            "SECRET_KEY",
        ),
        (
            {
                "DATABASE_URL": current_database_url(),
                "ROUTIQ_PRODUCTION": "true",
                "SECRET_KEY": "s" * 50,
            },
            "ROUTIQ_ENCRYPTION_KEY",
        ),
        (
            {
                "DATABASE_URL": current_database_url(),
                "ROUTIQ_ENCRYPTION_KEY": "not-a-key",
            },
            "ROUTIQ_ENCRYPTION_KEY",
        ),
        ({"DATABASE_URL": current_database_url(), "Q_BROKER": "redis"}, "Q_BROKER"),
        ({"DATABASE_URL": current_database_url(), "Q_BROKER": "sqs"}, "Q_BROKER"),
    ],
    ids=[
        "not-postgres",
        "unreachable-db",
        "no-db-name",
        "malformed-redis",
        "unreachable-redis",
        "prod-no-secret",
        "prod-no-encryption-key",
        "bad-encryption-key",
        "redis-broker-without-redis",
        "unknown-broker",
    ],
)
def test_bad_configuration_stops_with_one_line(tmp_path, env, setting):
    result = run_check(tmp_path, **env)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Routiq cannot start:") and setting in lines[0]
    assert "Traceback" not in result.stderr


def test_good_external_configuration_starts(tmp_path):
    result = run_check(tmp_path, DATABASE_URL=current_database_url())
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout
    # A development install generates and keeps its own keys, readable only by the owner.
    key_file = tmp_path / "state" / "encryption_key"
    assert key_file.exists() and (key_file.stat().st_mode & 0o077) == 0
