"""Evaluate the rules on the readings one ingest batch newly stored, inside its transaction.

Called by telemetry's store right after the rows are inserted, so the alarm state
commits (or rolls back) with the readings: a redelivered batch inserts nothing and
so changes nothing, and `kill -9` at any moment loses no pending `for` timer.
Per batch: one read of the rules' revision (the rules themselves only when they
changed: alarms/rulebook.py; nothing more when none matches), one query that locks
the batch's (rule, device) states that exist, in a fixed order, after creating those
whose condition a reading meets with INSERT … ON CONFLICT DO NOTHING; writes only
for what changed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache
from itertools import compress
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.models import JSONField

from alarms.bulk import STATE_FIELDS, Event, changes_write, column, rows_insert
from alarms.conditions import CLEARED, RAISED, UPDATED, Track, Value, step
from alarms.frames import AlarmChange, alarm_change
from alarms.models import Alarm, Condition, RuleState
from alarms.outbox import Notice, Webhooks, deliveries_enqueue
from alarms.rulebook import Rule, Watch, rulebook
from core.moments import ms_to_datetime
from core.pgarrays import int_array

# The rows the batch inserted, as columns: device ids, metrics, ts in epoch ms, values.
NewRows = tuple[Sequence[int], Sequence[str], Sequence[int], Sequence[Value]]
# Some series' newest readings stored before this batch: {(device id, metric): the
# batch's timestamps of it} -> {(device id, metric): epoch ms or None}, in one query.
# Given by telemetry, whose tables these are.
NewestStored = Callable[[Mapping[tuple[int, str], set[int]]], Mapping[tuple[int, str], int | None]]
# A no_data rule's heartbeat is written at most this often per device: silence is
# measured from a last arrival up to this much older than the true one.
NO_DATA_RESOLUTION_S = 1.0


@dataclass(slots=True)
class Changes:
    """What one evaluation (or sweep, or user action) changed, in the order it happened."""

    created: list[Alarm] = field(default_factory=list)
    updated: dict[int, Alarm] = field(default_factory=dict)
    # (the alarm, a copy of it as it was at the change, kind, at, reading value, user id)
    events: list[tuple[Alarm, Alarm, str, datetime, Any, int | None]] = field(default_factory=list)
    uids: dict[int, str] = field(default_factory=dict)
    # The owners' enabled webhooks, if the caller keeps them (else the outbox reads them).
    webhooks: Webhooks | None = None

    def add(
        self,
        alarm: Alarm,
        kind: str,
        at: datetime,
        value: Any,
        *,
        uid: str,
        user_id: int | None = None,
    ) -> None:
        """Record one change of `alarm` as it is now."""
        self.uids[alarm.device_id] = uid
        if kind == RAISED and alarm.pk is None:
            self.created.append(alarm)
        elif alarm.pk is not None:
            self.updated[alarm.pk] = alarm
        self.events.append((alarm, _snapshot(alarm), kind, at, value, user_id))

    def save(self, states: Sequence[RuleState] = (), idle: Sequence[int] = ()) -> list[AlarmChange]:
        """Write the alarms, their events and webhook deliveries; return the socket changes.

        `states` (their evaluation columns) and the `idle` states' deletion are written
        with them: one statement for all on PostgreSQL (alarms.bulk.changes_write).
        """
        events = [
            Event(alarm, kind, at, user_id, value)
            for alarm, _, kind, at, value, user_id in self.events
        ]
        changes_write(
            updated=list(self.updated.values()),
            created=self.created,
            events=events,
            states=states,
            idle=idle,
        )
        if not self.events:
            return []
        notices = []
        for alarm, snapshot, kind, _, _, _ in self.events:
            snapshot.pk = alarm.pk
            notices.append(Notice(snapshot, kind, self.uids[alarm.device_id]))
        hooked = deliveries_enqueue(notices, self.webhooks)
        changes = [
            alarm_change(
                snapshot,
                device_uid=self.uids[alarm.device_id],
                event=kind,
                at=at,
                notified=alarm.owner_id in hooked,
            )
            for alarm, snapshot, kind, at, _, _ in self.events
        ]
        return changes


def _snapshot(alarm: Alarm) -> Alarm:
    """Return a copy of the alarm's field values as they are now, for reading only.

    copy.copy of a model pickles and unpickles it (its state and caches deep-copied);
    this shares them, which a snapshot that is only read may.
    """
    snapshot = Alarm.__new__(Alarm)
    snapshot.__dict__.update(alarm.__dict__)
    return snapshot


def rules_evaluate(
    *,
    rows: NewRows,
    devices: Mapping[str, tuple[int, int]],
    received_at: datetime,
    newest: NewestStored,
) -> list[AlarmChange]:
    """Evaluate the enabled rules on the batch's new rows; run inside the batch's transaction.

    `rows` are the columns of the rows the batch inserted. `devices` maps uid to
    (device id, owner id) for the batch's devices; `newest` tells the newest reading
    of a series stored before this batch (see NewestStored). The rules come first, so
    a batch that no rule watches costs one query (the revisions). A (rule, device)
    that is idle — condition not met, nothing pending, no alarm — has no state row
    and costs no write: only a reading that meets the condition (or a no_data rule's
    heartbeat, at most once per NO_DATA_RESOLUTION_S) creates and writes its state.
    """
    ids, metric_of, ts_of, value_of = rows
    if not ids:
        return []
    book = rulebook()
    watches = book.rules({owner_id for _, owner_id in devices.values()})
    if not watches:
        return []
    owner_of = {device_id: owner_id for device_id, owner_id in devices.values()}
    # Most of a batch's readings are of metrics no rule watches: the filter runs in C.
    metrics = {metric for watched in watches.values() for metric in watched}
    series: dict[tuple[int, str], list[tuple[int, Value]]] = {}
    for device_id, metric, ts, value in compress(
        zip(ids, metric_of, ts_of, value_of, strict=True), map(metrics.__contains__, metric_of)
    ):
        points = series.get((device_id, metric))
        if points is None:
            series[(device_id, metric)] = [(ts, value)]
        else:
            points.append((ts, value))
    pairs, met = _pairs_met(watches, owner_of, series)
    if not pairs:
        return []
    uid_of = {device_id: uid for uid, (device_id, _) in devices.items()}
    lock, create = _pairs_to_lock(pairs, met, received_at)
    if not lock:
        return []
    changes = Changes(webhooks=book.webhooks)
    dirty: list[RuleState] = []
    idle: list[int] = []
    states = _states_locked(lock, create)
    late = newest(_new_series(states, pairs, series))
    for key, state in states.items():
        rule = pairs[key]
        device_id = key[1]
        uid = uid_of[device_id]
        before = tuple(getattr(state, name) for name in STATE_FIELDS)
        alarm = state.alarm if state.alarm is not None and state.alarm.state == "active" else None
        points = sorted(series[(device_id, rule.metric)], key=lambda point: point[0])
        if rule.condition == Condition.NO_DATA:
            alarm = _no_data_heard(rule, state, alarm, points, received_at, changes, uid)
        else:
            if state.last_ts is None and alarm is None:
                state.last_ts = late[(device_id, rule.metric)]
            alarm = _readings_apply(rule, state, alarm, points, received_at, changes, uid)
            if alarm is None and state.pending_since is None and not state.holding:
                idle.append(state.pk)
                continue
        state.alarm = alarm
        if tuple(getattr(state, name) for name in STATE_FIELDS) != before:
            dirty.append(state)
    return changes.save(dirty, idle)


def _new_series(
    states: Mapping[tuple[int, int], RuleState],
    pairs: Mapping[tuple[int, int], Rule],
    series: Mapping[tuple[int, str], list[tuple[int, Value]]],
) -> dict[tuple[int, str], set[int]]:
    """Return the series of the value rules' new states, each with the batch's timestamps.

    A state that starts now ignores readings older than what is already stored (too
    late): evaluation asks telemetry for those series' newest stored readings at once.
    """
    wanted: dict[tuple[int, str], set[int]] = {}
    for (rule_id, device_id), state in states.items():
        rule = pairs[(rule_id, device_id)]
        active = state.alarm is not None and state.alarm.state == Alarm.State.ACTIVE
        if rule.condition != Condition.NO_DATA and state.last_ts is None and not active:
            key = (device_id, rule.metric)
            wanted[key] = {ts for ts, _ in series[key]}
    return wanted


_NO_WATCH: Mapping[str, Watch] = {}


def _pairs_met(
    watches: Mapping[int, Mapping[str, Watch]],
    owner_of: Mapping[int, int],
    series: Mapping[tuple[int, str], list[tuple[int, Value]]],
) -> tuple[dict[tuple[int, int], Rule], set[tuple[int, int]]]:
    """Return the (rule, device) pairs the series concern, and the value rules' pairs they meet.

    A pair's state is created (if it has none) when one of its readings meets the
    condition: only those pairs cost a write when idle.
    """
    pairs: dict[tuple[int, int], Rule] = {}
    met: set[tuple[int, int]] = set()
    for (device_id, metric), points in series.items():
        # None: a metric that only another owner's rules watch.
        watch = watches.get(owner_of[device_id], _NO_WATCH).get(metric)
        if watch is None:
            continue
        rules = watch.by_device.get(device_id)
        if rules is None:
            rules = watch.every_device
        elif watch.every_device:
            rules = watch.every_device + rules
        for rule in rules:
            key = (rule.id, device_id)
            pairs[key] = rule
            if rule.condition != Condition.NO_DATA and key not in met:
                meets = rule.meets
                for _, value in points:
                    if meets(value):
                        met.add(key)
                        break
    return pairs, met


def _pairs_to_lock(
    pairs: Mapping[tuple[int, int], Rule],
    met: set[tuple[int, int]],
    received_at: datetime,
) -> tuple[set[tuple[int, int]], set[tuple[int, int]]]:
    """Return the pairs whose state to lock if it exists, and those among them to give one.

    Every value rule's pair is locked if it has a state (pending, holding or active),
    which that query finds; a pair whose readings meet the condition (`met`) gets one
    first. no_data pairs cost one plain read: their heartbeat is written only when stale.
    """
    silent = {key for key, rule in pairs.items() if rule.condition == Condition.NO_DATA}
    if not silent:
        return set(pairs), met
    heard = {
        (rule_id, device_id): (last_arrival, alarm_id)
        for rule_id, device_id, last_arrival, alarm_id in RuleState.objects.filter(
            rule_id__in={rule_id for rule_id, _ in silent},
            device_id__in={device_id for _, device_id in silent},
        ).values_list("rule_id", "device_id", "last_arrival", "alarm_id")
    }
    fresh = received_at - timedelta(seconds=NO_DATA_RESOLUTION_S)
    stale = {
        key
        for key in silent
        if (found := heard.get(key)) is None
        or found[1] is not None
        or found[0] is None
        or found[0] <= fresh
    }
    return (pairs.keys() - silent) | stale, met | stale


def _states_locked(
    lock: set[tuple[int, int]], create: set[tuple[int, int]]
) -> dict[tuple[int, int], RuleState]:
    """Lock the pairs' states that exist, in (rule, device) order; give `create` pairs one first.

    `create` is a subset of `lock`. Those that exist, or that another worker creates
    meanwhile, are left as they are (INSERT … ON CONFLICT DO NOTHING).
    """
    if connection.vendor == "postgresql":
        return _states_locked_postgresql(lock, create)
    if create:
        rows_insert(
            RuleState,
            [
                RuleState(rule_id=rule_id, device_id=device_id)
                for rule_id, device_id in sorted(create)
            ],
            ignore_conflicts=True,
        )
    rows = (
        RuleState.objects.select_for_update(of=("self",))
        .select_related("alarm")
        .filter(
            rule_id__in={rule_id for rule_id, _ in lock},
            device_id__in={device_id for _, device_id in lock},
        )
        .order_by("rule_id", "device_id")
    )
    return {
        (state.rule_id, state.device_id): state
        for state in rows
        if (state.rule_id, state.device_id) in lock
    }


def _states_locked_postgresql(
    lock: set[tuple[int, int]], create: set[tuple[int, int]]
) -> dict[tuple[int, int], RuleState]:
    """Create and lock the pairs' states, with their alarms, in one plain-SQL statement.

    The statement's snapshot predates its inserts, so it returns the states it locked
    and those it created. A state another worker created meanwhile is in neither (the
    insert waited for it, then did nothing): those few are locked by a second statement.
    """
    db = connections[DEFAULT_DB_ALIAS]  # not the proxy: one context-local lookup, not one a row
    pairs = list(lock)  # in any order: the statement locks in (rule, device) order
    params = [
        int_array(rule_id for rule_id, _ in pairs),
        int_array(device_id for _, device_id in pairs),
    ]
    with db.cursor() as cursor:
        if create:
            new = sorted(create)
            cursor.execute(
                _CREATE_AND_LOCK_STATES,
                [
                    *_state_defaults(),
                    int_array(rule_id for rule_id, _ in new),
                    int_array(device_id for _, device_id in new),
                    *params,
                ],
            )
        else:
            cursor.execute(_LOCK_STATES, params)
        rows = cursor.fetchall()
        states = _states_read(rows, db)
        missed = sorted(create - states.keys())
        if missed:
            cursor.execute(
                _LOCK_STATES,
                [
                    int_array(rule_id for rule_id, _ in missed),
                    int_array(device_id for _, device_id in missed),
                ],
            )
            states.update(_states_read(cursor.fetchall(), db))
    # In (rule, device) order, as the lock took them: changes are recorded in that order.
    return dict(sorted(states.items()))


def _states_read(rows: list[tuple[Any, ...]], db: Any) -> dict[tuple[int, int], RuleState]:
    """Return the states (each with its alarm) of rows of the lock's columns."""
    states: dict[tuple[int, int], RuleState] = {}
    state_names, alarm_names, json_fields = _READ
    split = len(state_names)
    state_from_db, alarm_from_db, alias = RuleState.from_db, Alarm.from_db, db.alias
    for row in rows:
        state = state_from_db(alias, state_names, row[:split])
        if state.alarm_id is not None:
            values = list(row[split:])
            for index, field in json_fields:
                values[index] = field.from_db_value(values[index], None, db)  # type: ignore[arg-type]
            state.alarm = alarm_from_db(alias, alarm_names, values)
        states[(state.rule_id, state.device_id)] = state
    return states


