"""Turns: batches stored at once write their readings in the order the worker took them."""

from __future__ import annotations

import threading

from telemetry.turns import Turns


def _waiting(turn) -> threading.Thread:  # type: ignore[no-untyped-def]
    thread = threading.Thread(target=turn.wait, daemon=True)
    thread.start()
    return thread


def test_a_turn_waits_for_every_turn_before_it():
    turns = Turns()
    first, second, third = turns.take(), turns.take(), turns.take()
    first.wait()  # the first never waits
    waiting = _waiting(third)
    second.end()  # out of order: the second failed early
    waiting.join(0.2)
    assert waiting.is_alive()  # the first is not over
    first.end()
    waiting.join(10)
    assert not waiting.is_alive()


def test_ending_a_turn_again_changes_nothing():
    turns = Turns()
    first, second, third = turns.take(), turns.take(), turns.take()
    first.end()
    first.end()
    second.wait()
    waiting = _waiting(third)
    waiting.join(0.2)
    assert waiting.is_alive()  # the second's turn is not over because the first ended twice
    second.end()
    waiting.join(10)
    assert not waiting.is_alive()
