from django.db import migrations

from clinics.rls import rls_operations


class Migration(migrations.Migration):
    dependencies = [("sync", "0002_sync_runs_cursors_quarantine")]

    operations = rls_operations(
        "sync_syncrun",
        "sync_synccursor",
        "sync_quarantinedrecord",
        "sync_reconciliationseen",
    )
