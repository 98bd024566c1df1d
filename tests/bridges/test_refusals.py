"""Refused new metrics are reported once per topic of the batch, naming the metrics."""

from __future__ import annotations

from bridges.mqtt.refusals import NAMES_LISTED, too_many_metrics
from telemetry.codec import TOO_MANY_METRICS, Reading


def test_refusals_are_reported_per_topic_with_their_readings_and_metric_names():
    readings = [
        Reading("d1", "a", 1, 1.0),  # devices/d1/telemetry
        Reading("d1", "new1", 1, 1.0),
        Reading("d2", "x", 1, 1.0),  # devices/d2/telemetry
        Reading("d1", "new1", 2, 2.0),  # devices/d1/senml
        Reading("d1", "new2", 2, 2.0),
        Reading("d1", "b", 2, 2.0),
    ]
    topics = [(0, "devices/d1/telemetry"), (2, "devices/d2/telemetry"), (3, "devices/d1/senml")]
    found = too_many_metrics(readings, topics, {"d1": {"new1": 2, "new2": 1}}, 200)
    assert [(topic, uid, count) for topic, uid, _, count in found] == [
        ("devices/d1/telemetry", "d1", 1),
        ("devices/d1/senml", "d1", 2),
    ]
    rejection = found[1][2]
    assert rejection.reason == TOO_MANY_METRICS
    assert "HUB_MAX_METRICS_PER_DEVICE=200" in rejection.detail
    assert rejection.detail.endswith("2 readings of 2 new metrics not stored: new1, new2")


def test_a_long_list_of_refused_metrics_is_cut_short():
    names = [f"m{i:03d}" for i in range(NAMES_LISTED + 5)]
    readings = [Reading("d1", name, 1, 1.0) for name in names]
    found = too_many_metrics(
        readings, [(0, "devices/d1/telemetry")], {"d1": dict.fromkeys(names, 1)}, 5
    )
    ((_, _, rejection, count),) = found
    assert count == NAMES_LISTED + 5
    assert rejection.detail.endswith(", ".join(names[:NAMES_LISTED]) + ", …")


def test_nothing_refused_or_a_malformed_reply_reports_nothing():
    readings = [Reading("d1", "a", 1, 1.0)]
    topics = [(0, "devices/d1/telemetry")]
    assert too_many_metrics(readings, topics, {}, 5) == []
    assert too_many_metrics(readings, topics, None, 5) == []
    assert too_many_metrics(readings, topics, {"d1": ["a"]}, 5) == []
