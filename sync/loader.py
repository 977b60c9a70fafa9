"""Bulk loading of Cliniko-shaped records into an organization that has none of them yet.

The demo clinic and benchmarks load up to a million appointments; per-row INSERTs would take
minutes, so rows go in with COPY, primary keys reserved from the sequences up front so that
appointments and invoices can point at their patients without reading anything back.
The incremental, upserting path for real syncs is the sync engine's, not this.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from itertools import islice
from typing import Any

from django.db import connection, models, transaction
from django.utils import timezone
from psycopg.types.json import Jsonb

from clinics.models import Location, Organization
from clinics.tenancy import PmsKind, table_statistics_refresh
from patients.models import Appointment, AppointmentType, Invoice, Patient, Practitioner
from sync.pms.cliniko import mapper


@dataclass
class LoadResult:
    locations: int = 0
    practitioners: int = 0
    appointment_types: int = 0
    patients: int = 0
    appointments: int = 0
    invoices: int = 0


class OrganizationNotEmpty(Exception):
    pass


@dataclass
class _Refs:
    locations: dict[str, int]
    practitioners: dict[str, int]
    appointment_types: dict[str, int]


def clinic_load(
    organization: Organization,
    *,
    businesses: list[dict[str, Any]],
    practitioners: list[dict[str, Any]],
    appointment_types: list[dict[str, Any]],
    prices: dict[str, Decimal],
    bundles: Iterable[Any],
    batch_size: int = 1000,
    progress: Callable[[LoadResult], None] | None = None,
) -> LoadResult:
    """Load a whole clinic in one transaction: all of it lands, or none of it."""
    if Patient.objects.for_org(organization).exists():
        raise OrganizationNotEmpty(f"{organization.pk} already has patients")
    result = LoadResult()
    now = timezone.now()
    with transaction.atomic():
        refs = _load_reference_data(
            organization, businesses, practitioners, appointment_types, prices, now, result
        )
        iterator = iter(bundles)
        while batch := list(islice(iterator, batch_size)):
            _load_batch(organization, batch, refs, now, result)
            if progress:
                progress(result)
    # Once committed, as a sync does after its first thousand records: the planner must know the
    # tables are no longer empty (autovacuum may be off, or not yet around), or the profile
    # refresh that follows expects 30 patients and loops over 50,000.
    for model in (Patient, Appointment, Invoice):
        table_statistics_refresh(model)
    return result


def synthetic_clinic_load(
    organization: Organization,
    *,
    clinic: Any,
    batch_size: int = 1000,
    progress: Callable[[LoadResult], None] | None = None,
) -> LoadResult:
    """Load a `sync.synthetic.SyntheticClinic` (demo clinics, benchmarks, tests)."""
    return clinic_load(
        organization,
        businesses=clinic.businesses,
        practitioners=clinic.practitioners,
        appointment_types=clinic.appointment_types,
        prices=clinic.appointment_type_prices(),
        bundles=clinic.iter_patients(),
        batch_size=batch_size,
        progress=progress,
    )


def _load_reference_data(
    organization: Organization,
    businesses: list[dict[str, Any]],
    practitioners: list[dict[str, Any]],
    appointment_types: list[dict[str, Any]],
    prices: dict[str, Decimal],
    now: datetime,
    result: LoadResult,
) -> _Refs:
    def create(model: type[models.Model], mapped: list[mapper.Mapped]) -> dict[str, int]:
        rows = model.objects.bulk_create(
            model(
                organization=organization,
                pms=PmsKind.CLINIKO,
                external_id=m.external_id,
                last_synced_at=now,
                pms_refs=m.pms_refs,
                **m.fields,
            )
            for m in mapped
        )
        return {row.external_id: row.pk for row in rows}

    refs = _Refs(
        locations=create(Location, [mapper.map_business(b) for b in businesses]),
        practitioners=create(Practitioner, [mapper.map_practitioner(p) for p in practitioners]),
        appointment_types=create(
            AppointmentType,
            [mapper.map_appointment_type(t, price=prices.get(str(t["id"]))) for t in appointment_types],
        ),
    )
    result.locations, result.practitioners = len(refs.locations), len(refs.practitioners)
    result.appointment_types = len(refs.appointment_types)
    return refs


def _load_batch(
    organization: Organization, batch: list[Any], refs: _Refs, now: datetime, result: LoadResult
) -> None:
    patients = [mapper.map_patient(b.patient, country=organization.country) for b in batch]
    appointments = [mapper.map_appointment(a) for b in batch for a in b.appointments]
    invoices = [mapper.map_invoice(i) for b in batch for i in b.invoices]

    patient_ids = dict(
        zip((p.external_id for p in patients), _reserve_ids(Patient, len(patients)), strict=True)
    )
    appointment_ids = dict(
        zip((a.external_id for a in appointments), _reserve_ids(Appointment, len(appointments)), strict=True)
    )
    common = {"organization_id": organization.pk, "pms": PmsKind.CLINIKO, "last_synced_at": now}

    _copy(
        Patient,
        (
            {
                **common,
                "id": patient_ids[p.external_id],
                "external_id": p.external_id,
                "pms_refs": p.pms_refs,
                **p.fields,
            }
            for p in patients
        ),
    )
    _copy(
        Appointment,
        (
            {
                **common,
                "id": appointment_ids[a.external_id],
                "external_id": a.external_id,
                "pms_refs": a.pms_refs,
                **a.fields,
                "patient_id": patient_ids.get(a.refs["patient"] or ""),
                "practitioner_id": refs.practitioners.get(a.refs["practitioner"] or ""),
                "appointment_type_id": refs.appointment_types.get(a.refs["appointment_type"] or ""),
                "location_id": refs.locations.get(a.refs["location"] or ""),
            }
            for a in appointments
        ),
    )
    _copy(
        Invoice,
        (
            {
                **common,
                "id": new_id,
                "external_id": i.external_id,
                "pms_refs": i.pms_refs,
                **i.fields,
                "patient_id": patient_ids.get(i.refs["patient"] or ""),
                "appointment_id": appointment_ids.get(i.refs["appointment"] or ""),
                "practitioner_id": refs.practitioners.get(i.refs["practitioner"] or ""),
                "location_id": refs.locations.get(i.refs["location"] or ""),
            }
            for i, new_id in zip(invoices, _reserve_ids(Invoice, len(invoices)), strict=True)
        ),
    )
    result.patients += len(patients)
    result.appointments += len(appointments)
    result.invoices += len(invoices)


def _reserve_ids(model: type[models.Model], count: int) -> list[int]:
    if count == 0:
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)",
            [model._meta.db_table, count],
        )
        return [row[0] for row in cursor.fetchall()]


def _copy(model: type[models.Model], rows: Iterator[dict[str, Any]]) -> None:
    """COPY into a temporary staging table, then one INSERT ... SELECT into the real one.

    PostgreSQL refuses COPY FROM into a table with row-level security; the staging table has
    none, and the INSERT still passes every row through the tenant policy's WITH CHECK.
    """
    fields = [f for f in model._meta.concrete_fields]
    table = model._meta.db_table
    staging = f"_load_{table}"
    columns = ", ".join(f'"{f.column}"' for f in fields)
    adapters = [_adapter(f) for f in fields]
    names = [f.attname for f in fields]
    defaults = [f.get_default() if f.has_default() else None for f in fields]
    with connection.cursor() as cursor:
        cursor.execute(
            f'CREATE TEMP TABLE IF NOT EXISTS "{staging}" (LIKE "{table}" INCLUDING DEFAULTS) ON COMMIT DROP'
        )
        raw = cursor.cursor  # the psycopg cursor under Django's wrapper
        with raw.copy(f'COPY "{staging}" ({columns}) FROM STDIN') as copy:
            for row in rows:
                copy.write_row(
                    [
                        adapt(row.get(name, default))
                        for name, default, adapt in zip(names, defaults, adapters, strict=True)
                    ]
                )
        cursor.execute(f'INSERT INTO "{table}" ({columns}) SELECT {columns} FROM "{staging}"')
        cursor.execute(f'TRUNCATE "{staging}"')


def _adapter(field: models.Field) -> Callable[[Any], Any]:
    if isinstance(field, models.JSONField):
        return lambda value: Jsonb(value)
    if isinstance(field, models.CharField | models.TextField) and not field.null:
        return lambda value: "" if value is None else value
    return lambda value: value
