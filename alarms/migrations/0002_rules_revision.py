"""The rules' revision, rewritten by a trigger in the transaction of any change to the rules."""

from django.db import migrations, models

POSTGRESQL = [
    """
    CREATE FUNCTION alarms_rules_revise() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO alarms_rulesrevision (id, revision)
        VALUES (1, floor(random() * 9e18)::bigint)
        ON CONFLICT (id) DO UPDATE SET revision = EXCLUDED.revision;
        RETURN NULL;
    END $$
    """,
    """
    CREATE TRIGGER alarms_rules_revise AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON alarms_alarmrule FOR EACH STATEMENT EXECUTE FUNCTION alarms_rules_revise()
    """,
]
POSTGRESQL_REVERSE = [
    "DROP TRIGGER IF EXISTS alarms_rules_revise ON alarms_alarmrule",
    "DROP FUNCTION IF EXISTS alarms_rules_revise()",
]
# SQLite has row triggers only, and no TRUNCATE.
SQLITE = [
    f"""
    CREATE TRIGGER alarms_rules_revise_{event.lower()} AFTER {event} ON alarms_alarmrule
    BEGIN
        INSERT OR REPLACE INTO alarms_rulesrevision (id, revision) VALUES (1, random());
    END
    """
    for event in ("INSERT", "UPDATE", "DELETE")
]
SQLITE_REVERSE = [
    f"DROP TRIGGER IF EXISTS alarms_rules_revise_{event}" for event in ("insert", "update", "delete")
]


FORWARD = {"postgresql": POSTGRESQL, "sqlite": SQLITE}
REVERSE = {"postgresql": POSTGRESQL_REVERSE, "sqlite": SQLITE_REVERSE}


def forward(apps, schema_editor):
    """Create the trigger, and the row once it keeps it true (no row: nothing is kept)."""
    vendor = schema_editor.connection.vendor
    for statement in FORWARD.get(vendor, []):
        schema_editor.execute(statement)
    if vendor in FORWARD:
        schema_editor.execute("INSERT INTO alarms_rulesrevision (id, revision) VALUES (1, 0)")


def reverse(apps, schema_editor):
    for statement in REVERSE.get(schema_editor.connection.vendor, []):
        schema_editor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [("alarms", "0001_initial")]

    operations = [
        migrations.CreateModel(
            name="RulesRevision",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("revision", models.BigIntegerField()),
            ],
        ),
        migrations.RunPython(forward, reverse),
    ]
