"""Revisions of the rules and of the webhooks, rewritten by triggers in the transaction of any change."""

from django.db import migrations, models

# (row id, table): what each revision row follows (alarms.models.Revision).
FOLLOWED = ((1, "alarms_alarmrule"), (2, "alarms_webhook"))

POSTGRESQL = [
    """
    CREATE FUNCTION alarms_revise() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO alarms_revision (id, revision)
        VALUES (TG_ARGV[0]::bigint, floor(random() * 9e18)::bigint)
        ON CONFLICT (id) DO UPDATE SET revision = EXCLUDED.revision;
        RETURN NULL;
    END $$
    """,
    *(
        f"""
        CREATE TRIGGER alarms_revise AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
        ON {table} FOR EACH STATEMENT EXECUTE FUNCTION alarms_revise({row})
        """
        for row, table in FOLLOWED
    ),
]
POSTGRESQL_REVERSE = [
    *(f"DROP TRIGGER IF EXISTS alarms_revise ON {table}" for _, table in FOLLOWED),
    "DROP FUNCTION IF EXISTS alarms_revise()",
]
# SQLite has row triggers only, and no TRUNCATE.
SQLITE = [
    f"""
    CREATE TRIGGER alarms_revise_{table}_{event.lower()} AFTER {event} ON {table}
    BEGIN
        INSERT OR REPLACE INTO alarms_revision (id, revision) VALUES ({row}, random());
    END
    """
    for row, table in FOLLOWED
    for event in ("INSERT", "UPDATE", "DELETE")
]
SQLITE_REVERSE = [
    f"DROP TRIGGER IF EXISTS alarms_revise_{table}_{event}"
    for _, table in FOLLOWED
    for event in ("insert", "update", "delete")
]
FORWARD = {"postgresql": POSTGRESQL, "sqlite": SQLITE}
REVERSE = {"postgresql": POSTGRESQL_REVERSE, "sqlite": SQLITE_REVERSE}


def forward(apps, schema_editor):
    """Create the triggers, then the rows they keep true (no row: nothing is kept)."""
    vendor = schema_editor.connection.vendor
    for statement in FORWARD.get(vendor, []):
        schema_editor.execute(statement)
    if vendor in FORWARD:
        for row, _ in FOLLOWED:
            schema_editor.execute(
                "INSERT INTO alarms_revision (id, revision) VALUES (%s, 0)", [row]
            )


def reverse(apps, schema_editor):
    for statement in REVERSE.get(schema_editor.connection.vendor, []):
        schema_editor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [("alarms", "0001_initial")]

    operations = [
        migrations.CreateModel(
            name="Revision",
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
