"""JSON-only event payloads: validation and encoding (never pickle)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from ._errors import EventPayloadError

__all__ = ["decode_event", "encode_event"]

_MAX_DEPTH = 64


def _check(value: object, path: str, depth: int) -> None:
    if depth > _MAX_DEPTH:
        raise EventPayloadError(path, f"nested deeper than {_MAX_DEPTH} levels")
    if value is None or isinstance(value, bool | str):
        return
    if isinstance(value, int):
        if type(value) is not int:
            raise EventPayloadError(path, f"{type(value).__name__} is an int subclass, not JSON")
        return
    if isinstance(value, float):
        if type(value) is not float or not math.isfinite(value):
            raise EventPayloadError(path, f"{value!r} is not a finite JSON number")
        return
    if type(value) is list:
        for index, item in enumerate(value):
            _check(item, f"{path}[{index}]", depth + 1)
        return
    if type(value) is dict:
        for key, item in value.items():
            if type(key) is not str:
                raise EventPayloadError(path, f"key {key!r} is {type(key).__name__}, not str")
            _check(item, f"{path}.{key}", depth + 1)
        return
    raise EventPayloadError(path, f"{type(value).__name__} is not JSON")


def encode_event(event: Mapping[str, Any], max_bytes: int) -> str:
    """Validate ``event`` as a JSON object and return its compact JSON text."""
    if not isinstance(event, Mapping):
        raise EventPayloadError(
            "$", f"the event must be a JSON object (dict), got {type(event).__name__}"
        )
    obj = dict(event)
    _check(obj, "$", 0)
    text = json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    size = len(text.encode())
    if size > max_bytes:
        raise EventPayloadError("$", f"{size} bytes encoded, more than max_event_bytes={max_bytes}")
    return text


def decode_event(text: str) -> dict[str, Any]:
    """Decode stored JSON text into a fresh dict (each subscriber gets its own copy)."""
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError("stored event is not a JSON object")
    return value
