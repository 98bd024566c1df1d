"""Random reading sequences through the real store and evaluator match a simple reference.

Out of order, duplicated and redelivered in overlapping batches: the alarm
timeline the hub stores equals what a few lines of plain Python say it should be.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alarms.models import Alarm
from tests.alarms.conftest import T0, make_rule, store
from tests.factories import make_device, make_user

pytestmark = pytest.mark.django_db(transaction=True)

_uids = itertools.count(1)


def reference(condition: str, threshold: float, clear: float, for_s: int, batches) -> list:
    """The README's definitions, read literally, for above/below with `for` and `clear`."""
    stored: set[int] = set()
    last = pending = None
    holding = False
    alarm: list | None = None
    alarms: list[list] = []
    for batch in batches:
        new: dict[int, float] = {}
        for ts, value in batch:
            if ts not in stored and ts not in new:
                new[ts] = value
        stored |= set(new)
        for ts in sorted(new):
            value = new[ts]
            if last is not None and ts < last:
                continue
            last = ts
            meets = value > threshold if condition == "above" else value < threshold
            cleared = value <= clear if condition == "above" else value >= clear
            was, holding = holding, meets
            if alarm is not None:
                if cleared:
                    alarm[1] = ts
                    alarm = None
                    pending = None
                elif meets:
                    if not was:
                        alarm[2] = value
                    better = value > alarm[3] if condition == "above" else value < alarm[3]
                    if better:
                        alarm[3] = value
            elif meets:
                pending = ts if pending is None else pending
                if ts - pending >= for_s * 1000:
                    alarm = [ts, None, value, value]
                    alarms.append(alarm)
                    pending = None
            else:
                pending = None
    return [tuple(item) for item in alarms]


readings = st.lists(
    st.tuples(st.integers(0, 40).map(lambda s: s * 1000), st.integers(0, 10)),
    min_size=1,
    max_size=40,
)


@st.composite
def deliveries(draw):
    """Overlapping, shuffled and repeated slices of one sequence of readings."""
    sequence = draw(readings)
    batches = []
    for _ in range(draw(st.integers(1, 6))):
        start = draw(st.integers(0, len(sequence) - 1))
        end = draw(st.integers(start + 1, len(sequence)))
        batches.append(draw(st.permutations(sequence[start:end])))
    if draw(st.booleans()):
        batches.append(list(sequence))  # the whole thing redelivered
    return batches


@settings(max_examples=100, suppress_health_check=list(HealthCheck))
@given(
    condition=st.sampled_from(["above", "below"]),
    threshold=st.integers(2, 8),
    band=st.integers(0, 3),
    for_s=st.sampled_from([0, 0, 2, 5]),
    batches=deliveries(),
)
def test_alarm_timeline_equals_the_reference_evaluator(condition, threshold, band, for_s, batches):
    owner = make_user()
    device, _ = make_device(owner, f"prop-{next(_uids)}")
    clear = threshold - band if condition == "above" else threshold + band
    make_rule(
        owner, device, condition=condition, threshold=threshold, clear=clear, for_seconds=for_s
    )
    for batch in batches:
        store(device.uid, batch)
    stored = [
        (
            int(alarm.started.timestamp() * 1000) - T0,
            int(alarm.cleared.timestamp() * 1000) - T0 if alarm.cleared else None,
            alarm.value,
            alarm.peak,
        )
        for alarm in Alarm.objects.filter(device=device).order_by("id")
    ]
    assert stored == reference(condition, threshold, clear, for_s, batches)
    assert sum(1 for alarm in stored if alarm[1] is None) <= 1
