"""The agent-chat demo: sign-in links, streamed runs, per-user caps, cleanup at disconnect,
HTTP-started runs reaching the user's sockets through the broker, resume with ``?after=``."""

from __future__ import annotations

import asyncio
from typing import Any

import jwt
import pytest
import uvicorn
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

import userscope as us
from examples.agent_chat import AUDIENCE, DemoSettings, Tracker, create_app, mint_token
from examples.agent_chat import __main__ as demo_main
from userscope.events import (
    BEGINNING,
    RUN_FINISHED,
    BrokerClosedError,
    Delivery,
    InMemoryBroker,
    RedisBroker,
    WeakSecretError,
)

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


# -- events through the broker: HTTP runs, conversations, resume ------------------------


def until(ws: Any, kind: str) -> list[dict[str, Any]]:
    """Receive events up to and including the first one of type ``kind``."""
    events = []
    while True:
        events.append(ws.receive_json())
        if events[-1]["type"] == kind:
            return events


def test_http_run_reaches_every_socket_of_its_user_only(client: TestClient) -> None:
    alice_token = mint_token(SECRET, "alice")
    with (
        client.websocket_connect("/ws", headers=auth("alice")) as tab1,
        client.websocket_connect("/ws?conversation=tab-2", headers=auth("alice")) as tab2,
        client.websocket_connect("/ws", headers=auth("bob")) as bob,
    ):
        for ws in (tab1, tab2, bob):
            assert ws.receive_json()["type"] == "hello"
        # the body's user_id is ignored: the run belongs to the token's user
        reply = client.post(
            "/api/runs",
            json={"agent": "coder", "text": "from http", "user_id": "bob"},
            headers={"Authorization": f"Bearer {alice_token}"},
        )
        assert reply.status_code == 202
        run_id = reply.json()["run_id"]
        assert reply.json()["user_id"] == "alice"
        seen = [until(tab1, "run_finished"), until(tab2, "run_finished")]
        # bob's next event is his own run: nothing of alice's was queued before it
        bob.send_json({"agent": "assistant", "text": "bob here"})
        bobs = until(bob, "run_finished")
    for events in seen:
        assert [e["type"] for e in events] == ["run_started", *["token"] * 4, "run_finished"]
        assert {e["run_id"] for e in events} == {run_id}
        assert {e["user_id"] for e in events} == {"alice"}
        assert [e["text"] for e in events if e["type"] == "token"] == [
            "coder", "heard:", "from", "http"
        ]  # fmt: skip
        ids = [tuple(map(int, e["id"].split("-"))) for e in events]
        assert ids == sorted(ids)
        assert len(set(ids)) == len(ids)
    assert seen[0][0]["id"] == seen[1][0]["id"]  # the same stored events on both sockets
    assert bobs[0]["type"] == "run_started"
    assert bobs[0]["text"] == "bob here"
    assert {e["user_id"] for e in bobs} == {"bob"}
    assert client.get("/api/me", headers=auth("alice")).json()["agents"] == ["coder"]
    assert client.get("/api/me", headers=auth("bob")).json()["agents"] == ["assistant"]


def test_socket_runs_stay_in_their_conversation(client: TestClient) -> None:
    with (
        client.websocket_connect("/ws?conversation=tab-1", headers=auth("alice")) as tab1,
        client.websocket_connect("/ws?conversation=tab-2", headers=auth("alice")) as tab2,
    ):
        assert tab1.receive_json()["conversation"] == "tab-1"
        assert tab2.receive_json()["conversation"] == "tab-2"
        mine = chat(tab1, "only for tab one")
        # an HTTP run aimed at tab-2's conversation; tab-2's next event is its start,
        # so tab-1's socket run never reached tab-2
        reply = client.post(
            "/api/runs",
            json={"text": "for tab two", "conversation": "tab-2"},
            headers=auth("alice"),
        )
        assert reply.status_code == 202
        theirs = until(tab2, "run_finished")
        # and tab-1 did not get tab-2's run: its next event is a run of its own
        again = chat(tab1, "tab one again")
    assert {e["conversation"] for e in mine} == {"tab-1"}
    assert theirs[0]["text"] == "for tab two"
    assert {e["conversation"] for e in theirs} == {"tab-2"}
    assert again[0]["text"] == "tab one again"


def test_socket_resumes_after_the_last_id_it_received(client: TestClient) -> None:
    with client.websocket_connect("/ws?conversation=tab-r", headers=auth("alice")) as ws:
        ws.receive_json()
        events = chat(ws, "one two three")
    last_seen = events[2]["id"]
    with client.websocket_connect(
        f"/ws?conversation=tab-r&after={last_seen}", headers=auth("alice")
    ) as ws:
        hello = ws.receive_json()
        resumed = [ws.receive_json() for _ in events[3:]]
    assert hello["type"] == "hello"
    assert hello["resumed_after"] == last_seen
    assert resumed == [{**e, "user_id": "alice"} for e in events[3:]]


@pytest.mark.parametrize("query", ["after=*", "after=0-0-0", "conversation=a:b", "conversation=x*"])
def test_bad_resume_parameters_are_refused(client: TestClient, query: str) -> None:
    with client.websocket_connect(f"/ws?{query}", headers=auth("alice")) as ws:
        error = ws.receive_json()
        with pytest.raises(WebSocketDisconnect) as info:
            ws.receive_json()
    assert error["type"] == "error"
    assert "is not an event id" in error["text"] or "conversation=" in error["text"]
    assert info.value.code == 1008


