"""The shortcut test a rule keeps (meeting) agrees with fits and holds on every value."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alarms.conditions import Spec, fits, holds, meeting

VALUES = (
    st.floats()  # NaN and the infinities included
    | st.integers(-(2**53), 2**53)
    | st.booleans()
    | st.text(max_size=5)
)
LEVELS = st.none() | st.floats(allow_nan=False, allow_infinity=False, width=32)
SPECS = st.builds(
    Spec,
    condition=st.sampled_from(["above", "below", "outside", "equals"]),
    threshold=LEVELS,
    low=LEVELS,
    high=LEVELS,
    value=VALUES,
)


@given(SPECS, VALUES)
def test_meeting_agrees_with_fits_and_holds(spec, value):
    assert meeting(spec)(value) == (fits(spec, value) and holds(spec, value))


@pytest.mark.parametrize("condition", ["above", "below"])
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, 30.0, 10.0, 20.0, 30, True, "30"])
def test_meeting_on_the_edges(condition, value):
    spec = Spec(condition=condition, threshold=20.0)
    assert meeting(spec)(value) == (fits(spec, value) and holds(spec, value))
