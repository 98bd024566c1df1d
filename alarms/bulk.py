"""Write many rows in one statement each: Django's bulk methods cost too much per batch.

bulk_update's CASE WHEN per field costs ~1 ms per row to build and plan at hundreds
of rows (35 ms for a batch's few dozen alarms); rows_update is one UPDATE … FROM
unnest(…) on PostgreSQL, an array per column, so its text is the same at any size,
and executemany on SQLite (in process: no round trips to save). bulk_create's
per-object preparation cost more than the insert of a batch's few alarms and
events; rows_insert is one INSERT … SELECT FROM unnest(…) on PostgreSQL and
bulk_create elsewhere. changes_write puts all of an evaluation's writes in one
statement on PostgreSQL: a round trip cost 1.5-2 ms of the serial ingest chain
under load. Each column is one parameter, its array's text form (core.pgarrays:
psycopg dumps a list element by element in Python). Values are prepared as the ORM
would (get_db_prep_save), JSON to its text, but for fields whose preparation on
PostgreSQL returns the values evaluation gives them as they are (_PLAIN), read
straight off the rows.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from operator import attrgetter
from typing import Any, NamedTuple

from django.db import DEFAULT_DB_ALIAS, connection, connections, models
from django.db.backends.base.base import BaseDatabaseWrapper

from alarms.models import Alarm, AlarmEvent, RuleState
from core.pgarrays import array_text, int_array

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
    sql, params = _unnest_insert(model, fields, _model_columns(rows, fields, db), db)
    with db.cursor() as cursor:
        if ignore_conflicts:
            cursor.execute(sql + " ON CONFLICT DO NOTHING", params)
            return
        # Rows are inserted, and their keys returned, in unnest's order.
        cursor.execute(f"{sql} RETURNING {column(model._meta.pk)}", params)
        _keys_set(rows, cursor.fetchall(), db)


def _unnest_insert(
    model: type[models.Model],
    fields: Sequence[models.Field],  # type: ignore[type-arg]
    columns: Sequence[Sequence[Any]],
    db: BaseDatabaseWrapper,
    *,
    extra: Sequence[int | None] | None = None,
    replace: dict[str, str] | None = None,
) -> tuple[str, list[Any]]:
    """Return an INSERT … SELECT FROM unnest(…) of rows, in their order, and its arrays.

    `columns` are the rows' values of the fields, as the database takes them (for model
    instances, _model_columns). Arrays are of each column's base type (unnest gives each
    value its column's type on insert); `extra` is one more integer column, `u.extra`,
    that `replace` (column -> SQL expression over `u.c0`, `u.c1`, …) may use.
    """
    types = [str(field.db_type(db)).split("(")[0] for field in fields]
    params: list[Any] = [array_text(values) for values in columns]
    names = [f"c{index}" for index in range(len(fields))]
    arrays = [f"%s::{kind}[]" for kind in types]
    if extra is not None:
        names.append("extra")
        arrays.append("%s::int[]")
        params.append(array_text(extra))
    replace = replace or {}
    values = [
        replace.get(column(field), f"u.{name}") for field, name in zip(fields, names, strict=False)
    ]
    sql = (
        f"INSERT INTO {model._meta.db_table} ({', '.join(column(field) for field in fields)}) "  # noqa: S608 - from the model
        f"SELECT {', '.join(values)} FROM unnest({', '.join(arrays)}) WITH ORDINALITY "
        f"AS u({', '.join(names)}, place) ORDER BY u.place"
    )
    return sql, params


def column(field: object) -> str:
    """Return a concrete model field's column: plain-SQL statements name them from the models."""
    assert isinstance(field, models.Field), field
    return str(field.column)


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
    db = _database()
    with db.cursor() as cursor:
        if db.vendor != "postgresql":
            assert before is None
            concrete = _fields(model, names)
            assignments = ", ".join(f"{field.column} = %s" for field in concrete)
            cursor.executemany(
                f"UPDATE {model._meta.db_table} SET {assignments} WHERE id = %s",  # noqa: S608 - from the model
                [(*(_prepared(row, field, db) for field in concrete), row.pk) for row in rows],
            )
            return
        sql, params = _unnest_update(model, rows, names, db)
        if before is not None:
            sql = before[0] + sql
            params.insert(0, int_array(before[1]))
        cursor.execute(sql, params)


def _fields(model: type[models.Model], names: Sequence[str]) -> list[models.Field]:  # type: ignore[type-arg]
    fields = [model._meta.get_field(name) for name in names]
    concrete = [field for field in fields if isinstance(field, models.Field)]
    assert len(concrete) == len(fields), names
    return concrete


