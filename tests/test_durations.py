"""Durations: seconds or a timedelta, refused with the parameter's name otherwise."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest

from userscope._durations import to_seconds, to_seconds_or_none


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(1, 1.0), (0.25, 0.25), (timedelta(hours=1), 3600.0), (timedelta(milliseconds=5), 0.005)],
)
def test_seconds_and_timedeltas_are_accepted(value: object, seconds: float) -> None:
    assert to_seconds("max_age", value) == seconds
    assert to_seconds_or_none("max_age", value) == seconds


@pytest.mark.parametrize("value", ["60", True, None, [1], object()])
def test_other_types_are_refused_naming_the_parameter(value: object) -> None:
    with pytest.raises(TypeError, match=r"^idle_timeout must be a number of seconds"):
        to_seconds("idle_timeout", value)


@pytest.mark.parametrize(
    "value", [0, -1, 0.0, -0.5, math.nan, math.inf, timedelta(0), timedelta(seconds=-3)]
)
def test_zero_negative_and_non_finite_are_refused(value: object) -> None:
    with pytest.raises(ValueError, match=r"^cleanup_timeout must be a positive, finite duration"):
        to_seconds("cleanup_timeout", value)


def test_none_passes_through_only_where_allowed() -> None:
    assert to_seconds_or_none("idle_timeout", None) is None
    with pytest.raises(TypeError):
        to_seconds("idle_timeout", None)