# The lock's columns: the state's, then its alarm's, and where among those the alarm's JSON is.
_READ = (
    [field.attname for field in RuleState._meta.concrete_fields],
    [field.attname for field in Alarm._meta.concrete_fields],
    [
        (index, field)
        for index, field in enumerate(Alarm._meta.concrete_fields)
        if isinstance(field, JSONField)
    ],
)


def _lock_states_sql(*, creating: bool) -> str:
    """The states' lock in plain SQL, with each state's alarm; columns named by the models.

    `creating`: first insert the missing states of some pairs (their columns' defaults
    and two arrays come first in the parameters) and return them too.
    """
    state, alarm = RuleState._meta, Alarm._meta
    state_columns = [column(field) for field in state.concrete_fields]
    alarm_columns = [
        # jsonb as its text, decoded by the field as the ORM would.
        f"a.{field.column}" + ("::text" if isinstance(field, JSONField) else "")
        for field in alarm.concrete_fields
    ]
    rule, device, alarm_id = (column(state.get_field(name)) for name in ("rule", "device", "alarm"))
    locked = (
        f"SELECT {', '.join(f's.{column}' for column in state_columns)} "  # noqa: S608 - names from the models
        f"FROM {state.db_table} s JOIN unnest(%s::bigint[], %s::bigint[]) AS p(rule_id, device_id) "
        f"ON s.{rule} = p.rule_id AND s.{device} = p.device_id "
        f"ORDER BY s.{rule}, s.{device} FOR UPDATE OF s"
    )
    if not creating:
        return (
            f"SELECT {', '.join(f's.{column}' for column in state_columns)}, "  # noqa: S608 - names from the models
            f"{', '.join(alarm_columns)} FROM {state.db_table} s "
            "JOIN unnest(%s::bigint[], %s::bigint[]) AS p(rule_id, device_id) "
            f"ON s.{rule} = p.rule_id AND s.{device} = p.device_id "
            f"LEFT JOIN {alarm.db_table} a ON a.id = s.{alarm_id} "
            f"ORDER BY s.{rule}, s.{device} FOR UPDATE OF s"
        )
    defaults = [
        f"%s::{field.db_type(connection)}"
        for field in state.concrete_fields
        if not field.primary_key and field.name not in ("rule", "device")
    ]
    inserted = [column(field) for field in state.concrete_fields if not field.primary_key]
    values = [
        "c.rule_id" if column == rule else "c.device_id" if column == device else defaults.pop(0)
        for column in inserted
    ]
    return (
        f"WITH created AS (INSERT INTO {state.db_table} ({', '.join(inserted)}) "  # noqa: S608 - names from the models
        f"SELECT {', '.join(values)} "
        "FROM unnest(%s::bigint[], %s::bigint[]) AS c(rule_id, device_id) "
        f"ORDER BY 1, 2 ON CONFLICT DO NOTHING RETURNING {', '.join(state_columns)}), "
        f"locked AS ({locked}), "
        "states AS (SELECT * FROM locked UNION ALL SELECT * FROM created) "
        f"SELECT s.*, {', '.join(alarm_columns)} FROM states s "
        f"LEFT JOIN {alarm.db_table} a ON a.id = s.{alarm_id}"
    )