def _unnest_update(
    model: type[models.Model],
    rows: Sequence[models.Model],
    names: Sequence[str],
    db: BaseDatabaseWrapper,
    *,
    extra: Sequence[int | None] | None = None,
    replace: dict[str, str] | None = None,
) -> tuple[str, list[Any]]:
    """Return an UPDATE … FROM unnest(…) of these fields of these rows, and its arrays.

    An array of each column's base type, so the statement's text is the same at any
    size; `extra` and `replace` as for _unnest_insert (over `v.c0`, …, `v.extra`).
    """
    concrete = _fields(model, names)
    types = ["bigint", *(str(field.db_type(db)).split("(")[0] for field in concrete)]
    names_of_v = ["id", *(f"c{index}" for index in range(len(concrete)))]
    params: list[Any] = [int_array(row.pk for row in rows)]
    params += [_column_text(rows, field, db) for field in concrete]
    if extra is not None:
        types.append("int")
        names_of_v.append("extra")
        params.append(array_text(extra))
    replace = replace or {}
    assignments = ", ".join(
        f"{field.column} = " + replace.get(column(field), f"v.c{index}")
        for index, field in enumerate(concrete)
    )
    sql = (
        f"UPDATE {model._meta.db_table} AS s SET {assignments} "  # noqa: S608 - from the model
        f"FROM unnest({', '.join(f'%s::{kind}[]' for kind in types)}) "
        f"AS v({', '.join(names_of_v)}) WHERE s.id = v.id"
    )
    return sql, params


class Event(NamedTuple):
    """An alarm event to insert: its alarm (saved, or one of the same statement's new ones)."""

    alarm: Alarm
    kind: str
    at: datetime
    user_id: int | None
    value: Any


def changes_write(
    *,
    updated: Sequence[Alarm],
    created: Sequence[Alarm],
    events: Sequence[Event],
    states: Sequence[RuleState] = (),
    idle: Sequence[int] = (),
) -> None:
    """Write what an evaluation changed: alarms, new alarms, events, states, idle states.

    One statement on PostgreSQL (each a CTE), which sets the new alarms' keys; events
    and states point at a new alarm by its place among `created`. A pair whose alarm
    cleared and whose new one was raised in the same batch takes separate statements,
    clears first: the new alarm must not meet the old one in the one-open-per-pair
    index, which a single statement's parts could not promise.
    """
    db = _database()
    clash = {(alarm.rule_id, alarm.device_id) for alarm in updated} & {
        (alarm.rule_id, alarm.device_id) for alarm in created
    }
    if db.vendor != "postgresql" or clash:
        alarms_write(updated)
        rows_insert(Alarm, created)
        # Made now: they see the new alarms' keys.
        rows_insert(AlarmEvent, [AlarmEvent(**event._asdict()) for event in events])
        states_write(states, idle)
        return
    parts: list[str] = []
    params: list[Any] = []

    def part(name: str, sql: str, values: list[Any]) -> None:
        parts.append(f"{name} AS ({sql})")
        params.extend(values)

    place = {id(alarm): number for number, alarm in enumerate(created, start=1)}
    if updated:
        part("updated", *_unnest_update(Alarm, updated, ALARM_FIELDS, db))
    if created:
        fields = [field for field in Alarm._meta.concrete_fields if not field.primary_key]
        sql, values = _unnest_insert(Alarm, fields, _model_columns(created, fields, db), db)
        part("created", f"{sql} RETURNING id", values)
        parts.append("created_keys AS (SELECT array_agg(id ORDER BY id) AS keys FROM created)")
    if events:
        fields = [field for field in AlarmEvent._meta.concrete_fields if not field.primary_key]
        alarms = [event.alarm for event in events]
        pointing = _to_new_alarms(alarms, fields.index(_EVENT_ALARM), "u", place)
        columns = _event_columns(events, fields)
        part("events", *_unnest_insert(AlarmEvent, fields, columns, db, **pointing))
    if idle:
        part(
            "idle",
            f"DELETE FROM {RuleState._meta.db_table} WHERE id = ANY(%s::bigint[])",  # noqa: S608
            [int_array(idle)],
        )
    if states:
        fields = _fields(RuleState, STATE_FIELDS)
        cached = _STATE_ALARM.is_cached
        loaded = [state.alarm if cached(state) else None for state in states]
        pointing = _to_new_alarms(loaded, fields.index(_STATE_ALARM), "v", place)
        part("states", *_unnest_update(RuleState, states, STATE_FIELDS, db, **pointing))
    if not parts:
        return
    final = "SELECT unnest(keys) FROM created_keys" if created else "SELECT 1"
    with db.cursor() as cursor:
        cursor.execute(f"WITH {', '.join(parts)} {final}", params)
        if created:
            _keys_set(created, cursor.fetchall(), db)


