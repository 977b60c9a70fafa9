"""Writing one page of PMS records: one upsert statement per page, no per-row round trips.

The page goes to PostgreSQL as one JSON document (`jsonb_to_recordset` types every column),
related rows are found by a join on their PMS ids, and `INSERT ... ON CONFLICT DO UPDATE`
applies a record only when it is not older than the stored row (`updated_at`) and actually
differs from it, so re-reading a page is harmless and an older copy never overwrites a newer
one. What the PMS said a row points at is kept in `pms_refs`; a row whose target was not here
yet is linked when the target arrives (`_link_waiting`).

Anonymised patients keep their erased personal fields whatever the PMS sends
(`patients.privacy.PERSONAL_FIELDS`). A record that cannot be mapped or stored is quarantined
with its raw payload, counted as failed, and the page goes on without it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from functools import cache
from typing import Any

from django.db import DataError, IntegrityError, connection, models, transaction

from clinics.models import Location, Organization, PmsConnection
from clinics.tenancy import table_statistics_refresh
from patients.models import Appointment, AppointmentType, Invoice, Patient, Practitioner
from patients.privacy import PERSONAL_FIELDS
from sync.models import QuarantinedRecord, ReconciliationSeen
from sync.pms import base
from sync.pms.cliniko.mapper import Mapped, MappingError

logger = logging.getLogger(__name__)

# Columns the sync never writes: identity, tenancy, and what Routiq itself decides.
_NOT_SYNCED = {"id", "organization", "pms", "external_id", "last_synced_at", "anonymised_at"}


@dataclass(frozen=True)
class Target:
    """Where one normalised resource is stored, and which of its refs are foreign keys."""

    resource: str
    model: type[models.Model]
    links: tuple[tuple[str, type[models.Model]], ...] = ()


TARGETS: dict[str, Target] = {
    base.LOCATION: Target(base.LOCATION, Location),
    base.PRACTITIONER: Target(base.PRACTITIONER, Practitioner),
    base.APPOINTMENT_TYPE: Target(base.APPOINTMENT_TYPE, AppointmentType),
    base.PATIENT: Target(base.PATIENT, Patient),
    base.APPOINTMENT: Target(
        base.APPOINTMENT,
        Appointment,
        (
            ("patient", Patient),
            ("practitioner", Practitioner),
            ("appointment_type", AppointmentType),
            ("location", Location),
        ),
    ),
    base.INVOICE: Target(
        base.INVOICE,
        Invoice,
        (
            ("patient", Patient),
            ("appointment", Appointment),
            ("practitioner", Practitioner),
            ("location", Location),
        ),
    ),
}
# Rows that point at a resource, by the resource pointed at: (target, ref name).
_POINTED_AT_BY: dict[type[models.Model], list[tuple[Target, str]]] = {}
for _target in TARGETS.values():
    for _ref, _model in _target.links:
        _POINTED_AT_BY.setdefault(_model, []).append((_target, _ref))


def refresh_statistics(resource_or_model: str | type[models.Model]) -> None:
    """Fresh planner statistics for a table this sync has just filled (or the ids a full pass
    listed): without them lookups by PMS id read the whole organization per row."""
    model = TARGETS[resource_or_model].model if isinstance(resource_or_model, str) else resource_or_model
    table_statistics_refresh(model)


def pointed_at_by(model: type[models.Model]) -> list[tuple[Target, str]]:
    """The (target, ref) pairs whose rows hold a foreign key to `model`."""
    return list(_POINTED_AT_BY.get(model, []))


@dataclass
class PageResult:
    fetched: int = 0
    created: list[int] = field(default_factory=list)
    updated: list[int] = field(default_factory=list)
    unchanged: int = 0
    archived: int = 0
    failed: int = 0
    # Patients whose row, appointments or invoices this page changed.
    patient_ids: set[int] = field(default_factory=set)

    def counts(self) -> dict[str, int]:
        return {
            "fetched": self.fetched,
            "created": len(self.created),
            "updated": len(self.updated),
            "unchanged": self.unchanged,
            "archived": self.archived,
            "failed": self.failed,
        }


@dataclass(frozen=True)
class _Column:
    name: str  # column name
    attname: str  # key in the mapped fields
    sql_type: str
    default: Any
    max_length: int | None
    personal: bool


@cache
def _columns(model: type[models.Model]) -> tuple[_Column, ...]:
    personal = set(PERSONAL_FIELDS) if model is Patient else set()
    columns = []
    for f in model._meta.concrete_fields:
        if f.name in _NOT_SYNCED or f.is_relation:
            continue
        columns.append(
            _Column(
                name=f.column,
                attname=f.attname,
                sql_type=f.db_type(connection),
                default=f.get_default() if f.has_default() else None,
                max_length=getattr(f, "max_length", None) if isinstance(f, models.CharField) else None,
                personal=f.name in personal,
            )
        )
    return tuple(columns)


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@cache
def _upsert_sql(target: Target) -> str:
    model = target.model
    table = _q(model._meta.db_table)
    columns = _columns(model)
    record_type = ", ".join(
        [f"{_q('external_id')} varchar(64)"] + [f"{_q(c.name)} {c.sql_type}" for c in columns]
    )
    fk_columns = [model._meta.get_field(ref).column for ref, _ in target.links]
    # Every lookup is a correlated subquery on a unique key: an index probe per row whatever
    # the planner believes about the table (a table filled by this very sync has no statistics,
    # and a join planned from them reads the whole organization on every page).
    fk_values = [
        f"(SELECT l.id FROM {_q(linked._meta.db_table)} l WHERE l.organization_id = %(org)s"
        f" AND l.pms = %(pms)s AND l.external_id = s.pms_refs ->> '{ref}')"
        for ref, linked in target.links
    ]
    insert_columns = [
        "organization_id",
        "pms",
        "external_id",
        *[c.name for c in columns],
        *fk_columns,
        "last_synced_at",
    ]
    select_values = [
        "%(org)s",
        "%(pms)s",
        "s.external_id",
        *[f"s.{_q(c.name)}" for c in columns],
        *fk_values,
        "%(now)s",
    ]

    def new_value(column: str, personal: bool) -> str:  # noqa: FBT001
        if personal:
            return f"CASE WHEN t.anonymised_at IS NULL THEN EXCLUDED.{_q(column)} ELSE t.{_q(column)} END"
        return f"EXCLUDED.{_q(column)}"

    compared = [(c.name, c.personal) for c in columns] + [(c, False) for c in fk_columns]
    assignments = [f"{_q(name)} = {new_value(name, personal)}" for name, personal in compared]
    old_row = ", ".join(f"t.{_q(name)}" for name, _ in compared)
    new_row = ", ".join(new_value(name, personal) for name, personal in compared)
    if model is Patient:
        returning_patient = ", t.id AS patient_id"
    elif "patient" in dict(target.links):
        returning_patient = ", t.patient_id"
    else:
        returning_patient = ", NULL::bigint AS patient_id"
    return f"""
