"""Evaluate the rules on the readings one ingest batch newly stored, inside its transaction.

Called by telemetry's store right after the rows are inserted, so the alarm state
commits (or rolls back) with the readings: a redelivered batch inserts nothing and
so changes nothing, and `kill -9` at any moment loses no pending `for` timer.
Per batch: one query for the matching rules (nothing more when there are none),
one that locks the (rule, device) states in a fixed order, creating missing ones
first with INSERT … ON CONFLICT DO NOTHING; writes only for what changed.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from django.db import connection
from django.db.models import Exists, Field, JSONField, OuterRef, Q

from alarms.bulk import STATE_FIELDS, alarms_write, states_write
from alarms.conditions import CLEARED, RAISED, UPDATED, Spec, Track, Value, fits, holds, step
from alarms.frames import AlarmChange, alarm_change
from alarms.models import Alarm, AlarmEvent, AlarmRule, Condition, RuleState
from alarms.outbox import Notice, deliveries_enqueue
from core.moments import ms_to_datetime

# (device id, metric, ts in epoch ms): a row the batch inserted.
ReadingKey = tuple[int, str, int]
# Some series' newest readings stored before this batch: {(device id, metric): the
# batch's timestamps of it} -> {(device id, metric): epoch ms or None}, in one query.
# Given by telemetry, whose tables these are.
NewestStored = Callable[[Mapping[tuple[int, str], set[int]]], Mapping[tuple[int, str], int | None]]
# A no_data rule's heartbeat is written at most this often per device: silence is
# measured from a last arrival up to this much older than the true one.
NO_DATA_RESOLUTION_S = 1.0


class RuleRow(NamedTuple):
    """The columns of an enabled rule that evaluation reads, and whether it has any state."""

    id: int
    owner_id: int
    device_id: int | None
    name: str
    metric: str
    condition: str
    threshold: float | None
    low: float | None
    high: float | None
    value: Any
    silence: int | None
    for_seconds: int
    clear: float | None
    severity: str
    stateful: bool


def rule_spec(rule: AlarmRule | RuleRow) -> Spec:
    """Return what evaluation needs of a rule."""
    return Spec(
        condition=rule.condition,
        threshold=rule.threshold,
        low=rule.low,
        high=rule.high,
        value=rule.value,
        for_ms=rule.for_seconds * 1000,
        clear=rule.clear,
    )


@dataclass(slots=True)
class Changes:
    """What one evaluation (or sweep, or user action) changed, in the order it happened."""

    created: list[Alarm] = field(default_factory=list)
    updated: dict[int, Alarm] = field(default_factory=dict)
    # (the alarm, a copy of it as it was at the change, kind, at, reading value, user id)
    events: list[tuple[Alarm, Alarm, str, datetime, Any, int | None]] = field(default_factory=list)
    uids: dict[int, str] = field(default_factory=dict)

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
        self.events.append((alarm, copy.copy(alarm), kind, at, value, user_id))

    def save(self) -> list[AlarmChange]:
        """Write the alarms, their events and webhook deliveries; return the socket changes."""
        if not self.events:
            return []
        # Clears first: a pair's new active alarm must not meet its old one (one open per pair).
        alarms_write(list(self.updated.values()))
        Alarm.objects.bulk_create(self.created)
        AlarmEvent.objects.bulk_create(
            AlarmEvent(alarm=alarm, kind=kind, at=at, user_id=user_id, value=value)
            for alarm, _, kind, at, value, user_id in self.events
        )
        notices = []
        for alarm, snapshot, kind, _, _, _ in self.events:
            snapshot.pk = alarm.pk
            notices.append(Notice(snapshot, kind, self.uids[alarm.device_id]))
        hooked = deliveries_enqueue(notices)
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


def _column(field: object) -> str:
    """Return a concrete model field's column (the plain-SQL queries name them from the models)."""
    assert isinstance(field, Field), field
    return str(field.column)


