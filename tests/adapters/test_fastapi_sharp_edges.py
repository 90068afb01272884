"""Sharp edges of the FastAPI adapter, over a real uvicorn server with real clients.

* `Inject` on an app without `install()`: 500 and one log line saying to call it;
* a captive dependency introduced after `install()` validated the container is refused;
* a `RequestScoped` provider in a WebSocket endpoint's signature: the error names
  `message_scope` and shows how to use it;
* a failing per-message cleanup is logged and reported to that client as an error
  event, and the socket stays open.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from typing import Annotated, Any

import httpx
import pytest
from adapter_support import AUDIENCE, ISSUER, SECRET, make_token, serve
from dependency_injector import containers, providers
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

import userscope as us
from userscope.adapters.fastapi import (
    Inject,
    JWTAuthenticator,
    NotInstalledError,
    install,
    message_scope,
)

LOGGER = "userscope.adapters.fastapi"


class Worker:
    def __init__(self, ctx: us.UserExecutionContext) -> None:
        self.user_id = ctx.user_id


class Holder:
    def __init__(self, item: Any) -> None:
        self.item = item


cleanups: list[str] = []


def open_flaky(ctx: us.UserExecutionContext) -> Iterator[Worker]:
    yield Worker(ctx)
    cleanups.append(ctx.request_id)
    raise RuntimeError("secret detail of the failing cleanup")


class Container(containers.DeclarativeContainer):
    context = us.CurrentContext()
    greeting = providers.Object("hello")
    registry = us.UserScoped(dict)
    worker = us.RequestScoped(Worker, context)
    flaky = us.RequestScoped(open_flaky, context)


class Other(containers.DeclarativeContainer):  # never installed, never validated
    context = us.CurrentContext()
    worker = us.RequestScoped(Worker, context)
    holder = providers.Singleton(Holder, worker)


def bearer(sub: str = "alice") -> dict[str, str]:
    return {"Authorization": f"Bearer {make_token(sub)}"}


def authenticator() -> JWTAuthenticator:
    return JWTAuthenticator(key=SECRET, algorithms=["HS256"], audience=AUDIENCE, issuer=ISSUER)


def add_routes(app: FastAPI, container: Container) -> None:
    @app.get("/worker")
    async def worker(worker: Annotated[Worker, Inject(Container.worker)]) -> dict[str, Any]:
        return {"user_id": worker.user_id}

    @app.get("/greeting")
    async def greeting(text: Annotated[str, Inject(Container.greeting)]) -> dict[str, Any]:
        return {"text": text}

    @app.websocket("/ws-worker")
    async def ws_worker(
        websocket: WebSocket, worker: Annotated[Worker, Inject(Container.worker)]
    ) -> None:
        await websocket.accept()  # pragma: no cover - refused while resolving `worker`

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            async for text in websocket.iter_text():
                async with message_scope(websocket) as ctx:
                    if text == "flaky":
                        got = await container.flaky.async_()
                    else:
                        got = await container.worker.async_()
                    await websocket.send_json({"text": text, "user_id": got.user_id})
                    if text == "boom":
                        raise RuntimeError("the handler failed")
                    del got
                assert us.current_context() is not ctx  # the message scope is closed
        except WebSocketDisconnect:
            pass


def records(caplog: pytest.LogCaptureFixture, event: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "userscope_event", None) == event]


async def test_inject_without_install_is_a_500_with_one_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = FastAPI()
    add_routes(app, Container())
    caplog.set_level(logging.INFO, logger=LOGGER)
    with serve(app) as server:
        async with httpx.AsyncClient(base_url=server.http, timeout=15) as client:
            signed = await client.get("/worker", headers=bearer())
            anonymous = await client.get("/worker")
            plain = await client.get("/greeting")  # a provider that needs no scope still works
        with pytest.raises(InvalidStatus) as info:
            async with connect(f"{server.ws}/ws-worker", additional_headers=bearer()):
                pass  # pragma: no cover - refused before accept
    assert (signed.status_code, anonymous.status_code) == (500, 500)  # never a 401
    assert "invalid credentials" not in signed.text
    assert plain.json() == {"text": "hello"}
    assert info.value.response.status_code == 403  # uvicorn's answer to close-before-accept
    logged = records(caplog, "not_installed")
    assert [r.getMessage().split(" needs ")[0] for r in logged] == [
        "/worker",
        "/worker",
        "/ws-worker",
    ]
    for record in logged:
        assert record.name == LOGGER
        assert record.levelno == logging.ERROR
        assert record.exc_info is None  # one line, no traceback
        assert record.userscope_provider == "Container.worker"  # type: ignore[attr-defined]
        assert "call userscope.adapters.fastapi.install(app, " in record.getMessage()
        assert "\n" not in record.getMessage()


def test_not_installed_error_fields() -> None:
    err = NotInstalledError(provider="Container.worker", path="/worker")
    assert (err.provider, err.path) == ("Container.worker", "/worker")
    assert isinstance(err, us.UserscopeError)
    assert isinstance(err, RuntimeError)
    assert "install(app, container, sessions, authenticate=...)" in str(err)


async def test_captive_dependency_after_install_is_refused(
    caplog: pytest.LogCaptureFixture,
) -> None:
    container = Container()
    app = FastAPI()
    install(app, container, us.UserSessions(), authenticate=authenticator())
    add_routes(app, container)

    @app.get("/other")
    async def other(holder: Annotated[Holder, Inject(Other.holder)]) -> dict[str, Any]:
        return {"user_id": holder.item.user_id}  # pragma: no cover - refused

    caplog.set_level(logging.INFO, logger=LOGGER)
    with serve(app) as server:
        async with httpx.AsyncClient(base_url=server.http, timeout=15) as client:
            before = await client.get("/worker", headers=bearer("alice"))
            # the request-scoped worker is replaced by an application-wide singleton that
            # would keep the first user's registry
            container.worker.override(providers.Singleton(Holder, container.registry))
            try:
                after = await client.get("/worker", headers=bearer("bob"))
            finally:
                container.worker.reset_override()
            other_alice = await client.get("/other", headers=bearer("alice"))
            other_bob = await client.get("/other", headers=bearer("bob"))
            again = await client.get("/worker", headers=bearer("bob"))
    assert before.json() == {"user_id": "alice"}
    assert (after.status_code, other_alice.status_code, other_bob.status_code) == (500, 500, 500)
    assert again.json() == {"user_id": "bob"}
    failures = [
        r.exc_info[1]
        for r in caplog.records
        if r.exc_info and isinstance(r.exc_info[1], us.CaptiveDependencyError)
    ]
    assert [f.paths for f in failures] == [
        ("<inline Singleton(Holder)> (Singleton) -> Container.registry (UserScoped)",),
        ("Other.holder (Singleton) -> Other.worker (RequestScoped)",),
        ("Other.holder (Singleton) -> Other.worker (RequestScoped)",),
    ]


async def test_request_scoped_in_a_websocket_signature_names_message_scope(
    caplog: pytest.LogCaptureFixture,
) -> None:
    container = Container()
    app = FastAPI()
    install(app, container, us.UserSessions(), authenticate=authenticator())
    add_routes(app, container)
    caplog.set_level(logging.INFO, logger=LOGGER)
    with serve(app) as server:
        with pytest.raises(InvalidStatus):
            async with connect(f"{server.ws}/ws-worker", additional_headers=bearer()):
                pass  # pragma: no cover - refused before accept
    errors = [
        r.exc_info[1]
        for r in caplog.records
        if r.exc_info and isinstance(r.exc_info[1], us.OutOfScopeError)
    ]
    assert len(errors) == 1
    error = errors[0]
    assert error.provider == "Container.worker"
    assert (error.required_scope, error.active_scope) == (us.Scope.REQUEST, us.Scope.CONNECTION)
    assert error.hint is not None
    assert "async with message_scope(websocket):" in error.hint
    assert "message_scope" in str(error)


async def test_failing_message_cleanup_is_reported_and_the_socket_stays_open(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cleanups.clear()
    container = Container()
    sessions = us.UserSessions()
    app = FastAPI()
    install(app, container, sessions, authenticate=authenticator())
    add_routes(app, container)
    caplog.set_level(logging.INFO, logger=LOGGER)
    with serve(app) as server:
        async with connect(f"{server.ws}/ws", additional_headers=bearer("alice")) as ws:
            await ws.send("flaky")
            reply = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
            event = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
            await ws.send("next")
            after = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
            await ws.send("flaky")
            await asyncio.wait_for(ws.recv(), timeout=10)
            second = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
            await ws.send("still open")
            last = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
    assert reply == {"text": "flaky", "user_id": "alice"}
    assert event["type"] == second["type"] == "error"
    assert event["error"] == "cleanup_failed"
    assert "secret" not in json.dumps(event)
    assert event["request_id"] == cleanups[0] != second["request_id"] == cleanups[1]
    assert after == {"text": "next", "user_id": "alice"}
    assert last == {"text": "still open", "user_id": "alice"}
    logged = records(caplog, "message_cleanup_failed")
    assert len(logged) == 2
    assert logged[0].userscope_request_id == cleanups[0]  # type: ignore[attr-defined]
    assert logged[0].userscope_user_id == "alice"  # type: ignore[attr-defined]


async def test_a_failing_message_body_still_ends_the_socket() -> None:
    container = Container()
    app = FastAPI()
    install(app, container, us.UserSessions(), authenticate=authenticator())
    add_routes(app, container)
    with serve(app) as server:
        async with connect(f"{server.ws}/ws", additional_headers=bearer("alice")) as ws:
            await ws.send("boom")
            assert json.loads(await asyncio.wait_for(ws.recv(), timeout=10))["text"] == "boom"
            await asyncio.wait_for(ws.wait_closed(), timeout=10)
            assert ws.close_code == 1011
