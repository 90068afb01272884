"""Cached factories: zero-argument ones are hidden singletons."""

from __future__ import annotations

import functools
from functools import lru_cache
from typing import Any


class AgentFactory:
    def __init__(self) -> None:
        self.created: list[Any] = []


class AppSettings:
    debug = False


@lru_cache(maxsize=None)  # noqa: UP033 - the legacy spelling the audit must catch
def get_agent_factory() -> AgentFactory:
    return AgentFactory()


@functools.cache
def load_prompt_templates():  # type: ignore[no-untyped-def]
    return {"system": "You are a helpful agent."}


@lru_cache
def get_settings() -> AppSettings:
    return AppSettings()


@lru_cache(maxsize=128)
def tokenizer_for(model: str) -> str:
    return model.split("/")[-1]
