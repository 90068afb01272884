"""Typing test (checked by mypy --strict): ``Inject(provider: Provider[T]) -> T``.

The ``# type: ignore[assignment]`` comments below are *expected* errors: with
``warn_unused_ignores`` (part of ``--strict``) mypy fails if one ever disappears.
The errors on ``Annotated[...]`` parameters and ``Provide[...]`` defaults come from the
``userscope.mypy`` plugin (enabled in pyproject.toml); without it mypy accepts them.
"""

from __future__ import annotations

from typing import Annotated, Any, assert_type

from dependency_injector import containers, providers
from dependency_injector.wiring import Provide, inject
from fastapi import Depends
from fastapi import params as fastapi_params

import userscope as us
from userscope.adapters.fastapi import Inject


class Agent:
    pass


class Registry:
    pass


class Wrong:
    pass


async def load_agent() -> Agent:
    return Agent()


class Container(containers.DeclarativeContainer):
    context = us.CurrentContext()
    registry = us.UserScoped(Registry)
    agent = us.RequestScoped(Agent)
    async_agent = us.RequestScoped(load_agent)
    name = providers.Object("x")


assert_type(Inject(Container.agent), Agent)
assert_type(Inject(Container.registry), Registry)
assert_type(Inject(Container.context), us.UserExecutionContext)

right: Agent = Inject(Container.agent)
wrong: Wrong = Inject(Container.agent)  # type: ignore[assignment]


async def endpoint(
    registry: Annotated[Registry, Inject(Container.registry)],
    agent: Agent = Inject(Container.agent),
) -> Agent:
    assert_type(registry, Registry)
    return agent


AgentDep = Annotated[Agent, Inject(Container.agent)]
WrongDep = Annotated[Wrong, Inject(Container.agent)]  # not checked: mypy drops alias metadata


async def annotated_endpoint(
    agent: AgentDep,
    awaited: Annotated[Agent, Inject(Container.async_agent)],  # Inject awaits async providers
    context: Annotated[us.UserExecutionContext, Inject(Container.context)],
    anything: Annotated[object, Inject(Container.agent)],  # a supertype is fine
    wrong: Annotated[Wrong, Inject(Container.agent)],  # type: ignore[assignment]
    not_a_context: Annotated[str, Inject(Container.context)],  # type: ignore[assignment]
    wrong_provide: Annotated[Wrong, Provide[Container.agent]],  # type: ignore[assignment]
    wrong_depends: Annotated[Wrong, Depends(Provide[Container.agent])],  # type: ignore[assignment]
) -> None:
    assert_type(agent, Agent)


@inject
def wired(
    agent: Agent = Provide[Container.agent],
    name: str = Provide[Container.name],
    by_name: int = Provide["anything"],  # a name: not checked
    depends: Agent = Depends(Provide[Container.agent]),
    wrong: Wrong = Provide[Container.agent],  # type: ignore[assignment]
    wrong_name: int = Provide[Container.name],  # type: ignore[assignment]
    wrong_depends: Wrong = Depends(Provide[Container.agent]),  # type: ignore[assignment]
) -> Any:
    assert_type(Provide[Container.registry], Registry)
    return agent


def test_inject_is_a_fastapi_dependency_at_runtime() -> None:
    marker = Inject(Container.agent)
    assert isinstance(marker, fastapi_params.Depends)
    assert callable(marker.dependency)
