"""Which Cliniko resources the simulator serves, and what each one can be filtered on.

Everything here comes from ../shared/reference/cliniko/README.md (§4, §5) and the OpenAPI
description saved beside it: filterable fields per list endpoint, the `q[]` fields a
single-record GET accepts, which state fields hide a row from the main listing, and the
legacy sub-routes (`/cancelled`, `/deleted`, `/archived`, `/inactive`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class Kind(Enum):
    INT64 = "int64"  # ids, sent as strings
    INTEGER = "integer"
    DATETIME = "date-time"
    DATE = "date"
    STRING = "string"
    BOOLEAN = "boolean"
    ARRAY = "array"  # arrays of ids


@dataclass(frozen=True)
class Column:
    """A value kept per row for filtering and sorting, read from the record's `source` key
    (or the id at the end of the link object there, when `link`)."""

    name: str
    kind: Kind
    source: str = ""
    link: bool = False

    @property
    def key(self) -> str:
        return self.source or self.name


@dataclass(frozen=True)
class View:
    """One list route: the main listing, or a legacy sub-route such as `/cancelled`."""

    suffix: str | None = None
    require: str | None = None  # this state column must be set (archived/cancelled/deleted)
    active: bool | None = None  # practitioners: active or inactive
    filterable: frozenset[str] | None = None  # None: the resource's own list
    stub: bool = False  # deleted patients come back as {deleted_at, links} only
    reveal: tuple[str, ...] = ()  # hidden states this view shows anyway


@dataclass(frozen=True)
class Resource:
    name: str
    columns: tuple[Column, ...]
    filterable: frozenset[str]
    hidden_states: tuple[str, ...] = ()
    single_filters: frozenset[str] = frozenset()
    views: tuple[View, ...] = (View(),)
    by_name: dict[str, Column] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_name", {column.name: column for column in self.columns})

    def view(self, suffix: str | None) -> View | None:
        return next((view for view in self.views if view.suffix == suffix), None)


def _dt(*names: str) -> tuple[Column, ...]:
    return tuple(Column(name, Kind.DATETIME) for name in names)


def _links(*names: str) -> tuple[Column, ...]:
    return tuple(Column(f"{name}_id", Kind.INT64, source=name, link=True) for name in names)


ID = Column("id", Kind.INT64)
# Legacy `/…/deleted` routes answer to these filters only (staff in issue #231), and list
# every deleted row, whatever else happened to it first.
DELETED_ROUTE_FILTERS = frozenset({"id", "deleted_at"})


def _deleted_view(*, stub: bool = False) -> View:
    return View("deleted", require="deleted_at", filterable=DELETED_ROUTE_FILTERS, stub=stub,
                reveal=("archived_at", "cancelled_at"))

PATIENTS = Resource(
    name="patients",
    columns=(
        ID, *_dt("created_at", "updated_at", "archived_at", "deleted_at"),
        Column("date_of_birth", Kind.DATE),
        *(Column(name, Kind.STRING) for name in
          ("email", "first_name", "last_name", "old_reference_id", "preferred_first_name")),
    ),
    # No deleted_at filter on /patients in the 2023 spec: deleted patients only show on the
    # legacy /patients/deleted route.
    filterable=frozenset({"id", "archived_at", "created_at", "updated_at", "date_of_birth", "email",
                          "first_name", "last_name", "old_reference_id", "preferred_first_name"}),
    hidden_states=("archived_at", "deleted_at"),
    single_filters=frozenset({"archived_at"}),
    views=(View(), View("archived", require="archived_at"),
           _deleted_view(stub=True)),
)

INDIVIDUAL_APPOINTMENTS = Resource(
    name="individual_appointments",
    columns=(
        ID, *_dt("created_at", "updated_at", "archived_at", "deleted_at", "cancelled_at",
                 "starts_at", "ends_at"),
        *_links("appointment_type", "business", "patient", "practitioner", "repeated_from"),
    ),
    filterable=frozenset({"id", "archived_at", "created_at", "deleted_at", "updated_at",
                          "appointment_type_id", "business_id", "cancelled_at", "ends_at",
                          "patient_id", "practitioner_id", "repeated_from_id", "starts_at"}),
    hidden_states=("archived_at", "deleted_at", "cancelled_at"),
    single_filters=frozenset({"archived_at", "deleted_at", "cancelled_at"}),
    views=(View(), View("cancelled", require="cancelled_at"), _deleted_view()),
)

INVOICES = Resource(
    name="invoices",
    columns=(
        ID, *_dt("created_at", "updated_at", "archived_at", "deleted_at"),
        *_links("appointment", "business", "patient", "practitioner"),
        Column("issue_date", Kind.DATE), Column("number", Kind.INTEGER),
        Column("status", Kind.INTEGER),
    ),
    filterable=frozenset({"id", "archived_at", "created_at", "deleted_at", "updated_at",
                          "appointment_id", "business_id", "issue_date", "number", "patient_id",
                          "practitioner_id", "status"}),
    hidden_states=("archived_at", "deleted_at"),
    single_filters=frozenset({"archived_at", "deleted_at"}),
    views=(View(), _deleted_view()),
)

BUSINESSES = Resource(
    name="businesses",
    columns=(
        ID, *_dt("created_at", "updated_at", "archived_at", "deleted_at"),
        Column("appointment_type_ids", Kind.ARRAY),
        Column("show_in_online_bookings", Kind.BOOLEAN),
    ),
    filterable=frozenset({"id", "archived_at", "created_at", "deleted_at", "updated_at",
                          "appointment_type_ids", "show_in_online_bookings"}),
    hidden_states=("archived_at", "deleted_at"),
    single_filters=frozenset({"archived_at", "deleted_at"}),
)

PRACTITIONERS = Resource(
    name="practitioners",
    columns=(
        ID, *_dt("created_at", "updated_at"), *_links("user"),
        Column("show_in_online_bookings", Kind.BOOLEAN), Column("active", Kind.BOOLEAN),
    ),
    filterable=frozenset({"id", "created_at", "updated_at", "user_id", "show_in_online_bookings"}),
    # No archived or deleted state: a practitioner who leaves moves to /practitioners/inactive.
    views=(View(active=True), View("inactive", active=False)),
)

APPOINTMENT_TYPES = Resource(
    name="appointment_types",
    columns=(
        ID, *_dt("created_at", "updated_at", "archived_at"),
        Column("category", Kind.STRING), Column("online_payments_mode", Kind.STRING),
        Column("show_in_online_bookings", Kind.BOOLEAN),
        Column("appointment_confirmation_template_ids", Kind.ARRAY),
        Column("appointment_reminder_template_ids", Kind.ARRAY),
    ),
    filterable=frozenset({"id", "archived_at", "created_at", "updated_at", "category",
                          "online_payments_mode", "show_in_online_bookings",
                          "appointment_confirmation_template_ids",
                          "appointment_reminder_template_ids"}),
    hidden_states=("archived_at",),
    single_filters=frozenset({"archived_at"}),
    views=(View(), View("archived", require="archived_at")),
)

BILLABLE_ITEMS = Resource(
    name="billable_items",
    columns=(ID, *_dt("created_at", "updated_at", "archived_at"), *_links("tax")),
    filterable=frozenset({"id", "archived_at", "created_at", "updated_at", "tax_id"}),
    hidden_states=("archived_at",),
    single_filters=frozenset({"archived_at"}),
)

RESOURCES: dict[str, Resource] = {
    resource.name: resource
    for resource in (BUSINESSES, PRACTITIONERS, APPOINTMENT_TYPES, BILLABLE_ITEMS, PATIENTS,
                     INDIVIDUAL_APPOINTMENTS, INVOICES)
}
