"""The simulated Cliniko account: a generated clinic in memory, queries, and changes to it.

Records are the synthetic generator's (`sync.synthetic`) served verbatim, except that links
point at the simulator instead of api.au1.cliniko.com. Every change goes through a method
here and stamps `updated_at` with the simulator clock, so incremental sync sees it; a hard
delete leaves no trace at all, which is how the reference says Cliniko behaves.
"""

from __future__ import annotations

import gc
import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sync.pms.cliniko.vocabulary import CANCELLATION_REASONS
from sync.synthetic import SyntheticClinic
from sync.synthetic.catalog import API_ROOT as GENERATOR_API_ROOT

from .clock import NULL, SimClock, epoch_of, iso
from .filters import parse_filters, parse_sort
from .resources import RESOURCES, View
from .tables import Table

OTHER_REASON = 50


class RecordNotFound(KeyError):
    """No such record (never existed, or hard-deleted)."""


class MutationError(ValueError):
    """A change Cliniko would refuse, e.g. cancelling an appointment twice."""


@dataclass(frozen=True)
class Page:
    items: list[bytes]
    total: int


class ClinikoStore:
    """Every resource of one simulated account, thread-safe behind one lock.

    `stamp_state_changes=False` leaves `updated_at` alone when archiving, cancelling,
    deleting or merging (the reference marks "does archiving bump updated_at?" UNVERIFIED),
    so a client has to query the state fields as well to see those changes.
    """

    def __init__(self, clinic: SyntheticClinic, *, api_root: str, clock: SimClock | None = None,
                 stamp_state_changes: bool = True) -> None:
        self.clinic = clinic
        self.api_root = api_root.rstrip("/")
        self.clock = clock or SimClock()
        self.stamp_state_changes = stamp_state_changes
        self.lock = threading.RLock()
        root = self.api_root

        def rewrite(text: str) -> str:
            return text.replace(GENERATOR_API_ROOT, root)

        self.tables: dict[str, Table] = {name: Table(r, rewrite) for name, r in RESOURCES.items()}
        self._appointment_template: dict[str, Any] | None = None
        # Loading makes millions of short-lived objects and keeps none the collector tracks
        # (rows are bytes and arrays), so collection passes during it are pure overhead.
        collecting = gc.isenabled()
        gc.disable()
        try:
            self._load()
        finally:
            if collecting:
                gc.enable()

    def _load(self) -> None:
        clinic, tables = self.clinic, self.tables
        for name in ("businesses", "practitioners", "appointment_types", "billable_items"):
            for record in getattr(clinic, name):
                tables[name].append(record)
        patients, appointments, invoices = (
            tables["patients"].append, tables["individual_appointments"].append,
            tables["invoices"].append)
        for bundle in clinic.iter_patients():
            patients(bundle.patient)
            for record in bundle.appointments:
                appointments(record)
                if self._appointment_template is None:
                    self._appointment_template = record
            for record in bundle.invoices:
                invoices(record)

    # --- reads -----------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        with self.lock:
            return {name: table.live for name, table in self.tables.items()}

    def view(self, resource: str, suffix: str | None) -> View | None:
        spec = RESOURCES.get(resource)
        return None if spec is None else spec.view(suffix)

    def list_page(self, resource: str, suffix: str | None, *, filters: Sequence[str],
                  sort: str | None, order: str | None, page: int, per_page: int) -> Page:
        """One page of a listing. Raises KeyError for an unknown route, QueryError for a
        filter or sort the endpoint refuses."""
        table = self.tables[resource]
        view = table.resource.view(suffix)
        if view is None:
            raise KeyError(suffix)
        allowed = view.filterable if view.filterable is not None else table.resource.filterable
        predicates = parse_filters(filters, table.resource, allowed)
        keys = parse_sort(sort, order, table.resource, allowed)
        with self.lock:
            rows = table.select(view, predicates, keys)
            start = (page - 1) * per_page
            chosen = rows[start:start + per_page]
            if view.stub:
                items = [self._stub(table, row) for row in chosen]
            else:
                items = [table.blobs[row] for row in chosen]  # type: ignore[misc]
            return Page(items, len(rows))

    def _stub(self, table: Table, row: int) -> bytes:
        deleted = table.columns["deleted_at"][row]
        body = {"deleted_at": None if deleted == NULL else iso(deleted),
                "links": {"self": f"{self.api_root}/{table.resource.name}/{table.ids[row]}"}}
        return json.dumps(body, separators=(",", ":")).encode()

    def get_blob(self, resource: str, record_id: str, *, filters: Sequence[str]) -> bytes | None:
        """A single record as `GET /<resource>/<id>` serves it, or None (404). Rows hidden
        from the main listing (archived, cancelled, deleted) need a `q[]` on that state field,
        as the single-record endpoints of the 2023 spec accept; practitioners of either
        state are found."""
        table = self.tables[resource]
        predicates = parse_filters(filters, table.resource, table.resource.single_filters)
        if not record_id.isdigit():
            return None
        with self.lock:
            row = table.row_of(int(record_id))
            if row is None or not table.visible(row, View(), predicates):
                return None
            return table.blobs[row]

    def record(self, resource: str, record_id: str | int) -> dict[str, Any]:
        """A record as stored, whatever its state (for tests and the admin API)."""
        with self.lock:
            table, row = self._locate(resource, record_id)
            return table.record(row)

    def ids(self, resource: str) -> list[str]:
        """Every stored id of a resource (any state), in id order."""
        with self.lock:
            table = self.tables[resource]
            return [str(i) for i, blob in zip(table.ids, table.blobs, strict=True) if blob is not None]

    # --- changes ---------------------------------------------------------------------------
    def add_patient(self, **fields: Any) -> dict[str, Any]:
        """A new patient, shaped like a generated one (a copy of an existing patient's
        details unless `fields` say otherwise), created now."""
        with self.lock:
            table = self.tables["patients"]
            new_id = table.next_id()
            template = self.clinic.patient_bundle(new_id % self.clinic.spec.patients).patient
            record = json.loads(table.encode(template))
            now = self.clock.now_iso()
            url = f"{self.api_root}/patients/{new_id}"
            record.update({
                "id": str(new_id), "created_at": now, "updated_at": now,
                "archived_at": None, "deleted_at": None,
                "medical_alerts": _link(f"{url}/medical_alerts?page=1"),
                "invoices": _link(f"{url}/invoices?page=1"),
                "appointments": _link(f"{url}/appointments?page=1"),
                "links": {"self": url},
            })
            record.update(fields)
            table.append(record)
            return record

    def add_appointment(self, patient_id: str | int, *, starts_at: str | None = None,
                        practitioner_id: str | int | None = None,
                        appointment_type_id: str | int | None = None,
                        business_id: str | int | None = None, **fields: Any) -> dict[str, Any]:
        """A new individual appointment for an existing patient, booked now. Defaults: the
        first active practitioner, first business and first live appointment type, starting
        tomorrow on the hour; it ends after the type's duration."""
        with self.lock:
            patient = self.record("patients", patient_id)
            kind = self._pick("appointment_types", appointment_type_id)
            practitioner = self._pick("practitioners", practitioner_id)
            business = self._pick("businesses", business_id)
            table = self.tables["individual_appointments"]
            new_id = table.next_id()
            now = self.clock.now()
            start = (datetime.fromisoformat(starts_at.replace("Z", "+00:00")) if starts_at else
                     datetime.fromtimestamp(now, UTC).replace(minute=0, second=0, microsecond=0)
                     + timedelta(days=1))
            end = start + timedelta(minutes=int(kind["duration_in_minutes"]))
            url = f"{self.api_root}/individual_appointments/{new_id}"
            record = json.loads(table.encode(self._appointment_template or {}))
            record.update({
                "id": str(new_id), "created_at": iso(now), "updated_at": iso(now),
                "archived_at": None, "deleted_at": None, "cancelled_at": None,
                "booking_ip_address": None, "cancellation_note": None, "cancellation_reason": None,
                "cancellation_reason_description": "", "did_not_arrive": False,
                "email_reminder_sent": False, "sms_reminder_sent": False, "invoice_status": None,
                "notes": None, "online_booking_policy_accepted": None, "patient_arrived": False,
                "patient_name": f"{patient['first_name']} {patient['last_name']}",
                "treatment_note_status": None,
                "starts_at": iso(start.timestamp()), "ends_at": iso(end.timestamp()),
                "appointment_type": _link(kind["links"]["self"]),
                "business": _link(business["links"]["self"]),
                "practitioner": _link(practitioner["links"]["self"]),
                "patient": _link(patient["links"]["self"]),
                "conflicts": _link(f"{url}/conflicts"), "attendees": _link(f"{url}/attendees"),
                "links": {"self": url},
            })
            record.update(fields)
            table.append(record)
            return record

    def edit(self, resource: str, record_id: str | int, **fields: Any) -> dict[str, Any]:
        """Change top-level fields of a record and stamp `updated_at` (unless `fields` sets
        it). A practitioner edited to `active=False` moves to /practitioners/inactive."""
        if "id" in fields or "links" in fields:
            raise MutationError("id and links cannot be edited")
        with self.lock:
            table, row = self._locate(resource, record_id)
            record = table.record(row)
            record["updated_at"] = self._stamp(record)
            record.update(fields)
            table.replace(row, record)
            return record

    def deactivate_practitioner(self, practitioner_id: str | int) -> dict[str, Any]:
        return self.edit("practitioners", practitioner_id, active=False, show_in_online_bookings=False)

    def cancel_appointment(self, appointment_id: str | int, *, reason: int = OTHER_REASON,
                           note: str | None = None) -> dict[str, Any]:
        """Cancel once (Cliniko cancellations are one-way; issue #289)."""
        if reason not in CANCELLATION_REASONS:
            raise MutationError(f"unknown cancellation reason {reason}")
        with self.lock:
            table, row = self._locate("individual_appointments", appointment_id)
            record = table.record(row)
            if record.get("cancelled_at"):
                raise MutationError("appointment is already cancelled; cancellation is one-way")
            stamp = self._stamp(record)
            record.update(cancelled_at=stamp, cancellation_reason=reason, cancellation_note=note,
                          cancellation_reason_description=CANCELLATION_REASONS[reason])
            self._state_change(table, row, record, stamp)
            return record

    def archive(self, resource: str, record_id: str | int) -> dict[str, Any]:
        return self._set_state(resource, record_id, "archived_at", on=True)

    def unarchive(self, resource: str, record_id: str | int) -> dict[str, Any]:
        return self._set_state(resource, record_id, "archived_at", on=False)

    def soft_delete(self, resource: str, record_id: str | int) -> dict[str, Any]:
        """Set `deleted_at`, as deleting in Cliniko's UI does; the row leaves the listings
        and shows on `/…/deleted` and with `q[]=deleted_at:*`."""
        return self._set_state(resource, record_id, "deleted_at", on=True)

    def merge_patients(self, source_id: str | int, target_id: str | int) -> dict[str, Any]:
        """Merge `source` into `target`: the source is archived with `merged_at` and a
        `merged_with_patient` link (reference §4.3); its appointments and invoices move to
        the target (an assumption: the reference does not say) with `updated_at` stamped."""
        with self.lock:
            patients, source_row = self._locate("patients", source_id)
            _, target_row = self._locate("patients", target_id)
            if source_row == target_row:
                raise MutationError("a patient cannot be merged into itself")
            source, target = patients.record(source_row), patients.record(target_row)
            if source.get("merged_at"):
                raise MutationError("patient is already merged")
            stamp = self._stamp(source)
            source.update(archived_at=stamp, merged_at=stamp,
                          merged_with_patient=_link(target["links"]["self"]))
            self._state_change(patients, source_row, source, stamp)
            target["updated_at"] = self._stamp(target)
            patients.replace(target_row, target)
            moved = {name: self._move_to(name, int(source["id"]), target)
                     for name in ("individual_appointments", "invoices")}
            return {"merged": source, "kept": target, "moved": moved}

    def hard_delete(self, resource: str, record_id: str | int, *, cascade: bool = True) -> int:
        """Remove a record for good (no deleted_at, no listing, 404 by id). For a patient
        with `cascade`, their appointments and invoices go too. Returns rows removed."""
        with self.lock:
            table, row = self._locate(resource, record_id)
            table.purge(row)
            removed = 1
            if resource == "patients" and cascade:
                for name in ("individual_appointments", "invoices"):
                    child = self.tables[name]
                    for child_row in child.rows_where("patient_id", int(record_id)):
                        child.purge(child_row)
                        removed += 1
            return removed

    # --- helpers ---------------------------------------------------------------------------
    def _locate(self, resource: str, record_id: str | int) -> tuple[Table, int]:
        table = self.tables.get(resource)
        if table is None:
            raise RecordNotFound(f"unknown resource {resource!r}")
        row = table.row_of(int(record_id)) if str(record_id).isdigit() else None
        if row is None:
            raise RecordNotFound(f"{resource}/{record_id}")
        return table, row

    def _pick(self, resource: str, record_id: str | int | None) -> dict[str, Any]:
        if record_id is not None:
            return self.record(resource, record_id)
        table = self.tables[resource]
        rows = table.select(table.resource.views[0], [], (("id", False),))
        if not rows:
            raise MutationError(f"no live {resource} to book with")
        return table.record(rows[0])

    def _stamp(self, record: dict[str, Any]) -> str:
        """Now on the simulator clock, but never before the record's own `updated_at`."""
        return iso(max(int(self.clock.now()), epoch_of(record.get("updated_at"))))

    def _state_change(self, table: Table, row: int, record: dict[str, Any], stamp: str) -> None:
        if self.stamp_state_changes:
            record["updated_at"] = stamp
        table.replace(row, record)

    def _set_state(self, resource: str, record_id: str | int, field: str, *, on: bool) -> dict[str, Any]:
        with self.lock:
            table, row = self._locate(resource, record_id)
            if field not in table.resource.by_name:
                raise MutationError(f"{resource} have no {field}")
            record = table.record(row)
            stamp = self._stamp(record)
            record[field] = stamp if on else None
            self._state_change(table, row, record, stamp)
            return record

    def _move_to(self, resource: str, source_id: int, target: dict[str, Any]) -> int:
        table = self.tables[resource]
        rows = table.rows_where("patient_id", source_id)
        for row in rows:
            record = table.record(row)
            record["patient"] = _link(target["links"]["self"])
            if "patient_name" in record:
                record["patient_name"] = f"{target['first_name']} {target['last_name']}"
            record["updated_at"] = self._stamp(record)
            table.replace(row, record)
        return len(rows)


def _link(url: str) -> dict[str, Any]:
    return {"links": {"self": url}}
