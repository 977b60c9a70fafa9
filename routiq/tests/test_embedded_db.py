"""The embedded PostgreSQL: starts, keeps its data across restarts, stops."""

import psycopg
import pytest

from routiq import embedded_db


@pytest.fixture
def data_dir(tmp_path):
    path = tmp_path / "pgdata"
    yield path
    if embedded_db.is_running(path):
        embedded_db.stop(path)


def query(server, sql, *params):
    with psycopg.connect(
        host=server.host,
        port=server.port,
        user=server.user,
        dbname=embedded_db.DATABASE_NAME,
        autocommit=True,
    ) as conn:
        cursor = conn.execute(sql, params or None)
        return cursor.fetchall() if cursor.description else []


def test_starts_restarts_on_existing_data_and_stops(data_dir):
    server = embedded_db.start(data_dir, stop_on_exit=False)
    assert embedded_db.is_running(data_dir)
    assert "PostgreSQL" in query(server, "SELECT version()")[0][0]
    query(server, "CREATE TABLE kept (value text)")
    query(server, "INSERT INTO kept VALUES ('still here')")

    assert embedded_db.stop(data_dir) is True
    assert not embedded_db.is_running(data_dir)
    assert embedded_db.stop(data_dir) is False

    restarted = embedded_db.start(data_dir, stop_on_exit=False)
    assert embedded_db.is_running(data_dir)
    assert query(restarted, "SELECT value FROM kept") == [("still here",)]
    assert (data_dir / "PG_VERSION").exists()


def test_provisions_the_owner_and_application_roles(data_dir):
    server = embedded_db.start(data_dir, stop_on_exit=False)
    owner = query(
        server,
        "SELECT r.rolname FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba WHERE d.datname = 'routiq'",
    )
    assert owner == [("routiq_owner",)]
    roles = dict(
        (name, (superuser, bypass))
        for name, superuser, bypass in query(
            server, "SELECT rolname, rolsuper, rolbypassrls FROM pg_roles WHERE rolname LIKE 'routiq_%'"
        )
    )
    assert roles == {"routiq_owner": (False, False), "routiq_app": (False, False)}
    # The application role gets rights on tables the owner creates later (migrations).
    with psycopg.connect(
        host=server.host, port=server.port, user="routiq_owner", dbname="routiq", autocommit=True
    ) as conn:
        conn.execute("CREATE TABLE later (id int)")
    with psycopg.connect(
        host=server.host, port=server.port, user="routiq_app", dbname="routiq", autocommit=True
    ) as conn:
        conn.execute("INSERT INTO later VALUES (1)")
        assert conn.execute("SELECT count(*) FROM later").fetchone() == (1,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DROP TABLE later")


def test_is_running_is_false_for_an_empty_folder(tmp_path):
    assert embedded_db.is_running(tmp_path) is False
