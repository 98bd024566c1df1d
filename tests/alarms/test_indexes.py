"""The alarm tables' indexes: each foreign-key lookup has one, and no key has two.

Every index of these tables is written on each raise and clear, in the ingest batch's
transaction (migration 0003): a key that leads another index has none of its own, and
the rarely set ones are indexed only where set.
"""

from __future__ import annotations

import re

import pytest
from django.db import connection, transaction

from alarms.models import Alarm, AlarmEvent, RuleState

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("queryset", "index"),
    [
        # The lookups Django's collectors make when a device, user, rule or alarm goes.
        (lambda: Alarm.objects.filter(device_id__in=[1, 2]), "alarms_device_state"),
        (lambda: Alarm.objects.filter(owner_id__in=[1, 2]), "alarms_owner_started"),
        (lambda: Alarm.objects.filter(acknowledged_by_id__in=[1, 2]), "alarms_acknowledged_by"),
        (lambda: RuleState.objects.filter(rule_id__in=[1, 2]), "alarms_state_rule_device"),
        (lambda: RuleState.objects.filter(alarm_id__in=[1, 2]), "alarms_state_alarm"),
        (lambda: AlarmEvent.objects.filter(user_id__in=[1, 2]), "alarms_event_user"),
    ],
)
def test_each_foreign_key_lookup_has_an_index(queryset, index: str) -> None:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        plan = queryset().explain()
    assert index in plan, plan


def single_column_indexes(table: str) -> dict[str, str]:
    """Return the table's indexes on one column: name -> definition."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s", [table])
        return {
            name: definition
            for name, definition in cursor.fetchall()
            if re.search(r"USING btree \(\w+\)", definition)
        }


@pytest.mark.parametrize(
    ("model", "column"),
    [
        (Alarm, "device_id"),
        (Alarm, "owner_id"),
        (Alarm, "acknowledged_by_id"),
        (RuleState, "rule_id"),
        (RuleState, "alarm_id"),
        (AlarmEvent, "user_id"),
    ],
)
def test_no_key_has_a_second_full_index(model, column: str) -> None:
    indexes = single_column_indexes(model._meta.db_table)
    full = [
        name
        for name, definition in indexes.items()
        if f"({column})" in definition and "WHERE" not in definition
    ]
    assert full == [], indexes
