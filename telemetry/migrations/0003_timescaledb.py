"""Raw readings become a TimescaleDB hypertable when the server has TimescaleDB preloaded.

Installed but not in shared_preload_libraries (or older than the hub supports),
the database stays plain PostgreSQL: `migrate` ends with one storage line saying
so and how to convert later (`hub timescale enable`).
"""

import logging

from django.db import migrations

logger = logging.getLogger("telemetry.timescale")


def forwards(apps, schema_editor):
    from telemetry.timescale import readings_timescale_enable

    readings_timescale_enable(schema_editor.connection, say=lambda line: logger.info("%s", line))


class Migration(migrations.Migration):
    # create_hypertable's migrate_data copies every row and locks the table: not in
    # one transaction with the rest of `migrate`.
    atomic = False

    dependencies = [("telemetry", "0002_latest_unit")]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
