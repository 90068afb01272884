"""Typing test (checked by mypy --strict): ``Inject(provider: Provider[T]) -> T``.

The ``# type: ignore[assignment]`` below is an *expected* error: with
``warn_unused_ignores`` (part of ``--strict``) mypy fails if it ever disappears.
"""

from __future__ import annotations

from typing import Annotated, assert_type

from dependency_injector import containers
from fastapi import params as fastapi_params

import userscope as us
from userscope.adapters.fastapi import Inject


class Agent:
    pass


class Registry:
    pass


class Wrong:
    pass


class Container(containers.DeclarativeContainer):
    context = us.CurrentContext()
    registry = us.UserScoped(Registry)
    agent = us.RequestScoped(Agent)


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


def test_inject_is_a_fastapi_dependency_at_runtime() -> None:
    marker = Inject(Container.agent)
    assert isinstance(marker, fastapi_params.Depends)
    assert callable(marker.dependency)