@cache
def _state_defaults() -> tuple[Any, ...]:
    """The column values of a new state but its rule and device, as the database takes them."""
    blank = RuleState()
    return tuple(
        field.get_db_prep_save(getattr(blank, field.attname), connection)
        for field in RuleState._meta.concrete_fields
        if not field.primary_key and field.name not in ("rule", "device")
    )


_LOCK_STATES = _lock_states_sql(creating=False)
_CREATE_AND_LOCK_STATES = _lock_states_sql(creating=True)


def _no_data_heard(
    rule: Rule,
    state: RuleState,
    alarm: Alarm | None,
    points: list[tuple[int, Value]],
    received_at: datetime,
    changes: Changes,
    uid: str,
) -> Alarm | None:
    """The metric was heard: restart its silence, and clear a no-data alarm."""
    state.last_arrival = received_at
    # Never early: the heartbeat may be written up to NO_DATA_RESOLUTION_S late.
    state.silent_at = received_at + timedelta(seconds=(rule.silence or 0) + NO_DATA_RESOLUTION_S)
    newest = points[-1][0]
    if state.last_ts is None or newest > state.last_ts:
        state.last_ts = newest
    if alarm is None:
        return None
    alarm.state = Alarm.State.CLEARED
    alarm.cleared = alarm.changed = received_at
    changes.add(alarm, CLEARED, received_at, points[-1][1], uid=uid)
    return None


