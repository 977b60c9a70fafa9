"""The two database roles row-level security needs (platform-notes.md).

- `routiq_owner` owns the schema and runs migrations.
- `routiq_app` is what the product connects as: not the owner, not a superuser, no
  BYPASSRLS, so every policy applies to it.

The embedded server is provisioned automatically; for an external server an administrator
runs the SQL from `manage.py db_roles --print-sql` (see the README).
"""

from __future__ import annotations

OWNER_ROLE = "routiq_owner"
APP_ROLE = "routiq_app"


def cluster_sql(*, owner: str = OWNER_ROLE, app: str = APP_ROLE, database: str) -> list[str]:
    """Statements run as a superuser (or CREATEROLE holder), connected to any database."""
    return [
        _create_role(owner, "LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEROLE"),
        _create_role(app, "LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEROLE NOCREATEDB"),
        f'ALTER DATABASE "{database}" OWNER TO {owner}',
    ]


def database_sql(*, owner: str = OWNER_ROLE, app: str = APP_ROLE) -> list[str]:
    """Statements run as a superuser connected to the project's database."""
    return [
        f"ALTER SCHEMA public OWNER TO {owner}",
        # Tables made before the roles existed (an older development database) change hands.
        f"""DO $$ DECLARE t record; BEGIN
            FOR t IN SELECT tablename FROM pg_tables
                     WHERE schemaname = 'public' AND tableowner <> '{owner}' LOOP
                EXECUTE format('ALTER TABLE public.%I OWNER TO {owner}', t.tablename);
            END LOOP; END $$""",
        f"GRANT USAGE ON SCHEMA public TO {app}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {app}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {app}",
        f"ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public "
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {app}",
        f"ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public "
        f"GRANT USAGE, SELECT ON SEQUENCES TO {app}",
    ]


def _create_role(name: str, attributes: str) -> str:
    return (
        f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{name}') THEN "
        f"CREATE ROLE {name} {attributes}; ELSE ALTER ROLE {name} {attributes}; "
        f"END IF; END $$"
    )
