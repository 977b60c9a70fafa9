"""The operators' profile command: on demand, for one organization or all, then warmed."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from model_bakery import baker

from clinics.rls import tenant_scope
from patients.models import Patient, PatientProfile

pytestmark = pytest.mark.django_db


def _run(*args):
    out = StringIO()
    call_command("profiles_refresh", *args, stdout=out)
    return out.getvalue()


def test_refreshes_one_organization_and_warms_it(world):
    baker.make(Patient, organization=world.org_a, pms="cliniko", external_id="p1", phones_e164=[])
    baker.make(Patient, organization=world.org_b, pms="cliniko", external_id="p2", phones_e164=[])
    output = _run(world.org_a.pk)
    assert f"{world.org_a.pk}: 1 profiles" in output and "warmed profiles_page, profiles_summary" in output
    with tenant_scope(world.org_a):
        assert PatientProfile.objects.for_org(world.org_a).count() == 1
    with tenant_scope(world.org_b):
        assert PatientProfile.objects.for_org(world.org_b).count() == 0


def test_all_organizations(world):
    output = _run("--all")
    assert world.org_a.pk in output and world.org_b.pk in output


@pytest.mark.parametrize("args", [(), ("org_missing",), ("--all", "org_x")])
def test_bad_arguments_are_refused(world, args):
    with pytest.raises(CommandError):
        _run(*args)