def test_http_runs_need_a_token_and_a_valid_body(client: TestClient) -> None:
    assert client.post("/api/runs", json={"text": "hi"}).status_code == 401
    assert client.post("/api/runs", json={"text": "  "}, headers=auth("alice")).status_code == 422
    assert client.post("/api/runs", json={}, headers=auth("alice")).status_code == 422
    bad = {"text": "hi", "conversation": "a b"}
    assert client.post("/api/runs", json=bad, headers=auth("alice")).status_code == 422
    for agent in ("coder", "critic"):
        ok = client.post("/api/runs", json={"agent": agent, "text": "hi"}, headers=auth("alice"))
        assert ok.status_code == 202
    refused = client.post("/api/runs", json={"agent": "third", "text": "x"}, headers=auth("alice"))
    assert refused.status_code == 409
    assert "already has 2 agents" in refused.json()["detail"]


def test_shutdown_cancels_http_runs_and_closes_only_its_own_broker() -> None:
    broker = InMemoryBroker()
    app = create_app(DemoSettings(secret=SECRET, token_delay=0.5), broker=broker)
    with TestClient(app) as test_client:
        with test_client.websocket_connect("/ws", headers=auth("alice")) as ws:
            ws.receive_json()
            reply = test_client.post(
                "/api/runs", json={"text": "a long answer " * 5}, headers=auth("alice")
            )
            assert ws.receive_json()["type"] == "run_started"
        assert len(app.state.runs) == 1
    assert len(app.state.runs) == 0

    async def finished() -> dict[str, Any]:
        alice = us.UserExecutionContext(user_id="alice", thread_id="t")
        async with broker.subscribe(alice, after=BEGINNING) as sub:
            async for item in sub:
                if isinstance(item, Delivery) and item.type == RUN_FINISHED:
                    return item.payload
        raise AssertionError("no run_finished")  # pragma: no cover

    payload = asyncio.run(finished())  # the passed-in broker is still open
    assert payload["run_id"] == reply.json()["run_id"]
    assert payload["status"] == "cancelled"
    asyncio.run(broker.aclose())

    own = create_app(DemoSettings(secret=SECRET))
    with TestClient(own):
        pass
    with pytest.raises(BrokerClosedError):
        asyncio.run(
            own.state.broker.publish(us.UserExecutionContext(user_id="a", thread_id="t"), {})
        )


def test_redis_broker_when_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USERSCOPE_REDIS_URL", "redis://127.0.0.1:1/0")
    monkeypatch.delenv("USERSCOPE_EVENTS_SECRET", raising=False)
    with pytest.raises(WeakSecretError):
        create_app(DemoSettings(secret=SECRET))
    monkeypatch.setenv("USERSCOPE_EVENTS_SECRET", "demo-events-secret-7f3a9c1e5b2d8f4a6c0e")
    app = create_app(DemoSettings(secret=SECRET))
    assert isinstance(app.state.broker, RedisBroker)
    assert "Redis Streams at 127.0.0.1:1" in demo_main.describe_events(app.state.broker)
    asyncio.run(app.state.broker.aclose())


def test_settings_from_env() -> None:
    settings = DemoSettings.from_env(
        {
            "AGENT_CHAT_SECRET": SECRET,
            "AGENT_CHAT_TOKEN_DELAY": "0.01",
            "AGENT_CHAT_MAX_AGENTS": "5",
            "AGENT_CHAT_HEARTBEAT_INTERVAL": "0.2",
            "AGENT_CHAT_HEARTBEAT_TIMEOUT": "1",
        }
    )
    assert settings == DemoSettings(
        secret=SECRET,
        token_delay=0.01,
        max_agents_per_user=5,
        heartbeat_interval=0.2,
        heartbeat_timeout=1.0,
    )
    defaults = DemoSettings.from_env({})
    assert len(defaults.secret) >= 32
    assert (defaults.heartbeat_interval, defaults.heartbeat_timeout) == (None, None)
    with pytest.raises(ValueError, match="AGENT_CHAT_TOKEN_DELAY='soon'"):
        DemoSettings.from_env({"AGENT_CHAT_TOKEN_DELAY": "soon"})
    with pytest.raises(ValueError, match="AGENT_CHAT_MAX_AGENTS"):
        DemoSettings.from_env({"AGENT_CHAT_MAX_AGENTS": "0"})
    with pytest.raises(ValueError, match="at least 32"):
        DemoSettings(secret="short")


def test_main_with_a_shared_secret_signs_tokens_every_worker_accepts(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: None)
    monkeypatch.setenv("AGENT_CHAT_SECRET", SECRET)
    demo_main.main(["--port", "8001"])
    out = capsys.readouterr().out
    token = out.split("sign in as alice: http://127.0.0.1:8001/#token=")[1].split()[0]
    assert jwt.decode(token, SECRET, algorithms=["HS256"], audience=AUDIENCE)["sub"] == "alice"
    assert "AGENT_CHAT_SECRET" in out
    assert "events: in memory" in out
