"""EventBridge on a real Starlette WebSocket: wire format and close codes reach the client."""

from __future__ import annotations

import pytest
from events_support import ctx
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket, WebSocketDisconnect

from userscope.events import BROKER_GONE_CLOSE_CODE, EventBridge, InMemoryBroker


async def endpoint(websocket: WebSocket) -> None:
    await websocket.accept()
    # the broker lives in the server's event loop, as it would in an app's lifespan
    broker: InMemoryBroker = websocket.app.state.broker
    user = ctx("alice")  # in an app: the verified identity from the adapter
    after = websocket.query_params.get("after")
    async with EventBridge(
        broker, user, websocket.send_json, close=websocket.close, after=after
    ) as bridge:
        while True:
            try:
                command = await websocket.receive_text()
            except WebSocketDisconnect:
                return  # leaving `async with` stops the bridge and unsubscribes
            if command == "publish":
                for n in range(3):
                    await broker.publish(user, {"type": "token", "n": n})
                await broker.publish(ctx("bob"), {"type": "not-for-alice"})
            elif command == "shutdown":
                await broker.aclose()
                await bridge.wait()  # the bridge closes the socket with 1012
                return


def make_app() -> Starlette:
    app = Starlette(routes=[WebSocketRoute("/events", endpoint)])
    app.state.broker = InMemoryBroker()
    return app


def test_events_and_broker_shutdown_close_code_reach_the_client() -> None:
    with TestClient(make_app()) as client, client.websocket_connect("/events") as ws:
        ws.send_text("publish")
        messages = [ws.receive_json() for _ in range(3)]
        assert [m["event"] for m in messages] == [{"type": "token", "n": n} for n in range(3)]
        assert all(m["kind"] == "event" for m in messages)
        ws.send_text("shutdown")
        with pytest.raises(WebSocketDisconnect) as info:
            ws.receive_json()
    assert info.value.code == BROKER_GONE_CLOSE_CODE
    assert "reconnect" in (info.value.reason or "")


def test_client_resumes_with_after_query_parameter() -> None:
    app = make_app()
    with TestClient(app) as client:
        with client.websocket_connect("/events") as ws:
            ws.send_text("publish")
            first = [ws.receive_json() for _ in range(3)]
        with client.websocket_connect(f"/events?after={first[0]['id']}") as ws:
            resumed = [ws.receive_json() for _ in range(2)]
    assert [m["id"] for m in resumed] == [m["id"] for m in first[1:]]