WITH incoming AS (
    SELECT * FROM jsonb_to_recordset(%(rows)s::jsonb) AS s({record_type})
),
before AS (
    SELECT s.external_id, (
        SELECT t.archived_at IS NOT NULL OR t.deleted_at IS NOT NULL FROM {table} t
        WHERE t.organization_id = %(org)s AND t.pms = %(pms)s AND t.external_id = s.external_id
    ) AS was_gone
    FROM incoming s
),
written AS (
    INSERT INTO {table} AS t ({", ".join(_q(c) for c in insert_columns)})
    SELECT {", ".join(select_values)}
    FROM incoming s
    ON CONFLICT (organization_id, pms, external_id) DO UPDATE SET
        {", ".join(assignments)}, last_synced_at = EXCLUDED.last_synced_at
    WHERE coalesce(EXCLUDED.pms_updated_at >= t.pms_updated_at, t.pms_updated_at IS NULL)
      AND ({old_row}) IS DISTINCT FROM ({new_row})
    RETURNING t.id, t.external_id, (t.xmax = 0) AS created,
              (t.archived_at IS NOT NULL OR t.deleted_at IS NOT NULL) AS gone{returning_patient}
)
SELECT w.id, w.external_id, w.created, w.gone AND NOT coalesce(b.was_gone, false), w.patient_id
FROM written w LEFT JOIN before b USING (external_id)
"""


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__} from a PMS record")


def _row(mapped: Mapped, columns: tuple[_Column, ...]) -> dict[str, Any]:
    values = mapped.fields
    row: dict[str, Any] = {"external_id": mapped.external_id}
    for column in columns:
        if column.attname == "pms_refs":
            row["pms_refs"] = mapped.pms_refs
            continue
        value = values.get(column.attname, column.default)
        if isinstance(value, str):
            # PostgreSQL text cannot hold NUL; no PMS field means anything by one.
            value = value.replace("\x00", "")
            if column.max_length is not None and len(value) > column.max_length:
                raise MappingError(f"{column.attname} is longer than {column.max_length} characters")
        row[column.name] = value
    return row


class PageWriter:
    """Writes pages of one resource of one connection (inside the caller's tenant transaction)."""

    def __init__(
        self,
        *,
        organization: Organization,
        connection: PmsConnection,
        adapter: base.PmsAdapter,
        run_id: int | None,
        now: datetime,
    ) -> None:
        self.organization = organization
        self.connection = connection
        self.adapter = adapter
        self.run_id = run_id
        self.now = now
        self.pms = connection.kind
        # Whether this connection has quarantine entries to release; looked up on the first
        # page, inside the tenant transaction (row-level security hides them outside one).
        self._quarantine_open: bool | None = None

    def write(self, resource: str, items: list[dict[str, Any]]) -> PageResult:
        target = TARGETS[resource]
        result = PageResult(fetched=len(items))
        rows: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
        columns = _columns(target.model)
        for payload in items:
            try:
                mapped = self.adapter.map(resource, payload)
                row = _row(mapped, columns)
            except Exception as exc:  # any payload the mapper cannot read: quarantined, never fatal
                reason = (
                    str(exc) if isinstance(exc, MappingError) else f"unreadable record ({type(exc).__name__})"
                )
                self._quarantine(resource, payload, reason)
                result.failed += 1
                continue
            earlier = rows.get(mapped.external_id)
            # The same record twice on one page (never from Cliniko; possible from a PMS that
            # pages loosely): keep the newer copy, since one statement cannot write a row twice.
            if earlier is None or _newer(row, earlier[0]):
                rows[mapped.external_id] = (row, payload)
        refused: set[str] = set()
        if rows:
            refused = self._write_rows(target, list(rows.values()), result)
        result.unchanged = result.fetched - result.failed - len(result.created) - len(result.updated)
        stored = [external_id for external_id in rows if external_id not in refused]
        if stored and self._has_quarantine():
            self._release_quarantine(resource, stored)
        return result

    def _has_quarantine(self) -> bool:
        if self._quarantine_open is None:
            self._quarantine_open = (
                QuarantinedRecord.objects.for_org(self.organization)
                .filter(connection=self.connection)
                .exists()
            )
        return self._quarantine_open

    def _write_rows(
        self, target: Target, rows: list[tuple[dict[str, Any], dict[str, Any]]], result: PageResult
    ) -> set[str]:
        """Write the rows; the external ids of those the database refused (quarantined)."""
        refused: set[str] = set()
        try:
            with transaction.atomic():
                returned = self._execute(target, [row for row, _ in rows])
        except (DataError, IntegrityError) as exc:
            # One bad row fails the statement: find it row by row, quarantine it, keep the rest.
            logger.warning(
                "page of %s failed as a whole (%s); writing it row by row",
                target.resource,
                type(exc).__name__,
            )
            returned = []
            for row, payload in rows:
                try:
                    with transaction.atomic():
                        returned += self._execute(target, [row])
                except (DataError, IntegrityError) as row_error:
                    self._quarantine(target.resource, payload, _database_message(row_error))
                    refused.add(row["external_id"])
                    result.failed += 1
        created_external_ids = []
        for row_id, external_id, created, newly_gone, patient_id in returned:
            (result.created if created else result.updated).append(row_id)
            if created:
                created_external_ids.append(external_id)
            if newly_gone:
                result.archived += 1
            if patient_id is not None:
                result.patient_ids.add(patient_id)
        if created_external_ids:
            result.patient_ids.update(self._link_waiting(target.model, created_external_ids))
        return refused

    def _execute(self, target: Target, rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        params = {
            "rows": json.dumps(rows, default=_json_default, separators=(",", ":")),
            "org": self.organization.pk,
            "pms": self.pms,
            "now": self.now,
        }
        with connection.cursor() as cursor:
            cursor.execute(_upsert_sql(target), params)
            return cursor.fetchall()

    def _link_waiting(self, model: type[models.Model], external_ids: list[str]) -> set[int]:
        """Rows that named one of these new rows before it was here now point at it; the
        patients of rows that gained a link are returned. The WHERE clause is the partial
        index of rows waiting for their patient or appointment (`..._unlinked_...`)."""
        touched: set[int] = set()
        for target, ref in _POINTED_AT_BY.get(model, []):
            fk = target.model._meta.get_field(ref).column
            patient = "a.patient_id" if "patient" in dict(target.links) else "NULL::bigint"
            with connection.cursor() as cursor:
                cursor.execute(
                    f"UPDATE {_q(target.model._meta.db_table)} a SET {_q(fk)} = ("
                    f" SELECT r.id FROM {_q(model._meta.db_table)} r WHERE r.organization_id = %(org)s"
                    f" AND r.pms = %(pms)s AND r.external_id = a.pms_refs ->> '{ref}')"
                    f" WHERE a.organization_id = %(org)s AND a.{_q(fk)} IS NULL"
                    f" AND (a.pms_refs ->> '{ref}') = ANY(%(ids)s) AND a.pms = %(pms)s"
                    f" RETURNING {patient}",
                    {"org": self.organization.pk, "pms": self.pms, "ids": external_ids},
                )
                touched.update(row[0] for row in cursor.fetchall() if row[0] is not None)
        return touched

    # --- quarantine -------------------------------------------------------------------------
    def _quarantine(self, resource: str, payload: Any, error: str) -> None:
        external_id = _payload_id(payload)
        # The error text may quote a field's value (personal data): it goes to the table, not the log.
        logger.warning("quarantined %s %s", resource, external_id or "(no id)")
        params = {
            "org": self.organization.pk,
            "connection": self.connection.pk,
            "resource": resource,
            "external_id": external_id.replace("\x00", ""),
            # jsonb cannot hold U+0000; everything else is kept exactly as the PMS sent it.
            "payload": json.dumps(payload, default=str).replace("\\u0000", "\\ufffd"),
            "error": error[:500],
            "run": self.run_id,
        }
        table = _q(QuarantinedRecord._meta.db_table)
        columns = (
            "organization_id, connection_id, resource, external_id, payload, error, run_id,"
            " first_seen_at, last_seen_at, times_seen"
        )
        values = (
            "%(org)s, %(connection)s, %(resource)s, %(external_id)s, %(payload)s::jsonb, %(error)s,"
            " %(run)s, now(), now(), 1"
        )
        with transaction.atomic(), connection.cursor() as cursor:
            if external_id:
                cursor.execute(
                    f"INSERT INTO {table} ({columns}) VALUES ({values})"
                    " ON CONFLICT (organization_id, connection_id, resource, external_id)"
                    " WHERE external_id <> ''"
                    " DO UPDATE SET payload = EXCLUDED.payload, error = EXCLUDED.error,"
                    " run_id = EXCLUDED.run_id,"
                    f" last_seen_at = now(), times_seen = {table}.times_seen + 1",
                    params,
                )
            else:
                cursor.execute(f"INSERT INTO {table} ({columns}) VALUES ({values})", params)
        self._quarantine_open = True

    def _release_quarantine(self, resource: str, external_ids: list[str]) -> None:
        QuarantinedRecord.objects.for_org(self.organization).filter(
            connection=self.connection, resource=resource, external_id__in=external_ids
        ).delete()

    # --- full passes --------------------------------------------------------------------------
    def mark_seen(self, cursor_id: int, items: Iterable[dict[str, Any]]) -> None:
        """Remember which ids a full pass listed (quarantined ones too: they exist in the PMS)."""
        ids = sorted({_payload_id(item) for item in items} - {""})
        if not ids:
            return
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {_q(ReconciliationSeen._meta.db_table)}"
                " (organization_id, cursor_id, external_id)"
                " SELECT %s, %s, unnest(%s::varchar(64)[]) ON CONFLICT DO NOTHING",
                [self.organization.pk, cursor_id, ids],
            )


def _payload_id(payload: Any) -> str:
    """The PMS id of a raw record (Cliniko `id`, Nookal `ID`), "" when it has none."""
    if not isinstance(payload, dict):
        return ""
    return str(payload.get("id") or payload.get("ID") or "")[:64]


def _newer(row: dict[str, Any], other: dict[str, Any]) -> bool:
    mine, theirs = row.get("pms_updated_at"), other.get("pms_updated_at")
    return theirs is None or (mine is not None and mine >= theirs)


def _database_message(error: Exception) -> str:
    # The first line only: PostgreSQL's DETAIL may quote the row's values (personal data).
    return f"the database refused the record: {str(error).splitlines()[0][:300]}"
