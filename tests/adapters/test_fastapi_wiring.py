"""dependency-injector wiring (`Depends(Provide[...])` with `@inject`) inside the scope."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

from adapter_support import SECRET, make_token
from dependency_injector import containers
from dependency_injector.wiring import Provide, inject
from fastapi import APIRouter, Depends, FastAPI
from fastapi.testclient import TestClient

import userscope as us
from userscope.adapters.fastapi import JWTAuthenticator, install

closed: list[str] = []


class Agent:
    def __init__(self, context: us.UserExecutionContext) -> None:
        self.user_id = context.user_id
        self.request_id = context.request_id


def open_agent(context: us.UserExecutionContext) -> Iterator[Agent]:
    agent = Agent(context)
    yield agent
    closed.append(agent.request_id)


class WiredContainer(containers.DeclarativeContainer):
    context = us.CurrentContext()
    agent = us.RequestScoped(open_agent, context)


router = APIRouter()


@router.get("/wired")
@inject
async def wired(agent: Agent = Depends(Provide[WiredContainer.agent])) -> dict[str, Any]:
    return {"user_id": agent.user_id, "request_id": agent.request_id}


@router.get("/wired-sync")
@inject
def wired_sync(agent: Agent = Depends(Provide[WiredContainer.agent])) -> dict[str, Any]:
    return {"user_id": agent.user_id}


def test_wiring_with_inject_and_provide_resolves_inside_the_scope() -> None:
    container = WiredContainer()
    container.wire(modules=[sys.modules[__name__]])
    try:
        app = FastAPI()
        app.include_router(router)
        install(
            app,
            container,
            us.UserSessions(),
            authenticate=JWTAuthenticator(
                key=SECRET, algorithms=["HS256"], audience="userscope-tests"
            ),
        )
        with TestClient(app) as client:
            alice = client.get("/wired", headers={"Authorization": f"Bearer {make_token('alice')}"})
            bob = client.get(
                "/wired-sync", headers={"Authorization": f"Bearer {make_token('bob')}"}
            )
            with_no_token = client.get("/wired")
    finally:
        container.unwire()
    assert alice.json()["user_id"] == "alice"
    assert bob.json() == {"user_id": "bob"}
    assert alice.json()["request_id"] in closed  # cleanup ran at the end of the request
    assert len(closed) == 2
    # wiring resolves inside the endpoint: with no user, OutOfScopeError becomes a 401
    assert with_no_token.status_code == 401
    assert with_no_token.json()["error"] == "unauthenticated"