def _rules_sql() -> str:
    """The matching rules' query in plain SQL, its columns named by the models."""
    rule, state = AlarmRule._meta, RuleState._meta
    columns = ", ".join(
        # jsonb as its text, decoded by the field as the ORM would.
        f"r.{_column(rule.get_field(name))}" + ("::text" if name == "value" else "")
        for name in RuleRow._fields[:-1]
    )
    rule_fk = _column(state.get_field("rule"))
    return (
        f"SELECT {columns}, EXISTS (SELECT 1 FROM {state.db_table} s WHERE s.{rule_fk} = r.id) "  # noqa: S608 - names from the models
        f"FROM {rule.db_table} r WHERE (r.device_id IS NULL OR r.device_id = ANY(%s)) "
        "AND r.enabled AND r.owner_id = ANY(%s) AND r.metric = ANY(%s) ORDER BY r.id"
    )


def _rules_matching(*, devices: set[int], owners: set[int], metrics: set[str]) -> list[RuleRow]:
    """Return the enabled rules of these owners on these metrics, for all or one of the devices.

    Every batch asks; on PostgreSQL in plain SQL, as building the ORM's query each time
    cost more CPU than the rest of a small batch's evaluation.
    """
    if connection.vendor == "postgresql":
        value_field = AlarmRule._meta.get_field("value")
        assert isinstance(value_field, JSONField)
        with connection.cursor() as cursor:
            cursor.execute(_rules_sql(), [sorted(devices), sorted(owners), sorted(metrics)])
            rows = cursor.fetchall()
        at = RuleRow._fields.index("value")
        return [
            RuleRow._make(
                (
                    *row[:at],
                    # The ORM's own decoding of the jsonb text (no expression: a plain column).
                    value_field.from_db_value(row[at], None, connection),  # type: ignore[arg-type]
                    *row[at + 1 :],
                )
            )
            for row in rows
        ]
    return [
        RuleRow(*row)
        for row in AlarmRule.objects.filter(
            Q(device__isnull=True) | Q(device_id__in=devices),
            enabled=True,
            owner_id__in=owners,
            metric__in=metrics,
        )
        # Whether the rule has any state: if not, none of its pairs needs reading.
        .annotate(stateful=Exists(RuleState.objects.filter(rule_id=OuterRef("pk"))))
        .values_list(*RuleRow._fields)
    ]


def rules_evaluate(
    *,
    keys: Sequence[ReadingKey],
    values: Mapping[ReadingKey, Value],
    metrics: Collection[str],
    devices: Mapping[str, tuple[int, int]],
    received_at: datetime,
    newest: NewestStored,
) -> list[AlarmChange]:
    """Evaluate the enabled rules on the batch's new rows; run inside the batch's transaction.

    `keys` are the (device id, metric, ts) of the rows the batch inserted, `values`
    their values; `metrics` the batch's metrics (a superset will do). `devices` maps
    uid to (device id, owner id) for the batch's devices; `newest` tells the newest
    reading of a series stored before this batch (see NewestStored). The rules are
    asked for first, so a batch that no rule watches costs one query and no work per
    reading. A (rule, device) that is idle — condition not met, nothing pending, no
    alarm — has no state row and costs no write: only a reading that meets the
    condition (or a no_data rule's heartbeat, at most once per NO_DATA_RESOLUTION_S)
    locks and writes its state.
    """
    if not keys:
        return []
    rules = _rules_matching(
        devices={device_id for device_id, _ in devices.values()},
        owners={owner_id for _, owner_id in devices.values()},
        metrics=set(metrics),
    )
    if not rules:
        return []
    by_id = {device_id: (uid, owner_id) for uid, (device_id, owner_id) in devices.items()}
    watched = {rule.metric for rule in rules}
    series: dict[tuple[int, str], list[tuple[int, Value]]] = {}
    for reading in keys:
        device_id, metric, ts = reading
        if metric in watched:
            series.setdefault((device_id, metric), []).append((ts, values[reading]))
    devices_of: dict[tuple[int, str], list[int]] = {}
    for device_id, metric in series:
        devices_of.setdefault((by_id[device_id][1], metric), []).append(device_id)
    pairs: dict[tuple[int, int], RuleRow] = {}
    for rule in rules:
        if rule.device_id is None:
            for device_id in devices_of.get((rule.owner_id, rule.metric), ()):
                pairs[(rule.id, device_id)] = rule
        elif (rule.device_id, rule.metric) in series and by_id[rule.device_id][1] == rule.owner_id:
            pairs[(rule.id, rule.device_id)] = rule
    lock, create = _pairs_to_lock(pairs, series, received_at)
    if not lock and not create:
        return []
    changes = Changes()
    dirty: list[RuleState] = []
    idle: list[int] = []
    states = _states_locked(lock, create)
    late = newest(_new_series(states, pairs, series))
    for key, state in states.items():
        rule = pairs[key]
        device_id = key[1]
        uid = by_id[device_id][0]
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
    # Alarms first: the states point at the ones just opened.
    saved = changes.save()
    states_write(dirty)
    if idle:
        RuleState.objects.filter(pk__in=idle).delete()
    return saved


