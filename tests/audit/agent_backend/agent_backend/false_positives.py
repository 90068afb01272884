"""Process-wide objects that hold nothing per user: no finding here."""

import logging
import re
from functools import lru_cache

import httpcore


class Settings:
    debug = False


class NullRegistry:
    """A stateless stub: nothing to share."""

    def register(self, user_id, agent):
        return None


registry = NullRegistry()
_settings = None
_logger = None
_patterns = {}
_numpy = None
_EXC_MAP = {}
_name = ""
_bridge = None


def get_settings():
    global _settings
    if _settings is None:
        _settings = Settings()
    return _settings


def __getattr__(name):
    global _settings
    if _settings is None:
        _settings = Settings()
    return getattr(_settings, name)


def get_logger():
    global _logger
    if _logger is None:
        _logger = logging.getLogger("agent")
    return _logger


def pattern():
    global _PATTERN
    _PATTERN = re.compile(r"\d+")
    return _PATTERN


def numpy():
    global _numpy
    import numpy as _numpy

    return _numpy


def _load_exceptions():
    return {httpcore.ReadError: ValueError, httpcore.WriteError: OSError}


def map_exceptions():
    global _EXC_MAP
    if not _EXC_MAP:
        _EXC_MAP = _load_exceptions()
    return _EXC_MAP


def set_name(first, last):
    global _name
    _name = f"{first} {last}"


def set_bridge(bridge):
    global _bridge
    _bridge = bridge


def reset_bridge():
    global _bridge
    _bridge = None


@lru_cache
def type_table() -> dict[str, type]:
    return {"int": int, "str": str}
