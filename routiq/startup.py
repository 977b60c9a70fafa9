"""Reading and checking the environment before Django starts.

Every failure here is a one-line `SystemExit` naming the setting at fault, so an operator
sees what to fix instead of a traceback.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import environ

from routiq import embedded_db


class ConfigurationError(SystemExit):
    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"Routiq cannot start: {setting} {problem}")


def secret_key(env: environ.Env, *, production: bool, state_dir: Path) -> str:
    value = env.str("SECRET_KEY", default="")
    if value:
        return value
    if production:
        raise ConfigurationError("SECRET_KEY", "must be set when ROUTIQ_PRODUCTION is true")
    return _generated_value(state_dir / "secret_key", lambda: secrets.token_urlsafe(50))


def encryption_keys(env: environ.Env, *, production: bool, state_dir: Path) -> list[str]:
    """Fernet keys for credentials at rest; the first encrypts, all decrypt (rotation)."""
    from cryptography.fernet import Fernet

    raw = env.str("ROUTIQ_ENCRYPTION_KEY", default="")
    if not raw:
        if production:
            raise ConfigurationError("ROUTIQ_ENCRYPTION_KEY", "must be set when ROUTIQ_PRODUCTION is true")
        raw = _generated_value(state_dir / "encryption_key", lambda: Fernet.generate_key().decode())
    keys = [key.strip() for key in raw.split(",") if key.strip()]
    for key in keys:
        try:
            Fernet(key)
        except ValueError:
            raise ConfigurationError(
                "ROUTIQ_ENCRYPTION_KEY",
                "is not a valid Fernet key (32 url-safe base64-encoded bytes); "
                'make one with: python -c "from cryptography.fernet import Fernet; '
                'print(Fernet.generate_key().decode())"',
            ) from None
    return keys


def dev_auth(env: environ.Env, *, production: bool) -> bool:
    """Development tokens signed by a local key: on by default in development only."""
    enabled = env.bool("ROUTIQ_DEV_AUTH", default=not production)
    if enabled and production:
        raise ConfigurationError("ROUTIQ_DEV_AUTH", "cannot be enabled when ROUTIQ_PRODUCTION is true")
    return enabled


def database_config(env: environ.Env, *, state_dir: Path) -> dict[str, Any]:
    url = env.str("DATABASE_URL", default="")
    owner_url = env.str("DATABASE_OWNER_URL", default="")
    if url:
        # Schema changes run as the owner role when one is given; everything else as the app.
        config = _parse_database_url(owner_url if owner_url and _is_owner_command() else url)
    else:
        config = _embedded_database_config(state_dir, role=_embedded_role(env))
    # Django's psycopg pool instead of persistent connections, which leak under ASGI.
    config["CONN_MAX_AGE"] = 0
    if env.bool("DATABASE_POOL", default=not _is_forking_worker()):
        config.setdefault("OPTIONS", {})["pool"] = {
            "min_size": 1,
            "max_size": int(os.environ.get("DATABASE_POOL_MAX_SIZE", "10")),
            "timeout": 10,
        }
    if _checks_enabled() and url:
        _check_database_reachable(config)
    return config


def channel_layer_database_config(database: dict[str, Any]) -> dict[str, Any]:
    """Connection settings for realtime.layers.PostgresChannelLayer, which opens its own
    connections per event loop: a copy (tests repoint NAME) without Django's pool."""
    options = {k: v for k, v in database.get("OPTIONS", {}).items() if k != "pool"}
    connection = {key: database.get(key, "") for key in ("NAME", "USER", "PASSWORD", "HOST", "PORT")}
    return {**connection, "OPTIONS": options}


def redis_url(env: environ.Env) -> str:
    url = env.str("REDIS_URL", default="")
    if not url:
        return ""
    parts = urlsplit(url)
    if parts.scheme not in {"redis", "rediss", "unix"} or not (parts.hostname or parts.path):
        raise ConfigurationError("REDIS_URL", "is malformed (expected redis://host:port/db)")
    if _checks_enabled():
        import redis

        try:
            redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3).ping()
        except (redis.RedisError, ValueError) as exc:
            raise ConfigurationError("REDIS_URL", f"is unreachable ({_first_line(exc)})") from None
    return url


