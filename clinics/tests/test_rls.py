"""Row-level security, exercised as the application role.

The suite itself connects as a superuser (it creates databases), which bypasses policies; so
these tests switch to `routiq_app` inside their transaction, as the product's processes are.
"""

import pytest
from django.db import DatabaseError, connection, transaction
from django.test.utils import CaptureQueriesContext
from model_bakery import baker

from clinics.models import ApiKey, Location
from clinics.rls import cross_tenant_scope, tenant_context_set, tenant_scope, tenant_transaction
from conftest import data_queries
from patients.models import Patient
from routiq.db_roles import APP_ROLE


def tenant_tables():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.table_name FROM information_schema.columns c"
            " JOIN information_schema.tables t USING (table_schema, table_name)"
            " WHERE c.table_schema = 'public' AND c.column_name = 'organization_id'"
            " AND t.table_type = 'BASE TABLE' ORDER BY 1"
        )
        return [row[0] for row in cursor.fetchall()]


@pytest.fixture
def as_app_role(app_role):
    """Run the test's SQL as the application role, which must exist and hold only DML rights."""

    def switch():
        with connection.cursor() as cursor:
            cursor.execute(f"SET LOCAL ROLE {APP_ROLE}")

    yield switch
    with connection.cursor() as cursor:
        cursor.execute("RESET ROLE")


def count(table):
    with connection.cursor() as cursor:
        cursor.execute(f'SELECT count(*) FROM "{table}"')
        return cursor.fetchone()[0]


def test_every_table_with_an_organization_column_has_the_policy(db):
    tables = tenant_tables()
    assert "patients_patient" in tables and "clinics_membership" in tables
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity,"
            " EXISTS (SELECT 1 FROM pg_policies p WHERE p.tablename = c.relname AND p.policyname = 'tenant_isolation')"
            " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'public' AND c.relname = ANY(%s)",
            [tables],
        )
        state = {name: (enabled, forced, policy) for name, enabled, forced, policy in cursor.fetchall()}
    missing = sorted(t for t in tables if state.get(t) != (True, True, True))
    assert not missing, f"tables without ENABLE + FORCE + tenant_isolation: {missing}"


def test_the_application_role_cannot_bypass_policies(as_app_role):
    with connection.cursor() as cursor:
        cursor.execute("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = %s", [APP_ROLE])
        assert cursor.fetchone() == (False, False)


def test_no_tenant_means_no_rows(world, as_app_role):
    baker.make(Patient, organization=world.org_a, pms="cliniko", external_id="a1")
    baker.make(Patient, organization=world.org_b, pms="cliniko", external_id="b1")
    as_app_role()
    assert count("patients_patient") == 0
    assert count("clinics_membership") == 0


def test_a_tenant_sees_only_its_rows(world, as_app_role):
    baker.make(Patient, organization=world.org_a, pms="cliniko", external_id="a1")
    baker.make(Patient, organization=world.org_b, pms="cliniko", external_id="b1")
    as_app_role()
    tenant_context_set(world.org_a)
    # Even without the ORM's organization filter, the database returns org A's rows only.
    assert list(Patient.objects.values_list("external_id", flat=True)) == ["a1"]
    assert count("clinics_membership") == 2


def test_writing_into_another_tenant_is_refused(world, as_app_role):
    as_app_role()
    tenant_context_set(world.org_a)
    with pytest.raises(DatabaseError, match="row-level security"), transaction.atomic():
        Location.objects.create(organization=world.org_b, pms="cliniko", external_id="9", name="Sneaky")
    mine = Location.objects.create(organization=world.org_a, pms="cliniko", external_id="8", name="Mine")
    with pytest.raises(DatabaseError, match="row-level security"), transaction.atomic():
        Location.objects.filter(pk=mine.pk).update(organization=world.org_b)


def test_cross_tenant_scope_is_the_explicit_way_across(world, as_app_role):
    baker.make(Patient, organization=world.org_a, pms="cliniko", external_id="a1")
    baker.make(Patient, organization=world.org_b, pms="cliniko", external_id="b1")
    as_app_role()
    with cross_tenant_scope("test: operators"):
        assert count("patients_patient") == 2
    with tenant_scope(world.org_b):
        assert list(Patient.objects.values_list("external_id", flat=True)) == ["b1"]


@pytest.mark.django_db(transaction=True)
def test_tenant_setting_does_not_outlive_its_transaction(world, as_app_role):
    baker.make(ApiKey, organization=world.org_a, prefix="abcd1234", secret_hash="x" * 64)
    with transaction.atomic():
        as_app_role()
        tenant_context_set(world.org_a)
        assert count("clinics_apikey") == 1
    # Same connection (as a pooled one would be), next transaction: the tenant is gone.
    with transaction.atomic():
        as_app_role()
        assert count("clinics_apikey") == 0


