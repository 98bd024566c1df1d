"""The rules and webhooks evaluation reads, kept per process while the database says they hold.

Every batch needs the rules of its devices' owners; reading them each time cost a
query returning a row per rule per batch (500 rows for the alarms bench row's
batches), and every batch that changes an alarm asked for its owners' webhooks.
Instead each process keeps what it has read, per owner, tagged with the two tables'
revisions: database triggers (migration 0002) write a new random revision in the
same transaction as any change to the rules or the webhooks, whoever makes it
(REST, admin, shell, a bulk UPDATE, a cascade). A batch reads the revisions, two
rows by primary key, and reads the rest again only when one differs. Revisions
read before a change commits tag rows read no earlier: the next batch sees the new
revision.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from django.db import connection

from alarms.conditions import Spec, Value, meeting
from alarms.models import AlarmRule, Revision
from alarms.outbox import webhooks_read


@dataclass(frozen=True, slots=True)
class Rule:
    """The columns of an enabled rule that evaluation reads, and its condition."""

    id: int
    owner_id: int
    device_id: int | None
    name: str
    metric: str
    condition: str
    silence: int | None
    severity: str
    spec: Spec
    # fits(spec, value) and holds(spec, value), made once (alarms.conditions.meeting).
    meets: Callable[[Value], bool] = field(compare=False, repr=False)


COLUMNS = (
    "id",
    "owner_id",
    "device_id",
    "name",
    "metric",
    "condition",
    "silence",
    "severity",
    "threshold",
    "low",
    "high",
    "value",
    "for_seconds",
    "clear",
)
_REVISIONS = f"SELECT id, revision FROM {Revision._meta.db_table} WHERE id IN (%s, %s)"  # noqa: S608


def _rule(row: tuple[Any, ...]) -> Rule:
    (rule_id, owner_id, device_id, name, metric, condition, silence, severity) = row[:8]
    threshold, low, high, value, for_seconds, clear = row[8:]
    spec = Spec(
        condition=condition,
        threshold=threshold,
        low=low,
        high=high,
        value=value,
        for_ms=for_seconds * 1000,
        clear=clear,
    )
    return Rule(
        rule_id,
        owner_id,
        device_id,
        name,
        metric,
        condition,
        silence,
        severity,
        spec,
        meeting(spec),
    )


@dataclass(slots=True)
class Watch:
    """An owner's enabled rules on one metric: for all their devices, and per device."""

    every_device: list[Rule] = field(default_factory=list)
    by_device: dict[int, list[Rule]] = field(default_factory=dict)


class Rulebook:
    """Some owners' enabled rules and webhooks as of one revision of each (None: not kept)."""

    def __init__(self, rules: int | None, webhooks: int | None, kept: Rulebook | None) -> None:
        """Start a book of these revisions, with what `kept` holds of the same ones."""
        self.revisions = (rules, webhooks)
        # owner id -> metric -> enabled rules; owner id -> enabled webhook ids.
        self._owners: dict[int, dict[str, Watch]] = {}
        self._webhooks: dict[int, list[int]] = {}
        if kept is not None:
            if rules is not None and kept.revisions[0] == rules:
                self._owners = kept._owners
            if webhooks is not None and kept.revisions[1] == webhooks:
                self._webhooks = kept._webhooks

    def rules(self, owners: Collection[int]) -> dict[int, dict[str, Watch]]:
        """Return owner id -> metric -> their rules, reading the owners not kept yet."""
        missing = [owner_id for owner_id in owners if owner_id not in self._owners]
        if missing:
            loaded: dict[int, dict[str, Watch]] = {owner_id: {} for owner_id in missing}
            for row in (
                AlarmRule.objects.filter(owner_id__in=missing, enabled=True)
                .order_by("id")
                .values_list(*COLUMNS)
            ):
                rule = _rule(row)
                watch = loaded[rule.owner_id].setdefault(rule.metric, Watch())
                if rule.device_id is None:
                    watch.every_device.append(rule)
                else:
                    watch.by_device.setdefault(rule.device_id, []).append(rule)
            self._owners.update(loaded)
        return {owner_id: self._owners[owner_id] for owner_id in owners if self._owners[owner_id]}

    def webhooks(self, owners: Collection[int]) -> dict[int, list[int]]:
        """Return owner id -> ids of their enabled webhooks, for those of the owners with any."""
        missing = [owner_id for owner_id in owners if owner_id not in self._webhooks]
        if missing:
            found = webhooks_read(missing)
            self._webhooks.update({owner_id: found.get(owner_id, []) for owner_id in missing})
        return {
            owner_id: self._webhooks[owner_id] for owner_id in owners if self._webhooks[owner_id]
        }


_lock = threading.Lock()
_kept = Rulebook(None, None, None)


def rulebook() -> Rulebook:
    """Return the rules and webhooks as of the revisions committed now, with what is kept of them.

    Called in the batch's transaction. Without a revision row (a database just
    flushed) its table's rows are not kept: every batch reads them, as without a book.
    """
    global _kept
    with connection.cursor() as cursor:
        cursor.execute(_REVISIONS, [Revision.RULES, Revision.WEBHOOKS])
        found = dict(cursor.fetchall())
    rules, webhooks = found.get(Revision.RULES), found.get(Revision.WEBHOOKS)
    with _lock:
        if _kept.revisions != (rules, webhooks) or rules is None or webhooks is None:
            _kept = Rulebook(rules, webhooks, _kept)
        return _kept