def job_broker(env: environ.Env, *, redis_url: str) -> dict[str, Any]:
    """django-q2 broker settings: the ORM unless Q_BROKER=redis asks otherwise."""
    broker = env.str("Q_BROKER", default="orm").lower()
    if broker == "orm":
        return {"orm": "default"}
    if broker == "redis":
        if not redis_url:
            raise ConfigurationError("Q_BROKER", "is redis but REDIS_URL is unset")
        return {"redis": redis_url}
    raise ConfigurationError("Q_BROKER", "must be orm or redis")


def _parse_database_url(url: str) -> dict[str, Any]:
    parts = urlsplit(url)
    if parts.scheme not in {"postgres", "postgresql", "pgsql", "postgis"}:
        raise ConfigurationError(
            "DATABASE_URL", "must be a PostgreSQL URL (postgresql://user:password@host:port/name)"
        )
    try:
        config = environ.Env.db_url_config(url)
    except Exception as exc:  # django-environ raises several types for bad URLs
        raise ConfigurationError("DATABASE_URL", f"is malformed ({_first_line(exc)})") from None
    if not config.get("NAME"):
        raise ConfigurationError("DATABASE_URL", "names no database")
    config["ENGINE"] = "django.db.backends.postgresql"
    # A unix socket directory may be given percent-encoded in the host part.
    config["HOST"] = unquote(str(config.get("HOST") or "")) or config.get("OPTIONS", {}).pop("host", "")
    return config


# Commands that change the schema, and so connect as the owner role.
OWNER_COMMANDS = {
    "migrate",
    "makemigrations",
    "createcachetable",
    "flush",
    "sqlflush",
    "showmigrations",
    "dbshell",
}


def _is_owner_command() -> bool:
    return sys.argv[1:2] and sys.argv[1] in OWNER_COMMANDS or False


def _embedded_role(env: environ.Env) -> str:
    """Which role a process connects to the embedded server as.

    The product runs as the application role (row-level security applies); migrations as the
    owner; the test suite as the server's superuser, since it creates and drops databases
    (the row-level security tests switch to the application role themselves).
    """
    explicit = env.str("ROUTIQ_DB_ROLE", default="")
    if explicit:
        if explicit not in {"app", "owner", "superuser"}:
            raise ConfigurationError("ROUTIQ_DB_ROLE", "must be app, owner or superuser")
        return explicit
    if "pytest" in sys.modules:
        return "superuser"
    return "owner" if _is_owner_command() else "app"


def _embedded_database_config(state_dir: Path, *, role: str) -> dict[str, Any]:
    from routiq import db_roles

    try:
        server = embedded_db.start(state_dir / "pgdata")
    except embedded_db.EmbeddedDatabaseError as exc:
        raise ConfigurationError("DATABASE_URL", f"is unset and {exc}") from None
    user = {"app": db_roles.APP_ROLE, "owner": db_roles.OWNER_ROLE, "superuser": server.user}[role]
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": embedded_db.DATABASE_NAME,
        "USER": user,
        "PASSWORD": "",
        "HOST": server.host,
        "PORT": str(server.port),
    }


def _check_database_reachable(config: dict[str, Any]) -> None:
    import psycopg

    try:
        psycopg.connect(
            dbname=config["NAME"],
            user=config.get("USER") or None,
            password=config.get("PASSWORD") or None,
            host=config.get("HOST") or None,
            port=config.get("PORT") or None,
            connect_timeout=3,
        ).close()
    except psycopg.Error as exc:
        raise ConfigurationError("DATABASE_URL", f"is unreachable ({_first_line(exc)})") from None


def _is_forking_worker() -> bool:
    """django-q2's cluster forks its workers after Django has started. A forked child would
    inherit the pool's open sockets and talk over the parent's sessions (garbled results,
    hangs), so the worker uses plain per-task connections instead."""
    return sys.argv[1:2] == ["qcluster"]


def _checks_enabled() -> bool:
    # Image builds run collectstatic with no servers around.
    return os.environ.get("ROUTIQ_CHECK_SERVICES", "true").lower() not in {"0", "false", "no"}


def _generated_value(path: Path, make: Any) -> str:
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = make()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process of the project wrote it first
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(value)
    return value


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
