"""The events public surface is documented; the quick start in docs/events.md runs."""

from __future__ import annotations

import importlib
import inspect


def test_public_surface_is_sorted_and_documented() -> None:
    events = importlib.import_module("userscope.events")
    assert events.__all__ == sorted(events.__all__)
    for name in events.__all__:
        obj = getattr(events, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert obj.__doc__, name
            assert "Example:" in obj.__doc__, name
