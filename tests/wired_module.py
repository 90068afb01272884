"""A module wired by test_di_compat: functions using @inject + Provide[...]."""

from __future__ import annotations

from typing import Any

from dependency_injector.wiring import Provide, inject


@inject
def sync_agent(agent: Any = Provide["agent"]) -> Any:
    return agent


@inject
async def async_agent(agent: Any = Provide["agent"]) -> Any:
    return agent
