"""No index of their own for foreign keys that lead another index, partial ones for the rarely set.

Every index of the alarm tables is written on each raise and clear inside the ingest
batch's transaction: alarms.device and .owner lead alarms_device_state and
alarms_owner_started, rulestate.rule leads alarms_state_rule_device; the acknowledging
user, an event's user and a state's alarm are indexed only where set.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("alarms", "0002_revision"),
        ("devices", "0003_attributes"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AlterField(
            model_name="alarm",
            name="acknowledged_by",
            field=models.ForeignKey(
                blank=True,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AlterField(
            model_name="alarm",
            name="device",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="alarms",
                to="devices.device",
            ),
        ),
        migrations.AlterField(
            model_name="alarm",
            name="owner",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AlterField(
            model_name="alarmevent",
            name="user",
            field=models.ForeignKey(
                blank=True,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AlterField(
            model_name="rulestate",
            name="alarm",
            field=models.ForeignKey(
                blank=True,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to="alarms.alarm",
            ),
        ),
        migrations.AlterField(
            model_name="rulestate",
            name="rule",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="states",
                to="alarms.alarmrule",
            ),
        ),
        migrations.AddIndex(
            model_name="alarm",
            index=models.Index(
                condition=models.Q(("acknowledged_by__isnull", False)),
                fields=["acknowledged_by"],
                name="alarms_acknowledged_by",
            ),
        ),
        migrations.AddIndex(
            model_name="alarmevent",
            index=models.Index(
                condition=models.Q(("user__isnull", False)),
                fields=["user"],
                name="alarms_event_user",
            ),
        ),
        migrations.AddIndex(
            model_name="rulestate",
            index=models.Index(
                condition=models.Q(("alarm__isnull", False)),
                fields=["alarm"],
                name="alarms_state_alarm",
            ),
        ),
    ]
