"""The TimescaleDB branch stays shut where the extension is absent (this machine's PostgreSQL)."""

import pytest
from django.db import connection

from telemetry.timescale import readings_hypertable, timescale_available

pytestmark = pytest.mark.django_db


def test_plain_postgresql_keeps_a_plain_readings_table():
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'")
        installed = cursor.fetchone()[0]
    assert readings_hypertable(connection) is bool(installed)
    if not timescale_available(connection):
        assert not readings_hypertable(connection)
