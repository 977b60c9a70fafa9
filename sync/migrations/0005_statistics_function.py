from django.db import migrations

SYNCED_TABLES = (
    "clinics_location",
    "patients_practitioner",
    "patients_appointmenttype",
    "patients_patient",
    "patients_appointment",
    "patients_invoice",
    "sync_reconciliationseen",
)

# The application role may not ANALYZE tables it does not own; a sync that has just filled
# one asks the owner to, through this one narrow door (sync/engine/store.py).
CREATE = f"""
CREATE OR REPLACE FUNCTION routiq_refresh_statistics(target text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
BEGIN
    IF target NOT IN ({", ".join(f"'{t}'" for t in SYNCED_TABLES)}) THEN
        RAISE EXCEPTION 'routiq_refresh_statistics: % is not a synced table', target;
    END IF;
    EXECUTE format('ANALYZE %I', target);
END $$;
"""


class Migration(migrations.Migration):
    dependencies = [
        ("sync", "0004_run_claim"),
        ("patients", "0005_pms_refs"),
        ("clinics", "0005_connection_rate_limit"),
    ]

    operations = [
        migrations.RunSQL(CREATE, reverse_sql="DROP FUNCTION IF EXISTS routiq_refresh_statistics(text);"),
    ]
