from django.db import migrations

from clinics.rls import rls_operations


class Migration(migrations.Migration):
    dependencies = [("patients", "0006_patient_profiles")]

    operations = rls_operations("patient_conversation_profile", "patients_profilebaseline")