def _new_series(
    states: Mapping[tuple[int, int], RuleState],
    pairs: Mapping[tuple[int, int], RuleRow],
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


def _pairs_to_lock(
    pairs: Mapping[tuple[int, int], RuleRow],
    series: Mapping[tuple[int, str], list[tuple[int, Value]]],
    received_at: datetime,
) -> tuple[set[tuple[int, int]], set[tuple[int, int]]]:
    """Return the pairs to lock if they have a state, and those to give one if they do not.

    Without a query for value rules (a rule without state has idle pairs only); one
    plain read for no_data pairs, whose heartbeat is written only when it is stale.
    """
    lock: set[tuple[int, int]] = set()
    create: set[tuple[int, int]] = set()
    silent = {key for key, rule in pairs.items() if rule.condition == Condition.NO_DATA}
    heard = (
        {
            (rule_id, device_id): (last_arrival, alarm_id)
            for rule_id, device_id, last_arrival, alarm_id in RuleState.objects.filter(
                rule_id__in={rule_id for rule_id, _ in silent},
                device_id__in={device_id for _, device_id in silent},
            ).values_list("rule_id", "device_id", "last_arrival", "alarm_id")
        }
        if silent
        else {}
    )
    fresh = received_at - timedelta(seconds=NO_DATA_RESOLUTION_S)
    for key, rule in pairs.items():
        if key in silent:
            found = heard.get(key)
            if found is None or found[1] is not None or found[0] is None or found[0] <= fresh:
                create.add(key)
            continue
        spec = rule_spec(rule)
        if any(
            fits(spec, value) and holds(spec, value) for _, value in series[(key[1], rule.metric)]
        ):
            create.add(key)
        elif rule.stateful:
            lock.add(key)
    return lock, create


def _states_locked(
    lock: set[tuple[int, int]], create: set[tuple[int, int]]
) -> dict[tuple[int, int], RuleState]:
    """Lock the pairs' states in (rule, device) order; give `create` pairs one first if missing.

    Inserting every `create` pair (ON CONFLICT DO NOTHING) and then locking costs two
    statements; reading first to insert only the missing ones cost three.
    """
    wanted = lock | create
    rule_ids = sorted({rule_id for rule_id, _ in wanted})
    device_ids = sorted({device_id for _, device_id in wanted})

    def locked() -> dict[tuple[int, int], RuleState]:
        rows = (
            RuleState.objects.select_for_update(of=("self",))
            .select_related("alarm")
            .filter(rule_id__in=rule_ids, device_id__in=device_ids)
            .order_by("rule_id", "device_id")
        )
        return {
            (state.rule_id, state.device_id): state
            for state in rows
            if (state.rule_id, state.device_id) in wanted
        }

    if create:
        # Those that exist, or that another worker creates meanwhile, are left as they are.
        RuleState.objects.bulk_create(
            [
                RuleState(rule_id=rule_id, device_id=device_id)
                for rule_id, device_id in sorted(create)
            ],
            ignore_conflicts=True,
        )
    return locked()


def _no_data_heard(
    rule: RuleRow,
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
    rule: RuleRow,
    state: RuleState,
    alarm: Alarm | None,
    points: list[tuple[int, Value]],
    received_at: datetime,
    changes: Changes,
    uid: str,
) -> Alarm | None:
    """Step the rule through the readings in device-time order; record every change."""
    spec = rule_spec(rule)
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
