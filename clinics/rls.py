"""Row-level security: the database's own wall between tenants (platform-notes.md).

Every table with an `organization_id` column gets ENABLE + FORCE ROW LEVEL SECURITY and one
policy that compares the row's organization with the transaction-local setting `app.org_id`.
An unset setting reads as '' after a transaction, so `nullif(..., '')` makes "no tenant"
match nothing: the policy fails closed.

Work for one tenant runs inside `tenant_scope(org)`. The few jobs that are cross-tenant by
nature (operators in the admin, finding which organization an API key belongs to, a user's
own memberships, the scheduler) use `cross_tenant_scope(reason)`: one explicit, greppable path.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db import connection, transaction

logger = logging.getLogger(__name__)

POLICY = "tenant_isolation"
_MATCH = (
    "(organization_id = nullif(current_setting('app.org_id', true), '')"
    " OR current_setting('app.cross_tenant', true) = 'on')"
)


def enable_sql(table: str) -> str:
    return (
        f'ALTER TABLE "{table}" ENABLE ROW LEVEL SECURITY; '
        f'ALTER TABLE "{table}" FORCE ROW LEVEL SECURITY; '
        f'DROP POLICY IF EXISTS {POLICY} ON "{table}"; '
        f'CREATE POLICY {POLICY} ON "{table}" USING {_MATCH} WITH CHECK {_MATCH};'
    )


def disable_sql(table: str) -> str:
    return (
        f'DROP POLICY IF EXISTS {POLICY} ON "{table}"; '
        f'ALTER TABLE "{table}" NO FORCE ROW LEVEL SECURITY; '
        f'ALTER TABLE "{table}" DISABLE ROW LEVEL SECURITY;'
    )


def rls_operations(*tables: str) -> list[Any]:
    """Migration operations enabling the policy on `tables` (reversible)."""
    from django.db import migrations

    return [migrations.RunSQL(enable_sql(t), reverse_sql=disable_sql(t)) for t in tables]


def _org_id(organization: Any) -> str:
    org_id = organization if isinstance(organization, str) else getattr(organization, "pk", None)
    if not org_id:
        raise ValueError("a tenant scope needs an organization")
    return str(org_id)


_SET_TENANT = "SELECT set_config('app.org_id', %s, true), set_config('app.cross_tenant', '', true)"


def tenant_context_set(organization: Any) -> None:
    """Set the tenant for the current transaction only (never session-wide: pooled
    connections would carry it into the next request)."""
    if not connection.in_atomic_block:
        raise RuntimeError("the tenant can only be set inside a transaction")
    with connection.cursor() as cursor:
        cursor.execute(_SET_TENANT, [_org_id(organization)])


@contextmanager
def tenant_transaction(organization: Any) -> Iterator[None]:
    """A transaction for one organization whose tenant is set just before its first statement
    (of any kind: a savepoint's too, so the setting sits outside every savepoint and no rollback
    to one takes it away). Work that never reaches the database, such as an answer served from
    the cache, then costs no round trip at all: psycopg begins a transaction at its first
    statement and a commit with none begun sends nothing. The tenant is set in the one place
    a statement can pass through, so it cannot be missed."""
    org_id = _org_id(organization)
    pending = True

    def set_first(execute: Any, sql: str, params: Any, many: bool, context: dict[str, Any]) -> Any:  # noqa: FBT001
        nonlocal pending
        if pending:
            pending = False  # before executing: the statement below passes through here too
            with context["connection"].cursor() as cursor:
                cursor.execute(_SET_TENANT, [org_id])
        return execute(sql, params, many, context)

    with transaction.atomic(), connection.execute_wrapper(set_first):
        yield


@contextmanager
def _restoring_outer_scope() -> Iterator[None]:
    """A transaction (or a savepoint in one). A transaction-local setting outlives a released
    savepoint, so a scope nested in another puts the outer one's settings back when it ends;
    when it ends with an exception, rolling back to the savepoint already has."""
    nested = connection.in_atomic_block
    with transaction.atomic():
        outer = None
        if nested:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT current_setting('app.org_id', true), current_setting('app.cross_tenant', true)"
                )
                outer = cursor.fetchone()
        yield
        if outer is not None:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT set_config('app.org_id', %s, true), set_config('app.cross_tenant', %s, true)",
                    [outer[0] or "", outer[1] or ""],
                )


@contextmanager
def tenant_scope(organization: Any) -> Iterator[None]:
    """A transaction in which exactly one organization's rows are visible and writable."""
    with _restoring_outer_scope():
        tenant_context_set(organization)
        yield


@contextmanager
def cross_tenant_scope(reason: str) -> Iterator[None]:
    """A transaction that sees every tenant. Keep these few and say why."""
    with _restoring_outer_scope():
        logger.debug("cross-tenant scope: %s", reason)
        with connection.cursor() as cursor:
            cursor.execute("SELECT set_config('app.cross_tenant', 'on', true)")
        yield