def _readings_apply(
    rule: Rule,
    state: RuleState,
    alarm: Alarm | None,
    points: list[tuple[int, Value]],
    received_at: datetime,
    changes: Changes,
    uid: str,
) -> Alarm | None:
    """Step the rule through the readings in device-time order; record every change."""
    spec = rule.spec
    track = Track(
        last_ts=state.last_ts,
        pending_since=state.pending_since,
        holding=state.holding,
        active=alarm is not None,
        value=alarm.value if alarm is not None else None,
        peak=alarm.peak if alarm is not None else None,
    )
    # Updates are merged: one `updated` per alarm per batch, before its clear if any.
    update: tuple[int, Value] | None = None
    for ts, value in points:
        kind = step(spec, track, ts, value)
        if kind is None:
            continue
        if kind == RAISED:
            alarm = Alarm(
                rule_id=rule.id,
                device_id=state.device_id,
                owner_id=rule.owner_id,
                name=rule.name,
                metric=rule.metric,
                severity=rule.severity,
                started=ms_to_datetime(ts),
                value=value,
                peak=value,
                changed=received_at,
            )
            changes.add(alarm, RAISED, alarm.started, value, uid=uid)
        elif kind == UPDATED and alarm is not None:
            alarm.value, alarm.peak, alarm.changed = track.value, track.peak, received_at
            update = (ts, value)
        elif kind == CLEARED and alarm is not None:
            if update is not None:
                changes.add(alarm, UPDATED, ms_to_datetime(update[0]), update[1], uid=uid)
                update = None
            alarm.state = Alarm.State.CLEARED
            alarm.cleared = ms_to_datetime(ts)
            alarm.changed = received_at
            changes.add(alarm, CLEARED, alarm.cleared, value, uid=uid)
            alarm = None
    if update is not None and alarm is not None:
        changes.add(alarm, UPDATED, ms_to_datetime(update[0]), update[1], uid=uid)
    state.last_ts = track.last_ts
    state.pending_since = track.pending_since
    state.holding = track.holding
    return alarm
