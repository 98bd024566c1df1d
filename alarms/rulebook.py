"""The enabled rules as evaluation reads them, kept per process while the database says they hold.

Every batch needs the rules of its devices' owners; reading them each time cost a
query returning a row per rule per batch (500 rows for the alarms bench row's
batches). Instead each process keeps the rules it has read, per owner, tagged with
the rules' revision: a database trigger (migration 0002) writes a new random
revision in the same transaction as any change to the rules table, whoever makes
it (REST, admin, shell, a bulk UPDATE, a cascade). A batch reads the revision,
one row by primary key, and reloads only when it differs. A revision read before
a change commits tags rules read no earlier: the next batch sees the new revision.
"""

from __future__ import annotations

import threading
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from django.db import connection

from alarms.conditions import Spec
from alarms.models import AlarmRule, RulesRevision


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
_REVISION = f"SELECT revision FROM {RulesRevision._meta.db_table} WHERE id = %s"  # noqa: S608


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
    return Rule(rule_id, owner_id, device_id, name, metric, condition, silence, severity, spec)


class Rulebook:
    """The enabled rules of some owners as of one revision: owner id -> metric -> rules."""

    def __init__(self, revision: int | None) -> None:
        self.revision = revision
        self._owners: dict[int, dict[str, list[Rule]]] = {}

    def rules(self, owners: Collection[int], metrics: Collection[str]) -> list[Rule]:
        """Return the owners' enabled rules on these metrics, reading the owners not kept yet."""
        missing = [owner_id for owner_id in owners if owner_id not in self._owners]
        if missing:
            loaded: dict[int, dict[str, list[Rule]]] = {owner_id: {} for owner_id in missing}
            for row in (
                AlarmRule.objects.filter(owner_id__in=missing, enabled=True)
                .order_by("id")
                .values_list(*COLUMNS)
            ):
                rule = _rule(row)
                loaded[rule.owner_id].setdefault(rule.metric, []).append(rule)
            self._owners.update(loaded)
        found: list[Rule] = []
        for owner_id in owners:
            by_metric = self._owners[owner_id]
            if by_metric:
                for metric in metrics:
                    found += by_metric.get(metric, ())
        return found


_lock = threading.Lock()
_kept = Rulebook(None)


def rulebook() -> Rulebook:
    """Return the rules as of the revision committed now: this process's, or a fresh book.

    Called in the batch's transaction. Without a revision row (a database just
    flushed) nothing is kept: every batch reads the rules, as it would without a book.
    """
    global _kept
    with connection.cursor() as cursor:
        cursor.execute(_REVISION, [RulesRevision.ROW])
        row = cursor.fetchone()
    revision = None if row is None else int(row[0])
    with _lock:
        if revision is None or _kept.revision != revision:
            book = Rulebook(revision)
            if revision is not None:
                _kept = book
            return book
        return _kept
