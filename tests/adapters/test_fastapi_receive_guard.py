"""The middleware's WebSocket receive guard, driven by direct ASGI calls (no server).

Its per-message path lets a text of at most ``max_message_bytes // 4`` characters through
with a single test; everything else (longer texts, binary messages, the connect and the
disconnect) goes through the full check. These tests pin both sides of that split.
"""

from __future__ import annotations

import asyncio
from typing import Any

from adapter_support import websocket_scope
from dependency_injector import containers
from fastapi import FastAPI, WebSocket, WebSocketDisconnect

import userscope as us
from userscope.adapters.fastapi import install

GUARD = 10.0
KIB = 1024


class Container(containers.DeclarativeContainer):
    context = us.CurrentContext()


async def authenticate(connection: Any) -> us.UserExecutionContext:
    return us.UserExecutionContext(user_id="alice", thread_id="t-1")


def build_app(seen: list[int], **install_options: Any) -> FastAPI:
    """An app whose endpoint records the size of every message that reaches it."""
    app = FastAPI()

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    raise WebSocketDisconnect(message.get("code", 1000))
                text, data = message.get("text"), message.get("bytes")
                seen.append(len(text) if text is not None else len(data or b""))
                await websocket.send_text(str(seen[-1]))
        except WebSocketDisconnect:
            pass

    install(app, Container(), us.UserSessions(), authenticate=authenticate, **install_options)
    return app


def text(n: int) -> dict[str, Any]:
    return {"type": "websocket.receive", "text": "a" * n, "bytes": None}


def binary(n: int) -> dict[str, Any]:
    return {"type": "websocket.receive", "bytes": b"\x00" * n, "text": None}


async def converse(app: FastAPI, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Connect, send ``messages`` then a disconnect; return what the app sent back."""
    inbox: list[dict[str, Any]] = [
        {"type": "websocket.connect"},
        *messages,
        {"type": "websocket.disconnect", "code": 1000},
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        await asyncio.sleep(0)
        return inbox.pop(0) if inbox else {"type": "websocket.disconnect", "code": 1000}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = websocket_scope()
    async with asyncio.timeout(GUARD):
        await app(scope, receive, send)
    return sent


async def test_texts_over_a_quarter_of_the_limit_are_measured_and_pass_within_it() -> None:
    seen: list[int] = []
    app = build_app(seen, max_message_bytes=64 * KIB)
    # 16 Ki characters pass unmeasured; 20 Ki ASCII characters are measured: 20 KiB, fine;
    # binary messages are always measured: 60 KiB, fine
    sent = await converse(app, [text(16 * KIB), text(20 * KIB), binary(60 * KIB)])
    assert seen == [16 * KIB, 20 * KIB, 60 * KIB]
    assert [m["type"] for m in sent] == ["websocket.accept"] + ["websocket.send"] * 3


async def test_a_message_over_the_limit_never_reaches_the_endpoint_and_closes_1009() -> None:
    seen: list[int] = []
    app = build_app(seen, max_message_bytes=64 * KIB)
    sent = await converse(app, [text(10), binary(64 * KIB + 1), text(10)])
    assert seen == [10]  # neither the oversized message nor anything after it
    closes = [m for m in sent if m["type"] == "websocket.close"]
    assert [m["code"] for m in closes] == [1009]


async def test_a_multibyte_text_is_measured_in_utf8_bytes() -> None:
    seen: list[int] = []
    app = build_app(seen, max_message_bytes=64 * KIB)
    # 20 Ki characters of two UTF-8 bytes each: 40 KiB, fine; 40 Ki of them: 80 KiB, refused
    within = {"type": "websocket.receive", "text": "é" * (20 * KIB), "bytes": None}
    over = {"type": "websocket.receive", "text": "é" * (40 * KIB), "bytes": None}
    sent = await converse(app, [within, over])
    assert seen == [20 * KIB]
    assert [m["code"] for m in sent if m["type"] == "websocket.close"] == [1009]


async def test_without_a_limit_every_message_passes() -> None:
    seen: list[int] = []
    app = build_app(seen, max_message_bytes=None)
    sent = await converse(app, [text(2 * KIB * KIB), binary(2 * KIB * KIB), text(0)])
    assert seen == [2 * KIB * KIB, 2 * KIB * KIB, 0]
    assert not [m for m in sent if m["type"] == "websocket.close"]
