from django.db import migrations

# The application role may not ANALYZE tables it does not own. A service that has just filled
# one (a sync import, a profile refresh) asks the owner to, through this one narrow door:
# tenant tables only (those with an organization column), nothing but ANALYZE.
CREATE = """
CREATE OR REPLACE FUNCTION routiq_refresh_statistics(target text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM information_schema.columns
        WHERE table_schema = 'public' AND table_name = target AND column_name = 'organization_id'
    ) THEN
        RAISE EXCEPTION 'routiq_refresh_statistics: % is not a tenant table', target;
    END IF;
    EXECUTE format('ANALYZE %I', target);
END $$;
"""


class Migration(migrations.Migration):
    dependencies = [("clinics", "0005_connection_rate_limit")]

    operations = [
        migrations.RunSQL(CREATE, reverse_sql="DROP FUNCTION IF EXISTS routiq_refresh_statistics(text);"),
    ]
