"""Write many rows in one statement each: Django's bulk methods cost too much per batch.

bulk_update's CASE WHEN per field costs ~1 ms per row to build and plan at hundreds
of rows (35 ms for a batch's few dozen alarms); rows_update is one UPDATE … FROM
(VALUES …) on PostgreSQL, and executemany on SQLite (in process: no round trips to
save). bulk_create's per-object preparation cost more than the insert of a batch's
few alarms and events; rows_insert is one INSERT … SELECT FROM unnest(…) on
PostgreSQL and bulk_create elsewhere. Values go through each field's own
preparation (get_db_prep_save), as the ORM's would.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.db import connection, models

from alarms.models import Alarm, RuleState

# PostgreSQL binds at most 65 535 parameters per statement.
PARAMETERS_PER_STATEMENT = 60_000
STATE_FIELDS = ("last_ts", "pending_since", "holding", "alarm", "last_arrival", "silent_at")
ALARM_FIELDS = ("state", "cleared", "value", "peak", "changed")


def states_write(states: Sequence[RuleState]) -> None:
    """Store the evaluation columns of these (rule, device) states (their alarms already saved)."""
    rows_update(RuleState, states, STATE_FIELDS)


def alarms_write(alarms: Sequence[Alarm]) -> None:
    """Store what evaluation changes of these alarms (never who acknowledged them)."""
    rows_update(Alarm, alarms, ALARM_FIELDS)


def rows_insert(
    model: type[models.Model], rows: Sequence[models.Model], *, ignore_conflicts: bool = False
) -> None:
    """Insert these new rows (every concrete field but the key) and set their keys.

    With `ignore_conflicts`, rows that conflict are left out and keys are not set.
    """
    if not rows:
        return
    if connection.vendor != "postgresql":
        model._default_manager.bulk_create(rows, ignore_conflicts=ignore_conflicts)
        return
    fields = [field for field in model._meta.concrete_fields if not field.primary_key]
    # Arrays of the base type: unnest gives each value its column's type on insert.
    types = [str(field.db_type(connection)).split("(")[0] for field in fields]
    columns = [[_prepared(row, field) for row in rows] for field in fields]
    sql = (
        f"INSERT INTO {model._meta.db_table} ({', '.join(field.column for field in fields)}) "  # noqa: S608 - from the model
        f"SELECT * FROM unnest({', '.join(f'%s::{kind}[]' for kind in types)})"
    )
    with connection.cursor() as cursor:
        if ignore_conflicts:
            cursor.execute(sql + " ON CONFLICT DO NOTHING", columns)
            return
        # Rows are inserted, and their keys returned, in unnest's order.
        cursor.execute(sql + f" RETURNING {model._meta.pk.column}", columns)
        for row, (key,) in zip(rows, cursor.fetchall(), strict=True):
            row.pk = key
            row._state.adding = False
            row._state.db = connection.alias


def rows_update(
    model: type[models.Model], rows: Sequence[models.Model], names: Sequence[str]
) -> None:
    """Set these fields of these saved rows, by primary key, in as few statements as can be."""
    if not rows:
        return
    fields = [model._meta.get_field(name) for name in names]
    concrete = [field for field in fields if isinstance(field, models.Field)]
    assert len(concrete) == len(fields), names
    values = [[row.pk, *(_prepared(row, field) for field in concrete)] for row in rows]
    table = model._meta.db_table
    with connection.cursor() as cursor:
        if connection.vendor != "postgresql":
            assignments = ", ".join(f"{field.column} = %s" for field in concrete)
            cursor.executemany(
                f"UPDATE {table} SET {assignments} WHERE id = %s",  # noqa: S608 - from the model
                [(*row[1:], row[0]) for row in values],
            )
            return
        # VALUES columns are typed by their first row: cast each to its column's type.
        types = ["bigint", *(str(field.db_type(connection)) for field in concrete)]
        assignments = ", ".join(
            f"{field.column} = v.column{index}" for index, field in enumerate(concrete, start=2)
        )
        placeholder = "(" + ", ".join(f"%s::{kind}" for kind in types) + ")"
        per_statement = PARAMETERS_PER_STATEMENT // len(types)
        for start in range(0, len(values), per_statement):
            chunk = values[start : start + per_statement]
            cursor.execute(
                f"UPDATE {table} AS s SET {assignments} "  # noqa: S608 - from the model
                f"FROM (VALUES {', '.join([placeholder] * len(chunk))}) AS v "
                "WHERE s.id = v.column1",
                [value for row in chunk for value in row],
            )


def _prepared(row: models.Model, field: models.Field) -> object:  # type: ignore[type-arg]
    """Return the field's value of the row as the database takes it."""
    if field.is_relation and field.is_cached(row):  # type: ignore[attr-defined]
        # The related object's key now: it may have been saved after it was assigned.
        related = getattr(row, field.name)
        return None if related is None else related.pk
    return field.get_db_prep_save(getattr(row, field.attname), connection)