def _to_new_alarms(
    alarms: Sequence[Alarm | None], index: int, alias: str, place: dict[int, int]
) -> dict[str, Any]:
    """Return the arguments that point the rows' `alarm` at a new alarm by its place, if any.

    `alarms` are the rows' alarms (None: not loaded); `index` is the place of the rows'
    alarm key among their statement's columns and `alias` that statement's unnest. The
    key column becomes its own value or, when NULL, that new alarm's key (from the
    statement's created_keys).
    """
    if not place:
        return {}
    return {
        "extra": [None if alarm is None else place.get(id(alarm)) for alarm in alarms],
        "replace": {
            "alarm_id": f"COALESCE({alias}.c{index}, "  # noqa: S608 - numbers, not values
            f"(SELECT keys FROM created_keys)[{alias}.extra])"
        },
    }


_EVENT_ALARM = AlarmEvent._meta.get_field("alarm")
_EVENT_VALUE = AlarmEvent._meta.get_field("value")
_STATE_ALARM = RuleState._meta.get_field("alarm")


def _event_columns(events: Sequence[Event], fields: Sequence[models.Field]) -> list[list[Any]]:  # type: ignore[type-arg]
    """Return the events' values of these AlarmEvent fields, as the database takes them."""
    encoder = _EVENT_VALUE.encoder
    by_column: dict[str, list[Any]] = {
        "alarm_id": [event.alarm.pk for event in events],
        "kind": [event.kind for event in events],
        "at": [event.at for event in events],
        "user_id": [event.user_id for event in events],
        "value": [
            None if event.value is None else json.dumps(event.value, cls=encoder)
            for event in events
        ],
    }
    return [by_column[field.attname] for field in fields]


def _keys_set(
    rows: Sequence[models.Model], keys: Sequence[tuple[Any, ...]], db: BaseDatabaseWrapper
) -> None:
    for row, (key,) in zip(rows, keys, strict=True):
        row.pk = key
        row._state.adding = False
        row._state.db = db.alias


def _database() -> BaseDatabaseWrapper:
    """Return the default connection itself, not its proxy.

    Each attribute read through django.db.connection costs a context-local lookup,
    and preparing a batch's values reads hundreds.
    """
    return connections[DEFAULT_DB_ALIAS]


def _prepared(row: models.Model, field: models.Field, db: BaseDatabaseWrapper) -> Any:  # type: ignore[type-arg]
    """Return the field's value of the row as the database takes it; JSON as its text."""
    return _column_values([row], field, db)[0]


# Fields whose preparation on PostgreSQL leaves the values evaluation gives them as they
# are (ints, strings, bools, aware datetimes, None): their values are read off the rows.
_PLAIN = (
    models.BigAutoField,
    models.AutoField,
    models.BigIntegerField,
    models.IntegerField,
    models.CharField,
    models.BooleanField,
    models.DateTimeField,
)


def _column_values(
    rows: Sequence[models.Model],
    field: models.Field,  # type: ignore[type-arg]
    db: BaseDatabaseWrapper,
) -> list[Any]:
    """Return the field's values of the rows as the database takes them; JSON as its text."""
    read = attrgetter(field.attname)
    if field.is_relation:
        # The related object's key now: it may have been saved after it was assigned.
        name, cached = field.name, field.is_cached  # type: ignore[attr-defined]
        return [
            (None if (related := getattr(row, name)) is None else related.pk)
            if cached(row)
            else read(row)
            for row in rows
        ]
    if isinstance(field, models.JSONField):
        # As JSONField saves it: None is SQL NULL, anything else its encoder's text.
        encoder = field.encoder
        return [
            None if (value := read(row)) is None else json.dumps(value, cls=encoder) for row in rows
        ]
    if type(field) in _PLAIN and db.vendor == "postgresql":
        return list(map(read, rows))
    return [field.get_db_prep_save(read(row), db) for row in rows]


def _model_columns(
    rows: Sequence[models.Model],
    fields: Sequence[models.Field],  # type: ignore[type-arg]
    db: BaseDatabaseWrapper,
) -> list[list[Any]]:
    """Return the rows' values of each field, as the database takes them; JSON as its text."""
    return [_column_values(rows, field, db) for field in fields]


def _column_text(
    rows: Sequence[models.Model],
    field: models.Field,  # type: ignore[type-arg]
    db: BaseDatabaseWrapper,
) -> str:
    """Return the text form of the array of the field's values of the rows."""
    return array_text(_column_values(rows, field, db))
