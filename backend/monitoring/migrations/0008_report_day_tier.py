from django.db import migrations

# The tier part as this migration made it, not the live monitoring.tiers.
from monitoring.migrations import _0008_tiers as frozen_tiers


def install_tiers(apps, schema_editor):
    with schema_editor.connection.cursor() as cursor:
        frozen_tiers.install(cursor)


def uninstall_tiers(apps, schema_editor):
    with schema_editor.connection.cursor() as cursor:
        frozen_tiers.uninstall(cursor)


class Migration(migrations.Migration):
    dependencies = [
        ("monitoring", "0007_host_gpu_totals"),
    ]

    operations = [migrations.RunPython(install_tiers, uninstall_tiers)]
