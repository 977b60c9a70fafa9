"""The one tenancy chokepoint: every tenant-owned model inherits `TenantModel`.

Queries on tenant data start from `Model.objects.for_org(org)`; single objects come from
`get_for_org()`, which treats "another tenant's" exactly like "missing".
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Self

from django.db import models

if TYPE_CHECKING:
    from clinics.models import Organization


class TenantQuerySet(models.QuerySet):
    def for_org(self, organization: Organization | str) -> Self:
        org_id = organization if isinstance(organization, str) else organization.pk
        if not org_id:
            raise ValueError("a tenant query needs an organization")
        return self.filter(organization_id=org_id)


class TenantModel(models.Model):
    organization = models.ForeignKey(
        "clinics.Organization",
        on_delete=models.CASCADE,
        related_name="+",
        # Every index and constraint leads with the organization; a lone FK index is waste.
        db_index=False,
    )

    objects = TenantQuerySet.as_manager()

    class Meta:
        abstract = True


class PmsKind(models.TextChoices):
    CLINIKO = "cliniko", "Cliniko"
    NOOKAL = "nookal", "Nookal"


class PmsRecord(TenantModel):
    """A row copied from a practice-management system, unique per tenant, PMS and PMS id."""

    pms = models.CharField(max_length=16, choices=PmsKind.choices)
    external_id = models.CharField(max_length=64)
    pms_created_at = models.DateTimeField(null=True, blank=True)
    pms_updated_at = models.DateTimeField(null=True, blank=True)
    archived_at = models.DateTimeField(null=True, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True)
    last_synced_at = models.DateTimeField(null=True, blank=True)
    # What the PMS said this row points at ({"patient": "<PMS id>", ...}), kept even when the
    # row it names is not here (yet), so a later sync can link it.
    pms_refs = models.JSONField(default=dict, blank=True, editable=False)

    class Meta:
        abstract = True
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "pms", "external_id"],
                name="%(app_label)s_%(class)s_unique_pms_id",
            ),
        ]


def get_for_org(model: type[models.Model], organization: Any, **lookup: Any) -> Any:
    """One object of `organization`, or `model.DoesNotExist` for missing and foreign alike."""
    return model.objects.for_org(organization).get(**lookup)


LARGE_STATEMENT_WORK_MEM = "256MB"


def large_statement_settings(cursor: Any) -> None:
    """For the enclosing transaction only, before a statement over a whole organization's
    history: its sorts and hashes stay in memory (not on disk), and it is not compiled (JIT),
    which at these sizes costs more than it saves (17 s compiling a 17 s profile refresh)."""
    cursor.execute(
        "SELECT set_config('work_mem', %s, true), set_config('jit', 'off', true)", [LARGE_STATEMENT_WORK_MEM]
    )


def table_statistics_refresh(model: type[models.Model]) -> None:
    """Have PostgreSQL sample a tenant table now (as its owner; clinics migration 0006).

    A table just filled in bulk has no statistics until autovacuum comes by (if it is on at
    all), and the planner then picks indexes that read a whole organization for each lookup.
    """
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT routiq_refresh_statistics(%s)", [model._meta.db_table])
