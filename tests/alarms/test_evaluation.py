"""Rules evaluated by the real store, in the batch's transaction, on PostgreSQL."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from alarms.evaluation import _states_locked
from alarms.models import Alarm, AlarmEvent, AlarmRule, Delivery, Revision, RuleState, Webhook
from core.moments import ms_to_datetime
from telemetry.services import readings_store_batch
from tests.alarms.conftest import RECEIVED, T0, make_rule, store
from tests.factories import make_device, make_user

pytestmark = pytest.mark.django_db(transaction=True)


def timeline() -> list[tuple]:
    return list(
        Alarm.objects.order_by("id").values_list("state", "value", "peak", "started", "cleared")
    )


def kinds() -> list[str]:
    return list(AlarmEvent.objects.order_by("id").values_list("kind", flat=True))


@pytest.fixture
def owner():
    return make_user()


@pytest.fixture
def device(owner):
    return make_device(owner, "ev-1")[0]


def test_above_raises_with_the_reading_and_clears_at_or_below_the_threshold(owner, device):
    make_rule(owner, device, condition="above", threshold=10)
    stored = store("ev-1", [(0, 5), (1000, 11), (2000, 12), (3000, 10)])
    [(state, value, peak, _, cleared)] = timeline()
    assert (state, value, peak) == ("cleared", 11, 12)
    assert cleared is not None
    assert kinds() == ["raised", "updated", "cleared"]
    assert [change.event for change in stored.alarms] == kinds()
    assert not RuleState.objects.exists()  # idle again: no state row, no writes


def test_below_tracks_the_lowest_value_as_peak(owner, device):
    make_rule(owner, device, condition="below", threshold=0)
    store("ev-1", [(0, -1), (1000, -5), (2000, -3)])
    alarm = Alarm.objects.get()
    assert (alarm.state, alarm.value, alarm.peak) == ("active", -1, -5)


def test_outside_raises_on_either_side_and_clears_inside_the_band(owner, device):
    make_rule(owner, device, condition="outside", low=10, high=20)
    store("ev-1", [(0, 15), (1000, 25), (2000, 3), (3000, 20), (4000, 9.5)])
    # 3 is farther outside (7 below) than 25 (5 above): the peak.
    assert [row[:3] for row in timeline()] == [("cleared", 25, 3), ("active", 9.5, 9.5)]


@pytest.mark.parametrize(
    ("expected", "readings", "raised"),
    [
        (True, [False, True, 1, "true", False, True], [True, True]),
        ("open", ["closed", "open", 1, True], ["open"]),
        (3, [2, 3.0, "3", True, 3], [3.0]),
    ],
)
def test_equals_compares_with_the_json_type(owner, device, expected, readings, raised):
    make_rule(owner, device, condition="equals", value=expected)
    store("ev-1", [(i * 1000, value) for i, value in enumerate(readings)])
    assert [alarm.value for alarm in Alarm.objects.order_by("id")] == raised


def test_numeric_conditions_ignore_strings_and_booleans(owner, device):
    make_rule(owner, device, condition="above", threshold=0.5)
    store("ev-1", [(0, True), (1000, "9")])
    assert not Alarm.objects.exists()


def test_for_needs_the_condition_on_every_reading_for_that_long_in_device_time(owner, device):
    make_rule(owner, device, condition="above", threshold=10, for_seconds=10)
    # Holds 0..9 s, broken at 9.5 s, holds again from 12 s and raises at 22 s.
    store("ev-1", [(0, 11), (5000, 12), (9500, 3), (12_000, 11), (21_000, 11)])
    assert not Alarm.objects.exists()
    state = RuleState.objects.get()
    assert state.pending_since == T0 + 12_000
    store("ev-1", [(22_000, 13)])
    alarm = Alarm.objects.get()
    assert (alarm.value, alarm.started.timestamp() * 1000) == (13, T0 + 22_000)


def test_pending_for_timer_survives_between_batches_in_the_database(owner, device):
    make_rule(owner, device, condition="above", threshold=10, for_seconds=5)
    store("ev-1", [(0, 11)])
    assert RuleState.objects.get().pending_since == T0
    store("ev-1", [(5000, 11)])
    assert Alarm.objects.get().state == "active"


def test_value_oscillating_around_the_threshold_raises_one_alarm_with_hysteresis(owner, device):
    make_rule(owner, device, condition="above", threshold=30, clear=25)
    points = [(i * 1000, 30.5 if i % 2 else 29.5) for i in range(40)]
    for start in range(0, 40, 7):
        store("ev-1", points[start : start + 7])
    assert Alarm.objects.count() == 1
    assert Alarm.objects.get().state == "active"
    store("ev-1", [(41_000, 25)])
    assert Alarm.objects.get().state == "cleared"


def test_a_cleared_alarm_re_raises_as_a_new_alarm(owner, device):
    make_rule(owner, device, condition="above", threshold=10)
    store("ev-1", [(0, 11), (1000, 9), (2000, 12)])
    assert [state for state, *_ in timeline()] == ["cleared", "active"]


def test_redelivered_batch_changes_nothing(owner, device):
    make_rule(owner, device, condition="above", threshold=10)
    points = [(0, 11), (1000, 9), (2000, 12)]
    store("ev-1", points)
    before = (timeline(), kinds(), list(RuleState.objects.values()))
    again = store("ev-1", points)
    assert again.alarms == []
    assert (timeline(), kinds(), list(RuleState.objects.values())) == before


def test_a_reading_older_than_the_last_evaluated_one_does_not_flip_the_state(owner, device):
    make_rule(owner, device, condition="above", threshold=10)
    store("ev-1", [(5000, 11)])
    store("ev-1", [(1000, 2)])  # late, and would clear
    assert Alarm.objects.get().state == "active"
    assert RuleState.objects.get().last_ts == T0 + 5000


def test_rule_for_all_devices_covers_a_device_registered_later(owner, device):
    make_rule(owner, None, condition="above", threshold=10)
    make_device(owner, "ev-later")
    store("ev-later", [(0, 50)])
    alarm = Alarm.objects.get()
    assert alarm.device.uid == "ev-later"


def test_rules_see_only_their_owners_devices(owner, device):
    make_rule(make_user(), None, condition="above", threshold=10)
    store("ev-1", [(0, 50)])
    assert not Alarm.objects.exists()


def test_disabled_rule_does_nothing(owner, device):
    make_rule(owner, device, condition="above", threshold=10, enabled=False)
    store("ev-1", [(0, 50)])
    assert not Alarm.objects.exists()
    assert not RuleState.objects.exists()


def test_a_batch_without_matching_rules_costs_one_query_and_touches_no_state(owner, device):
    make_rule(owner, device, condition="above", threshold=10, metric="other")
    store("ev-1", [(0, 0)])  # reads the owner's rules once
    with CaptureQueriesContext(connection) as queries:
        store("ev-1", [(i, i) for i in range(1, 100)])
    alarm_queries = [q["sql"] for q in queries if "alarms_" in q["sql"]]
    assert len(alarm_queries) == 1, alarm_queries
    assert "alarms_revision" in alarm_queries[0]


def test_a_batch_with_an_open_alarm_costs_the_revision_the_states_lock_and_their_update(
    owner, device
):
    make_rule(owner, None, condition="above", threshold=10)
    make_rule(owner, device, condition="below", threshold=-10)
    store("ev-1", [(0, 11)])  # opens an alarm: its state is kept
    with CaptureQueriesContext(connection) as queries:
        store("ev-1", [(1000 + i, 11) for i in range(100)])  # no change: no events
    statements = [q["sql"] for q in queries if "alarms_" in q["sql"]]
    assert len(statements) == 3, statements
    assert "alarms_revision" in statements[0]
    assert "FOR UPDATE" in statements[1]
    assert "UPDATE alarms_rulestate" in statements[2]


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda rule: AlarmRule.objects.update(threshold=100), id="bulk-update"),
        pytest.param(lambda rule: _sql("UPDATE alarms_alarmrule SET enabled = false"), id="sql"),
        pytest.param(lambda rule: rule.delete(), id="delete"),
    ],
)
def test_the_next_batch_sees_any_change_to_the_rules(owner, device, change):
    rule = make_rule(owner, None, condition="above", threshold=10)
    store("ev-1", [(0, 50)])  # the rules are read and kept
    store("ev-1", [(1000, 5)])  # cleared by the kept rule
    assert Alarm.objects.filter(state="active").count() == 0
    change(rule)
    store("ev-1", [(2000, 50)])
    assert Alarm.objects.filter(state="active").count() == 0


def test_the_next_batch_sees_a_new_rule(owner, device):
    make_rule(owner, device, condition="above", threshold=1000)
    store("ev-1", [(0, 50)])  # the owner's rules are read and kept
    make_rule(owner, device, condition="above", threshold=10)
    store("ev-1", [(1000, 50)])
    assert Alarm.objects.filter(state="active").count() == 1


def test_a_rule_another_connection_commits_is_seen_by_the_next_batch(owner, device):
    make_rule(owner, device, condition="above", threshold=10, metric="other")
    store("ev-1", [(0, 50)])  # the owner's rules are read and kept

    def create() -> None:
        make_rule(owner, device, condition="above", threshold=10)
        connection.close()

    thread = threading.Thread(target=create)
    thread.start()
    thread.join(10)
    store("ev-1", [(1000, 50)])
    assert Alarm.objects.filter(state="active").count() == 1


def test_without_a_revision_row_every_batch_reads_the_rules(owner, device):
    make_rule(owner, device, condition="above", threshold=10, metric="other")
    Revision.objects.filter(pk=Revision.RULES).delete()
    store("ev-1", [(0, 0)])
    with CaptureQueriesContext(connection) as queries:
        store("ev-1", [(1, 1)])
    assert any("alarms_alarmrule" in q["sql"] for q in queries)


def _sql(statement: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(statement)


def test_two_workers_storing_one_device_at_once_raise_one_alarm(owner, device):
    make_rule(owner, device, condition="above", threshold=10)
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def worker(offset: int) -> None:
        try:
            barrier.wait(5)
            readings_store_batch(
                readings=[("ev-1", "t", T0 + offset + i * 10, 50) for i in range(50)],
                received_at=RECEIVED,
            )
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(offset,)) for offset in (0, 5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert Alarm.objects.count() == 1
    assert kinds().count("raised") == 1


def test_condition_returning_while_active_updates_value_and_peak_in_one_event(owner, device):
    make_rule(owner, device, condition="above", threshold=30, clear=25)
    store("ev-1", [(0, 31)])
    store("ev-1", [(1000, 27), (2000, 32), (3000, 28), (4000, 31.5)])
    alarm = Alarm.objects.get()
    assert (alarm.state, alarm.value, alarm.peak) == ("active", 31.5, 32)
    assert kinds() == ["raised", "updated"]


def test_idle_rules_cost_no_writes(owner, device):
    make_rule(owner, None, condition="above", threshold=1000)
    make_rule(owner, device, condition="below", threshold=-1000)
    store("ev-1", [(0, 1)])
    with CaptureQueriesContext(connection) as queries:
        store("ev-1", [(1000 + i, i) for i in range(100)])
    writes = [
        q["sql"] for q in queries if "alarms_" in q["sql"] and not q["sql"].startswith("SELECT")
    ]
    assert writes == []
    assert not RuleState.objects.exists()


def test_a_late_reading_does_not_raise_once_a_newer_one_is_stored(owner, device):
    make_rule(owner, device, condition="above", threshold=10)
    store("ev-1", [(5000, 1)])  # idle: nothing remembered but the stored reading
    store("ev-1", [(1000, 50), (6000, 2)])  # 1000 is late; 6000 is new and does not hold
    assert not Alarm.objects.exists()
    store("ev-1", [(7000, 50)])
    assert Alarm.objects.get().value == 50


def test_changes_say_whether_a_webhook_delivery_was_written(owner, device):
    # The ingest worker wakes its delivery loop only for changes that were (no query per batch).
    make_rule(owner, device, condition="above", threshold=10)
    stored = store("ev-1", [(0, 11)])
    assert [change.notified for change in stored.alarms] == [False]
    Webhook.objects.create(owner=owner, url="https://hooks.example.com/x", secret="s" * 32)
    stored = store("ev-1", [(1000, 5)])
    assert [(change.event, change.notified) for change in stored.alarms] == [("cleared", True)]
    assert Delivery.objects.get().event == "alarm.cleared"


def test_the_next_batch_sees_any_change_to_the_webhooks(owner, device):
    make_rule(owner, device, condition="above", threshold=10)
    # Someone else's webhook: the webhooks have a revision, so the owner's are kept.
    Webhook.objects.create(owner=make_user(), url="https://hooks.example.com/o", secret="s" * 32)
    assert Revision.objects.filter(pk=Revision.WEBHOOKS).exists()
    assert [change.notified for change in store("ev-1", [(0, 11)]).alarms] == [False]
    Webhook.objects.create(owner=owner, url="https://hooks.example.com/x", secret="s" * 32)
    assert [change.notified for change in store("ev-1", [(1000, 5)]).alarms] == [True]
    Webhook.objects.filter(owner=owner).update(enabled=False)
    assert [change.notified for change in store("ev-1", [(2000, 11)]).alarms] == [False]


def test_one_batch_raising_several_alarms_gives_each_its_own_events(owner, device):
    hot = make_rule(owner, device, condition="above", threshold=10, clear=5)
    cold = make_rule(owner, device, condition="below", threshold=0)
    store("ev-1", [(0, 50), (1000, 1), (2000, 60), (3000, -5)])
    events = [
        (event.kind, event.alarm.rule_id, event.alarm.value, event.alarm.state)
        for event in AlarmEvent.objects.select_related("alarm").order_by("id")
    ]
    assert events == [
        ("raised", hot.pk, 50, "cleared"),
        ("cleared", hot.pk, 50, "cleared"),
        ("raised", hot.pk, 60, "cleared"),
        ("cleared", hot.pk, 60, "cleared"),
        ("raised", cold.pk, -5, "active"),
    ]
    assert RuleState.objects.get(rule=cold).alarm.value == -5


def test_a_state_another_transaction_creates_meanwhile_is_locked_and_read_all_the_same(
    owner, device
):
    # The create-and-lock statement cannot see a state committed after it began: the
    # insert waits for the other transaction, then does nothing; a second read locks it.
    rule = make_rule(owner, device, condition="above", threshold=10)
    pair = (rule.pk, device.pk)
    created, release = threading.Event(), threading.Event()

    def other() -> None:
        with transaction.atomic():
            RuleState.objects.create(rule=rule, device=device, pending_since=123)
            created.set()
            release.wait(10)
        connection.close()

    def release_once_waiting() -> None:
        deadline = time.monotonic() + 10
        with connection.cursor() as cursor:
            while time.monotonic() < deadline and not release.is_set():
                cursor.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND datname = current_database()"
                )
                if cursor.fetchone()[0]:
                    release.set()
                time.sleep(0.01)
        connection.close()

    threads = [threading.Thread(target=other), threading.Thread(target=release_once_waiting)]
    threads[0].start()
    assert created.wait(10)
    threads[1].start()
    with transaction.atomic():
        states = _states_locked({pair}, {pair})
    for thread in threads:
        thread.join(10)
    assert release.is_set()
    assert states[pair].pending_since == 123


def test_a_batch_that_clears_an_open_alarm_and_raises_the_next_keeps_one_open(owner, device):
    rule = make_rule(owner, device, condition="above", threshold=10, clear=5)
    store("ev-1", [(0, 50)])
    store("ev-1", [(1000, 1), (2000, 60)])
    assert timeline() == [
        ("cleared", 50, 50, datetime_of(0), datetime_of(1000)),
        ("active", 60, 60, datetime_of(2000), None),
    ]
    assert RuleState.objects.get(rule=rule).alarm == Alarm.objects.get(state="active")
    assert kinds() == ["raised", "cleared", "raised"]


def datetime_of(offset: int):
    return ms_to_datetime(T0 + offset)
