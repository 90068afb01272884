"""The agent-chat demo: sign-in links, streamed runs, per-user caps, cleanup at disconnect."""

from __future__ import annotations

from typing import Any

import pytest
import uvicorn
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from examples.agent_chat import DemoSettings, Tracker, create_app, mint_token
from examples.agent_chat import __main__ as demo_main

SECRET = "demo-test-secret-demo-test-secret-0123"


@pytest.fixture
def client() -> Any:
    app = create_app(DemoSettings(secret=SECRET, token_delay=0, max_agents_per_user=2))
    with TestClient(app) as test_client:
        yield test_client


def chat(ws: Any, text: str, agent: str = "assistant") -> list[dict[str, Any]]:
    ws.send_json({"agent": agent, "text": text})
    events = []
    while True:
        event = ws.receive_json()
        events.append(event)
        if event["type"] in ("run_finished", "error"):
            return events


def auth(user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(SECRET, user)}"}


def test_main_prints_two_sign_in_links_and_serves_on_loopback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append(kw))
    monkeypatch.setenv("PORT", "9123")
    demo_main.main([])
    demo_main.main(["--port", "9124"])
    out = capsys.readouterr().out
    assert [c["host"] for c in calls] == ["127.0.0.1", "127.0.0.1"]
    assert [c["port"] for c in calls] == [9123, 9124]
    links = [line for line in out.splitlines() if "#token=" in line]
    assert len(links) == 4
    assert "sign in as alice: http://127.0.0.1:9123/#token=" in links[0]
    assert "sign in as bob: http://127.0.0.1:9123/#token=" in links[1]
    assert links[0].split("#token=")[1] != links[2].split("#token=")[1]  # fresh secret per run


def test_page_health_and_auth(client: TestClient) -> None:
    assert "Agent chat" in client.get("/").text
    assert "bearer" in client.get("/static/app.js").text
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/api/me").status_code == 401
    assert client.get("/api/me", headers=auth("alice")).json() == {
        "user_id": "alice",
        "agents": [],
    }


def test_chat_streams_a_run_stamped_with_the_user(client: TestClient) -> None:
    with client.websocket_connect(
        "/ws", subprotocols=["bearer", mint_token(SECRET, "alice")]
    ) as ws:
        assert ws.receive_json()["type"] == "hello"
        events = chat(ws, "hello there")
    kinds = [e["type"] for e in events]
    assert kinds == ["run_started", "token", "token", "token", "token", "run_finished"]
    assert " ".join(e["text"] for e in events if e["type"] == "token") == (
        "assistant heard: hello there"
    )
    assert {e["user_id"] for e in events} == {"alice"}
    assert len({e["request_id"] for e in events}) == 1
    # the registry is UserScoped: the HTTP API sees the agent the socket created
    assert client.get("/api/me", headers=auth("alice")).json()["agents"] == ["assistant"]
    assert client.get("/api/me", headers=auth("bob")).json()["agents"] == []


def test_agents_are_capped_per_user(client: TestClient) -> None:
    with client.websocket_connect("/ws", headers=auth("alice")) as ws:
        ws.receive_json()
        chat(ws, "one", agent="coder")
        chat(ws, "two", agent="critic")
        refused = chat(ws, "three", agent="researcher")
    assert refused[-1]["type"] == "error"
    assert "already has 2 agents" in refused[-1]["text"]
    with client.websocket_connect("/ws", headers=auth("bob")) as ws:  # bob has his own cap
        ws.receive_json()
        assert chat(ws, "hi", agent="researcher")[-1]["type"] == "run_finished"


def test_every_bridge_closes_at_disconnect(client: TestClient) -> None:
    tracker: Tracker = client.app.state.container.tracker()  # type: ignore[attr-defined]
    for user in ("alice", "bob", "alice"):
        with client.websocket_connect("/ws", headers=auth(user)) as ws:
            ws.receive_json()
            chat(ws, "ping")
    assert tracker.bridges_opened == tracker.bridges_closed == 3
    assert tracker.runs_finished == 3
    sessions = client.app.state.sessions  # type: ignore[attr-defined]
    assert (sessions.stats().connections, sessions.stats().requests) == (0, 0)


def test_socket_without_token_is_refused(client: TestClient) -> None:
    with pytest.raises(WebSocketDisconnect) as info, client.websocket_connect("/ws"):
        pass  # pragma: no cover
    assert info.value.code == 1008
