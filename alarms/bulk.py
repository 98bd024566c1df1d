"""Write many rows in one statement each: Django's bulk methods cost too much per batch.

bulk_update's CASE WHEN per field costs ~1 ms per row to build and plan at hundreds
of rows (35 ms for a batch's few dozen alarms); rows_update is one UPDATE … FROM
unnest(…) on PostgreSQL, an array per column, so its text is the same at any size,
and executemany on SQLite (in process: no round trips to save). bulk_create's
per-object preparation cost more than the insert of a batch's few alarms and
events; rows_insert is one INSERT … SELECT FROM unnest(…) on PostgreSQL and
bulk_create elsewhere. Values go through each field's own
preparation (get_db_prep_save), as the ORM's would.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connection, connections, models
from django.db.backends.base.base import BaseDatabaseWrapper

from alarms.models import Alarm, RuleState
from core.pgarrays import int_array

STATE_FIELDS = ("last_ts", "pending_since", "holding", "alarm", "last_arrival", "silent_at")
ALARM_FIELDS = ("state", "cleared", "value", "peak", "changed")


def states_write(states: Sequence[RuleState], idle: Sequence[int] = ()) -> None:
    """Store the evaluation columns of these states (their alarms saved), delete the `idle` ones.

    One statement on PostgreSQL (the delete a CTE of the update).
    """
    if not idle:
        rows_update(RuleState, states, STATE_FIELDS)
        return
    delete = f"DELETE FROM {RuleState._meta.db_table} WHERE id = ANY(%s::bigint[])"  # noqa: S608
    if connection.vendor == "postgresql" and states:
        rows_update(RuleState, states, STATE_FIELDS, before=(f"WITH idle AS ({delete}) ", idle))
        return
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(delete, [int_array(idle)])
        else:
            cursor.executemany(
                f"DELETE FROM {RuleState._meta.db_table} WHERE id = %s",  # noqa: S608
                [(state_id,) for state_id in idle],
            )
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
    db = _database()
    if db.vendor != "postgresql":
        model._default_manager.bulk_create(rows, ignore_conflicts=ignore_conflicts)
        return
    fields = [field for field in model._meta.concrete_fields if not field.primary_key]
    # Arrays of the base type: unnest gives each value its column's type on insert.
    types = [str(field.db_type(db)).split("(")[0] for field in fields]
    columns = [[_prepared(row, field, db) for row in rows] for field in fields]
    sql = (
        f"INSERT INTO {model._meta.db_table} ({', '.join(field.column for field in fields)}) "  # noqa: S608 - from the model
        f"SELECT * FROM unnest({', '.join(f'%s::{kind}[]' for kind in types)})"
    )
    with db.cursor() as cursor:
        if ignore_conflicts:
            cursor.execute(sql + " ON CONFLICT DO NOTHING", columns)
            return
        # Rows are inserted, and their keys returned, in unnest's order.
        cursor.execute(sql + f" RETURNING {model._meta.pk.column}", columns)
        for row, (key,) in zip(rows, cursor.fetchall(), strict=True):
            row.pk = key
            row._state.adding = False
            row._state.db = db.alias


def rows_update(
    model: type[models.Model],
    rows: Sequence[models.Model],
    names: Sequence[str],
    *,
    before: tuple[str, Sequence[int]] | None = None,
) -> None:
    """Set these fields of these saved rows, by primary key, in one statement.

    `before` (PostgreSQL only) is a WITH clause taking one integer array, and the
    array: a statement the update carries along.
    """
    if not rows:
        return
    fields = [model._meta.get_field(name) for name in names]
    concrete = [field for field in fields if isinstance(field, models.Field)]
    assert len(concrete) == len(fields), names
    table = model._meta.db_table
    db = _database()
    with db.cursor() as cursor:
        if db.vendor != "postgresql":
            assert before is None
            assignments = ", ".join(f"{field.column} = %s" for field in concrete)
            cursor.executemany(
                f"UPDATE {table} SET {assignments} WHERE id = %s",  # noqa: S608 - from the model
                [(*(_prepared(row, field, db) for field in concrete), row.pk) for row in rows],
            )
            return
        # Arrays of the base type, a column each: the statement's text is the same every time.
        types = [str(field.db_type(db)).split("(")[0] for field in concrete]
        assignments = ", ".join(
            f"{field.column} = v.c{index}" for index, field in enumerate(concrete)
        )
        names_of_v = ", ".join(f"c{index}" for index in range(len(concrete)))
        params: list[Any] = [int_array(row.pk for row in rows)]
        params += [[_prepared(row, field, db) for row in rows] for field in concrete]
        prefix = ""
        if before is not None:
            prefix = before[0]
            params.insert(0, int_array(before[1]))
        cursor.execute(
            f"{prefix}UPDATE {table} AS s SET {assignments} "  # noqa: S608 - from the model
            f"FROM unnest(%s::bigint[], {', '.join(f'%s::{kind}[]' for kind in types)}) "
            f"AS v(id, {names_of_v}) WHERE s.id = v.id",
            params,
        )


def _database() -> BaseDatabaseWrapper:
    """Return the default connection itself, not its proxy.

    Each attribute read through django.db.connection costs a context-local lookup,
    and preparing a batch's values reads hundreds.
    """
    return connections[DEFAULT_DB_ALIAS]


def _prepared(row: models.Model, field: models.Field, db: BaseDatabaseWrapper) -> Any:  # type: ignore[type-arg]
    """Return the field's value of the row as the database takes it."""
    if field.is_relation and field.is_cached(row):  # type: ignore[attr-defined]
        # The related object's key now: it may have been saved after it was assigned.
        related = getattr(row, field.name)
        return None if related is None else related.pk
    return field.get_db_prep_save(getattr(row, field.attname), db)
