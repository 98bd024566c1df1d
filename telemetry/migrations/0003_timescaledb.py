"""Raw readings become a TimescaleDB hypertable when the extension is available."""

from django.db import migrations


def forwards(apps, schema_editor):
    from telemetry.timescale import timescale_available, timescale_enable

    if timescale_available(schema_editor.connection):
        timescale_enable(schema_editor.connection)


class Migration(migrations.Migration):
    # create_hypertable with migrate_data cannot run inside a transaction block.
    atomic = False

    dependencies = [("telemetry", "0002_latest_unit")]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
