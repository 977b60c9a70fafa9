from django.db import migrations

from clinics.rls import rls_operations


class Migration(migrations.Migration):
    dependencies = [("patients", "0003_patient_anonymised_at"), ("clinics", "0003_row_level_security")]

    operations = rls_operations(
        "patients_practitioner",
        "patients_appointmenttype",
        "patients_patient",
        "patients_appointment",
        "patients_invoice",
    )
