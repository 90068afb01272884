"""A module wired by test_validation_guard: `Provide[...]` over a never-validated container."""

from __future__ import annotations

from typing import Any

from dependency_injector import containers, providers
from dependency_injector.wiring import Provide, inject

import userscope as us


class Agent:
    def __init__(self, ctx: us.UserExecutionContext) -> None:
        self.user_id = ctx.user_id


class Holder:
    def __init__(self, agent: Agent) -> None:
        self.agent = agent


class CaptiveContainer(containers.DeclarativeContainer):
    context = us.CurrentContext()
    agent = us.RequestScoped(Agent, context)
    holder = providers.Singleton(Holder, agent)


@inject
def use_holder(holder: Any = Provide[CaptiveContainer.holder]) -> Any:
    return holder


@inject
async def use_agent(agent: Any = Provide[CaptiveContainer.agent]) -> Any:
    return agent
