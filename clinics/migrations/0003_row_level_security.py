from django.db import migrations

from clinics.rls import rls_operations


class Migration(migrations.Migration):
    dependencies = [("clinics", "0002_api_keys_and_audit")]

    operations = rls_operations(
        "clinics_location",
        "clinics_membership",
        "clinics_pmsconnection",
        "clinics_apikey",
        "clinics_auditevent",
    )