def test_policy_compares_with_an_empty_setting_as_no_tenant(world, as_app_role):
    baker.make(Patient, organization=world.org_a, pms="cliniko", external_id="a1")
    as_app_role()
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config('app.org_id', '', true)")
    assert count("patients_patient") == 0


@pytest.mark.django_db(transaction=True)
def test_tenant_context_needs_a_transaction(world):
    with pytest.raises(RuntimeError):
        tenant_context_set(world.org_a)


def test_a_nested_scope_gives_the_outer_one_back(world, as_app_role):
    baker.make(Patient, organization=world.org_a, pms="cliniko", external_id="a1")
    baker.make(Patient, organization=world.org_b, pms="cliniko", external_id="b1")
    as_app_role()

    def visible():
        return sorted(Patient.objects.values_list("external_id", flat=True))

    with tenant_scope(world.org_a):
        with tenant_scope(world.org_b):
            assert visible() == ["b1"]
        assert visible() == ["a1"]
        with cross_tenant_scope("test: nested operator"):
            assert visible() == ["a1", "b1"]
        assert visible() == ["a1"]
    with cross_tenant_scope("test: operator"):
        with tenant_scope(world.org_b):
            assert visible() == ["b1"]
        assert visible() == ["a1", "b1"]


def test_a_nested_scope_that_fails_leaves_the_outer_one(world, as_app_role):
    baker.make(Patient, organization=world.org_a, pms="cliniko", external_id="a1")
    as_app_role()
    with tenant_scope(world.org_a):
        with pytest.raises(LookupError), tenant_scope(world.org_b):
            raise LookupError("the nested work failed")
        assert list(Patient.objects.values_list("external_id", flat=True)) == ["a1"]


# --- the request's transaction: the tenant set at its first statement ---------------------------
def test_a_tenant_transaction_that_reads_nothing_sends_nothing(world):
    with CaptureQueriesContext(connection) as captured, tenant_transaction(world.org_a):
        pass
    assert data_queries(captured) == []


def test_a_tenant_transaction_sets_the_tenant_before_its_first_statement(world, as_app_role):
    baker.make(Patient, organization=world.org_a, pms="cliniko", external_id="a1")
    baker.make(Patient, organization=world.org_b, pms="cliniko", external_id="b1")
    as_app_role()
    with CaptureQueriesContext(connection) as captured, tenant_transaction(world.org_b):
        assert list(Patient.objects.values_list("external_id", flat=True)) == ["b1"]
        assert count("patients_patient") == 1
    sent = data_queries(captured)
    assert len(sent) == 3 and "set_config('app.org_id'" in sent[0]  # once, first


def test_a_rolled_back_savepoint_keeps_the_tenant_transactions_tenant(world, as_app_role):
    baker.make(Patient, organization=world.org_a, pms="cliniko", external_id="a1")
    as_app_role()
    with tenant_transaction(world.org_a):
        # The first statement is the savepoint's: the tenant is set before it, not inside it.
        with pytest.raises(DatabaseError, match="row-level security"), transaction.atomic():
            Location.objects.create(organization=world.org_b, pms="cliniko", external_id="9", name="Sneaky")
        assert list(Patient.objects.values_list("external_id", flat=True)) == ["a1"]


def test_a_tenant_transaction_starting_with_executemany_writes_as_the_tenant(world, as_app_role):
    as_app_role()
    with tenant_transaction(world.org_a), connection.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO clinics_location (organization_id, pms, external_id, name, pms_refs, time_zone,"
            " address, city, state, post_code, country, phone)"
            " VALUES (%s, 'cliniko', %s, 'Here', '{}', '', '', '', '', '', '', '')",
            [[world.org_a.pk, "1"], [world.org_a.pk, "2"]],
        )
        assert count("clinics_location") == 2
    with tenant_scope(world.org_b):
        assert count("clinics_location") == 0


@pytest.mark.django_db(transaction=True)
def test_a_tenant_transactions_tenant_ends_with_it(world, as_app_role):
    baker.make(ApiKey, organization=world.org_a, prefix="abcd1234", secret_hash="x" * 64)
    with tenant_transaction(world.org_a):
        as_app_role()
        assert count("clinics_apikey") == 1
    with transaction.atomic():
        as_app_role()
        assert count("clinics_apikey") == 0
