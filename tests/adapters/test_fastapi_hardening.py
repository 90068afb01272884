"""Regressions of the adversarial review (issue 16) on a real uvicorn server.

Size limits (headers, bodies, WebSocket messages), the one refusal shape without
library internals, and tokens in query strings redacted from uvicorn's logs. Real
clients (httpx, websockets); every wait is bounded, nothing asserts on speed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import httpx
import pytest
import uvicorn
from adapter_support import AUDIENCE, ISSUER, SECRET, AppContainer, LiveServer, make_token, serve
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from pydantic import BaseModel
from starlette.requests import Request
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

import userscope as us
from userscope.adapters.fastapi import (
    Inject,
    JWTAuthenticator,
    install,
    refusal_close_reason,
    refusal_response,
)

GUARD = 10.0
REFUSAL_KEYS = {"error", "detail"}


class Item(BaseModel):
    n: int


def build_app(**install_options: Any) -> FastAPI:
    app = FastAPI()
    authenticate = JWTAuthenticator(
        key=SECRET,
        algorithms=["HS256"],
        audience=AUDIENCE,
        issuer=ISSUER,
        allow_query_token=True,
        query_param="access",
    )
    install(app, AppContainer(), us.UserSessions(), authenticate=authenticate, **install_options)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/me")
    async def me(
        ctx: Annotated[us.UserExecutionContext, Inject(AppContainer.context)],
    ) -> dict[str, str]:
        return {"user_id": ctx.user_id}

    @app.post("/items")
    async def items(item: Item) -> dict[str, int]:
        return {"n": item.n}

    @app.post("/raw")
    async def raw(request: Request) -> dict[str, int]:
        return {"size": len(await request.body())}

    @app.websocket("/echo")
    async def echo(
        websocket: WebSocket,
        ctx: Annotated[us.UserExecutionContext, Inject(AppContainer.context)],
    ) -> None:
        await websocket.accept()
        try:
            async for text in websocket.iter_text():
                await websocket.send_text(f"{ctx.user_id}:{len(text)}")
        except WebSocketDisconnect:
            pass

    return app


def bearer(sub: str = "alice") -> dict[str, str]:
    return {"Authorization": f"Bearer {make_token(sub)}"}


def assert_refusal(response: httpx.Response, status: int, error: str) -> dict[str, Any]:
    assert response.status_code == status, response.text[:200]
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    assert set(body) == REFUSAL_KEYS
    assert body["error"] == error
    return body


# -- request bodies -----------------------------------------------------------------------


async def test_an_oversized_body_gets_413_without_an_echo_by_default() -> None:
    marker = "Z" * 64
    payload = json.dumps({"n": marker * ((2 << 20) // 64)})  # 2 MiB, over the 1 MiB default
    with serve(build_app()) as server:
        async with httpx.AsyncClient(base_url=server.http, timeout=GUARD) as client:
            refused = await client.post("/items", content=payload, headers=bearer())
            fine = await client.post("/items", json={"n": 3}, headers=bearer())
    body = assert_refusal(refused, 413, "payload_too_large")
    assert str(1 << 20) in body["detail"]
    assert marker not in refused.text
    assert len(refused.content) < 300  # a fixed sentence, never the input
    assert fine.json() == {"n": 3}


async def test_a_chunked_body_is_cut_off_at_the_configured_limit() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(64):
            yield b"x" * 1024  # 64 KiB in 1 KiB chunks, no Content-Length

    with serve(build_app(max_body_bytes=8 * 1024)) as server:
        async with httpx.AsyncClient(base_url=server.http, timeout=GUARD) as client:
            refused = await client.post("/raw", content=chunks(), headers=bearer())
            within = await client.post("/raw", content=b"y" * 8 * 1024, headers=bearer())
            after = await client.get("/health")
    assert "content-length" not in refused.request.headers
    body = assert_refusal(refused, 413, "payload_too_large")
    assert "8192 bytes" in body["detail"]
    assert within.json() == {"size": 8 * 1024}
    assert after.json() == {"status": "ok"}


# -- headers ------------------------------------------------------------------------------


async def test_oversized_headers_are_refused_before_the_token_is_parsed() -> None:
    huge_token = "Bearer " + "a" * (100 * 1024)  # not a JWT: parsing it would say 401
    with serve(build_app()) as server:
        async with httpx.AsyncClient(base_url=server.http, timeout=GUARD) as client:
            refused = await client.get("/me", headers={"Authorization": huge_token})
            padded = await client.get("/health", headers={"X-Pad": "p" * (40 * 1024)})
            fine = await client.get("/me", headers=bearer())
        # the WebSocket server refuses any single line over 8 KiB itself; many lines
        # that add up past the limit reach the adapter, which answers the handshake
        many = {f"X-Pad-{n}": "p" * 4000 for n in range(10)}
        with pytest.raises(InvalidStatus) as info:
            async with asyncio.timeout(GUARD):
                await connect(f"{server.ws}/echo", additional_headers={**bearer(), **many})
    assert_refusal(refused, 431, "headers_too_large")
    assert "aaaa" not in refused.text
    assert_refusal(padded, 431, "headers_too_large")
    assert fine.json() == {"user_id": "alice"}
    assert info.value.response.status_code == 431
    assert json.loads(info.value.response.body or b"{}")["error"] == "headers_too_large"


# -- WebSocket messages -------------------------------------------------------------------


async def test_an_oversized_websocket_message_closes_that_socket_with_1009() -> None:
    with serve(build_app(max_message_bytes=64 * 1024)) as server:
        async with asyncio.timeout(GUARD):
            async with (
                connect(f"{server.ws}/echo", additional_headers=bearer("alice")) as alice,
                connect(f"{server.ws}/echo", additional_headers=bearer("bob")) as bob,
            ):
                await alice.send("ok")
                assert await alice.recv() == "alice:2"
                await alice.send("é" * (40 * 1024))  # 40 Ki characters, 80 KiB of UTF-8
                with pytest.raises(ConnectionClosed) as info:
                    await alice.recv()  # the endpoint never sees it: no "alice:40960"
                await bob.send("still here")
                assert await bob.recv() == "bob:10"
    assert info.value.rcvd is not None
    assert info.value.rcvd.code == 1009
    assert info.value.rcvd.reason == refusal_close_reason(
        "message_too_big", "a message is larger than 65536 bytes; send smaller messages"
    )


async def test_the_default_websocket_message_limit_is_one_mebibyte() -> None:
    with serve(build_app()) as server:
        async with asyncio.timeout(GUARD):
            async with connect(f"{server.ws}/echo", additional_headers=bearer()) as ws:
                await ws.send(b"\x00" * ((1 << 20) + 1))
                with pytest.raises(ConnectionClosed) as info:
                    await ws.recv()
    assert info.value.rcvd is not None
    assert info.value.rcvd.code == 1009


def test_limits_are_checked_at_install() -> None:
    with pytest.raises(ValueError, match="max_body_bytes"):
        build_app(max_body_bytes=0)
    with pytest.raises(TypeError, match="max_message_bytes"):
        build_app(max_message_bytes=1.5)
    build_app(max_body_bytes=None, max_message_bytes=None, max_header_bytes=None)


# -- one refusal shape, no library internals ----------------------------------------------

BROKEN_TOKENS = [
    "abc",  # PyJWT: "Not enough segments"
    "e30.e30.!!!",  # "Invalid crypto padding" / base64 internals
    "eyJhbGciOiJIUzI1NiJ9.bm90IGpzb24.c2ln",  # payload is not JSON: json's own message
    make_token("alice", key="another-secret-another-secret-0123456789"),  # bad signature
]


@pytest.mark.parametrize("token", BROKEN_TOKENS)
async def test_401_bodies_carry_no_library_internals(token: str) -> None:
    with serve(build_app()) as server:
        async with httpx.AsyncClient(base_url=server.http, timeout=GUARD) as client:
            refused = await client.get("/me", headers={"Authorization": f"Bearer {token}"})
    body = assert_refusal(refused, 401, "invalid_token")
    assert body["detail"] == "the token was refused; sign in again to get a valid token"
    for internal in ("segments", "padding", "Signature", "JSON", "decode", "Expecting", "utf"):
        assert internal.lower() not in refused.text.lower()


def test_apps_build_refusals_in_the_same_shape() -> None:
    response = refusal_response(
        503, "events_unavailable", "retry in a moment", headers={"Retry-After": "2"}
    )
    assert response.status_code == 503
    assert json.loads(bytes(response.body)) == {
        "error": "events_unavailable",
        "detail": "retry in a moment",
    }
    assert response.headers["retry-after"] == "2"
    assert response.headers["cache-control"] == "no-store"
    with pytest.raises(ValueError, match="4xx or 5xx"):
        refusal_response(200, "ok", "not a refusal")


# -- tokens in query strings are redacted from uvicorn's logs -----------------------------


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@contextmanager
def serve_with_access_log(app: FastAPI, handler: logging.Handler) -> Iterator[LiveServer]:
    """Like conftest.serve, with uvicorn's default logging config at INFO (access log on)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="info",
        access_log=True,
        ws="websockets-sansio",
        ws_ping_interval=None,
    )  # configures uvicorn's loggers now, as `uvicorn app:app` does
    loggers = [logging.getLogger(name) for name in ("uvicorn.access", "uvicorn.error")]
    for logger in loggers:
        logger.addHandler(handler)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + GUARD
        while not server.started:
            assert thread.is_alive(), "uvicorn did not start"
            assert time.monotonic() < deadline, "uvicorn did not start in time"
            time.sleep(0.01)
        yield LiveServer("127.0.0.1", port, server)
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()
        for logger in loggers:
            logger.removeHandler(handler)


async def test_query_tokens_are_redacted_from_the_access_log() -> None:
    handler = Collect()
    token = make_token("alice")
    with serve_with_access_log(build_app(), handler) as server:
        async with httpx.AsyncClient(base_url=server.http, timeout=GUARD) as client:
            await client.get(f"/health?token={token}&x=1")
            await client.get(f"/health?ACCESS_TOKEN={token}")
        async with asyncio.timeout(GUARD):
            async with connect(f"{server.ws}/echo?access={token}&after=5-0") as ws:
                await ws.send("hi")
                assert await ws.recv() == "alice:2"  # the token in the query was used
    text = "\n".join(handler.lines)
    assert token not in text
    assert token.split(".")[1] not in text  # not even the claims part
    assert "/health?token=[redacted]&x=1" in text
    assert "ACCESS_TOKEN=[redacted]" in text
    assert "/echo?access=[redacted]&after=5-0" in text


@pytest.mark.parametrize(
    "name", ["userscope.adapters.fastapi._refusals", "userscope.adapters.fastapi._redact"]
)
def test_docstring_examples_run(name: str) -> None:
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
