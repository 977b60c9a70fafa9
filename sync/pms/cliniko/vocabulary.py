"""Cliniko's coded values (../shared/reference/cliniko/README.md §5), shared by the mapper
and the synthetic generator. Pure Python: no Django imports."""

from __future__ import annotations

from enum import IntEnum

CANCELLATION_REASONS: dict[int, str] = {
    10: "Feeling better",
    20: "Condition worse",
    30: "Sick",
    31: "COVID-19 related",
    40: "Away",
    50: "Other",
    60: "Work",
}


class InvoiceStatus(IntEnum):
    OPEN = 10
    PAID = 20
    CLOSED = 30
    OPEN_CREDIT = 40


INVOICE_STATUS_DESCRIPTIONS: dict[int, str] = {
    InvoiceStatus.OPEN: "Open",
    InvoiceStatus.PAID: "Paid",
    InvoiceStatus.CLOSED: "Closed",
    InvoiceStatus.OPEN_CREDIT: "Open credit",
}

# Cliniko's status code -> Routiq's InvoiceStatus value.
INVOICE_STATUS_NAMES: dict[int, str] = {
    InvoiceStatus.OPEN: "open",
    InvoiceStatus.PAID: "paid",
    InvoiceStatus.CLOSED: "closed",
    InvoiceStatus.OPEN_CREDIT: "open_credit",
}
