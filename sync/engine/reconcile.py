"""Finding hard deletions at the end of a full pass, without mistaking a bad read for one.

Cliniko never says that a record was deleted for good: it just stops listing it. At the end
of a full pass, a row held here whose id the pass did not list is a candidate. A candidate
can also be a row that changed while the pass ran (it left the window) or one the listing
skipped, so each is looked up by id first (`fetch_by_ids`); what is found is stored, not
removed. What is still missing is removed only if it is a small share of what is held
(`delete_cap`, default 5%): a partial read looks exactly like a mass deletion, so above the
cap nothing is removed and the run is flagged for a person to decide (`allow_mass_delete`);
a table is never emptied.
A PMS that cannot look records up by id gets no removals at all, only the flag.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Exists, OuterRef

from clinics.models import Organization, PmsConnection
from sync.engine.store import TARGETS, PageResult, PageWriter, pointed_at_by, refresh_statistics
from sync.models import ReconciliationSeen, SyncCursor
from sync.pms import base

logger = logging.getLogger(__name__)


@dataclass
class Reconciliation:
    held: int = 0
    candidates: int = 0
    still_present: int = 0
    removed_ids: list[int] = field(default_factory=list)
    capped: bool = False
    reason: str = ""

    def summary(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "held": self.held,
            "candidates": self.candidates,
            "still_present": self.still_present,
            "deleted": len(self.removed_ids),
            "capped": self.capped,
        }
        if self.reason:
            data["reason"] = self.reason
        return data


def deletion_candidates(
    organization: Organization, connection: PmsConnection, cursor: SyncCursor, resource: str, *, limit: int
) -> tuple[int, list[tuple[int, str]]]:
    """How many rows are held, and (up to `limit` + 1 of) those the pass did not list."""
    refresh_statistics(ReconciliationSeen)
    model = TARGETS[resource].model
    held = model.objects.for_org(organization).filter(pms=connection.kind)
    listed = ReconciliationSeen.objects.for_org(organization).filter(
        cursor=cursor, external_id=OuterRef("external_id")
    )
    missing = held.filter(~Exists(listed)).order_by("id").values_list("id", "external_id")[: limit + 1]
    return held.count(), list(missing)


def confirm_missing(
    adapter: base.PmsAdapter, resource: str, candidates: list[tuple[int, str]]
) -> tuple[list[dict[str, Any]], list[tuple[int, str]]]:
    """Look candidates up by id (network, outside any transaction): (found payloads, missing)."""
    found = adapter.fetch_by_ids(resource, [external_id for _, external_id in candidates])
    present = {str(item.get("id")) for item in found}
    return found, [(pk, external_id) for pk, external_id in candidates if external_id not in present]


def removal_allowance(held: int, *, cap: float) -> int:
    """At most `cap` of what is held, and at least one row (a lone deletion in a small table)."""
    return max(1, math.floor(held * cap))


def apply_removals(
    organization: Organization,
    resource: str,
    missing: list[tuple[int, str]],
    outcome: Reconciliation,
    *,
    cap: float,
    allow_mass_delete: bool,
) -> None:
    allowed = removal_allowance(outcome.held, cap=cap)
    if len(missing) >= outcome.held and missing:
        # Nothing listed at all is a failed read far more often than a clinic that deleted
        # everything: never empty a table, whatever the operator allowed.
        outcome.capped = True
        outcome.reason = (
            f"the PMS listed none of the {outcome.held} {resource} rows held; nothing was removed"
        )
        logger.warning("reconciliation of %s for %s capped: %s", resource, organization.pk, outcome.reason)
        return
    if len(missing) > allowed and not allow_mass_delete:
        outcome.capped = True
        outcome.reason = (
            f"{len(missing)} of {outcome.held} {resource} rows are no longer listed by the PMS, more than"
            f" the {cap:.0%} a reconciliation may remove ({allowed}); nothing was removed"
        )
        logger.warning("reconciliation of %s for %s capped: %s", resource, organization.pk, outcome.reason)
        return
    ids = [pk for pk, _ in missing]
    if ids:
        model = TARGETS[resource].model
        # What points at a removed row stays (its own reconciliation decides about it, under its
        # own cap); it only loses the link, and gets it back if the row ever returns.
        for target, ref in pointed_at_by(model):
            target.model.objects.for_org(organization).filter(**{f"{ref}__in": ids}).update(**{ref: None})
        model.objects.for_org(organization).filter(pk__in=ids).delete()
        outcome.removed_ids = ids


def store_found(writer: PageWriter, resource: str, found: list[dict[str, Any]]) -> PageResult | None:
    """Candidates the PMS still has are stored as read (they may be newer than the pass)."""
    return writer.write(resource, found) if found else None


def forget_pass(organization: Organization, cursor: SyncCursor) -> None:
    ReconciliationSeen.objects.for_org(organization).filter(cursor=cursor).delete()
