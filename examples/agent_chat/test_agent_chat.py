"""The agent-chat demo: sign-in links, streamed runs, per-user caps, cleanup at disconnect,
HTTP-started runs reaching the user's sockets through the broker, resume with ``?after=``."""

from __future__ import annotations

import asyncio
import doctest
import logging
import time
from collections.abc import Callable
from typing import Any

import jwt
import pytest
import uvicorn
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

import userscope as us
from examples import agent_chat
from examples.agent_chat import AUDIENCE, DemoSettings, FakeLLM, Tracker, create_app, mint_token
from examples.agent_chat import __main__ as demo_main
from examples.agent_chat import app as agent_chat_app
from examples.agent_chat import domain as agent_chat_domain
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


@pytest.fixture(autouse=True)
def demo_logging() -> Any:
    """``main()`` adds a stderr handler to the demo's logger: take it away again."""
    demo = logging.getLogger("examples.agent_chat")
    handlers, level = list(demo.handlers), demo.level
    yield
    demo.handlers[:] = handlers
    demo.setLevel(level)


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
    # the links come last, before one closing line, so that nothing buries them
    second_run = [line for line in out.split("9123")[-1].splitlines() if line.strip()]
    assert "sign in as alice: http://127.0.0.1:9124/#token=" in second_run[-3]
    assert "sign in as bob: http://127.0.0.1:9124/#token=" in second_run[-2]
    assert second_run[-1].startswith("Ctrl+C stops the server. Sign-ins, refusals")
    assert "links of earlier runs" in out
    assert "limits: 3 agents per user (the agent registry's own cap, AGENT_CHAT_MAX_AGENTS)" in out
    assert {c["ws_max_size"] for c in calls} == {64 * 1024}


def test_page_health_and_auth(client: TestClient) -> None:
    assert "Agent chat" in client.get("/").text
    assert "bearer" in client.get("/static/app.js").text
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/api/me").status_code == 401
    assert client.get("/api/me", headers=auth("alice")).json() == {
        "user_id": "alice",
        "agents": [],
        "catalogue": ["assistant", "researcher", "coder", "critic"],
        "max_agents": 2,
        "max_message_chars": 2000,
    }


def test_security_headers_favicon_and_no_public_api_docs(client: TestClient) -> None:
    for path in ("/", "/static/app.js", "/health", "/api/me"):
        headers = client.get(path).headers
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert "script-src 'self'" in headers["content-security-policy"]
        assert headers["x-frame-options"] == "DENY"
        assert headers["x-content-type-options"] == "nosniff"
    icon = client.get("/favicon.ico")
    assert icon.status_code == 200
    assert icon.headers["content-type"].startswith("image/svg+xml")
    for path in ("/docs", "/openapi.json", "/redoc"):
        assert client.get(path).status_code == 404
    with TestClient(create_app(DemoSettings(secret=SECRET, api_docs=True))) as docs:
        assert docs.get("/docs").status_code == 200
        assert docs.get("/openapi.json").json()["info"]["title"] == "userscope agent chat demo"


def test_chat_streams_a_run_stamped_with_the_user(client: TestClient) -> None:
    with client.websocket_connect(
        "/ws", subprotocols=["bearer", mint_token(SECRET, "alice")]
    ) as ws:
        assert ws.receive_json()["type"] == "hello"
        events = chat(ws, "hello there")
    kinds = [e["type"] for e in events]
    assert kinds == ["run_started", "step", "step", "step", *["token"] * 8, "run_finished"]
    assert [(e["step"], e.get("tool")) for e in events if e["type"] == "step"] == [
        ("thinking", None),
        ("tool_call", "word_count"),
        ("tool_result", "word_count"),
    ]
    assert events[3]["text"] == "2 words, 11 characters"
    assert " ".join(e["text"] for e in events if e["type"] == "token") == (
        "2 words, 11 characters. You wrote: hello there"
    )
    assert events[-1]["status"] == "ok"
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
        ws.send_json({"agent": "researcher", "text": "three", "ref": "m-3"})
        refused = ws.receive_json()
    assert refused["type"] == "error"
    assert refused["code"] == "agent_limit"
    assert refused["ref"] == "m-3"  # the page keeps that message in its input
    assert refused["max_agents"] == 2
    assert "you already use 2 agents (coder, critic)" in refused["text"]
    with client.websocket_connect("/ws", headers=auth("bob")) as ws:  # bob has his own cap
        ws.receive_json()
        assert chat(ws, "hi", agent="researcher")[-1]["type"] == "run_finished"


def settled(done: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait (bounded) until ``done()``: Starlette's TestClient before 0.37 leaves a
    ``websocket_connect`` block once the close frame is sent, before the app's handler
    and its scope's cleanups have finished; newer ones wait for the handler."""
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "the app did not finish the closed sockets"
        time.sleep(0.01)


def test_every_bridge_closes_at_disconnect(client: TestClient) -> None:
    tracker: Tracker = client.app.state.container.tracker()  # type: ignore[attr-defined]
    for user in ("alice", "bob", "alice"):
        with client.websocket_connect("/ws", headers=auth(user)) as ws:
            ws.receive_json()
            chat(ws, "ping")
    settled(lambda: tracker.bridges_closed == 3)
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
        answer = FakeLLM(delay=0).answer_words("coder", "from http")
        assert [e["type"] for e in events] == [
            "run_started", *["step"] * 3, *["token"] * len(answer), "run_finished"
        ]  # fmt: skip
        assert {e["run_id"] for e in events} == {run_id}
        assert {e["user_id"] for e in events} == {"alice"}
        assert [e["text"] for e in events if e["type"] == "token"] == answer
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
    refused = client.post(
        "/api/runs", json={"agent": "researcher", "text": "x"}, headers=auth("alice")
    )
    assert refused.status_code == 429
    assert refused.json()["error"] == "agent_limit"
    assert "you already use 2 agents" in refused.json()["detail"]
    unknown = client.post("/api/runs", json={"agent": "third", "text": "x"}, headers=auth("bob"))
    assert unknown.status_code == 422
    assert unknown.json()["error"] == "unknown_agent"
    too_long = client.post("/api/runs", json={"text": "x" * 2001}, headers=auth("bob"))
    assert too_long.status_code == 422
    assert too_long.json() == {
        "error": "too_long",
        "detail": "the message has 2001 characters; the limit is 2000: shorten it and send again",
    }


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


# -- what a person sees: memory, history, their own scopes, refusals that say why -------


def steps(events: list[dict[str, Any]]) -> dict[str, str]:
    return {e["step"]: e["text"] for e in events if e["type"] == "step"}


def test_agents_remember_the_users_earlier_messages_in_every_tab(client: TestClient) -> None:
    with client.websocket_connect("/ws", headers=auth("alice")) as tab1:
        tab1.receive_json()
        first = chat(tab1, "tides follow the moon")
    with client.websocket_connect("/ws", headers=auth("alice")) as tab2:  # another tab, later
        tab2.receive_json()
        second = chat(tab2, "what is 12 * 7", agent="coder")
    with client.websocket_connect("/ws", headers=auth("bob")) as bob:
        bob.receive_json()
        bobs = chat(bob, "hello")
    assert steps(first)["thinking"] == "your first message: nothing remembered yet"
    assert steps(second)["thinking"] == (
        "message 2 from you; your registry remembers 1 earlier: “tides follow the moon”"
    )
    assert steps(second)["tool_call"] == "calculate(“what is 12 * 7”)"
    assert steps(second)["tool_result"] == "12 * 7 = 84"
    assert steps(bobs)["thinking"] == "your first message: nothing remembered yet"  # his own


def test_connecting_from_the_beginning_replays_the_tabs_history(client: TestClient) -> None:
    with client.websocket_connect("/ws?conversation=tab-h", headers=auth("alice")) as ws:
        ws.receive_json()
        before = chat(ws, "remember this")
    with client.websocket_connect("/ws?conversation=tab-other", headers=auth("alice")) as ws:
        ws.receive_json()
        chat(ws, "another tab")  # not part of tab-h's history
    # a reload: the page connects with after=0-0 and the same conversation id
    with client.websocket_connect("/ws?conversation=tab-h&after=0-0", headers=auth("alice")) as ws:
        hello = ws.receive_json()
        replayed = until(ws, "run_finished")
        ws.send_json({"agent": "assistant", "text": "after the reload"})
        after = until(ws, "run_finished")
    assert hello["resumed_after"] == "0-0"
    assert replayed == [{**e, "user_id": "alice"} for e in before]
    assert after[0]["text"] == "after the reload"  # nothing of tab-other's came in between


def test_scope_panel_shows_only_the_users_own_scopes(client: TestClient) -> None:
    def panel(user: str) -> dict[str, Any]:
        reply = client.get("/api/scopes", headers=auth(user))
        assert reply.status_code == 200
        return reply.json()  # type: ignore[no-any-return]

    with (
        client.websocket_connect("/ws", headers=auth("alice")) as tab1,
        client.websocket_connect("/ws", headers=auth("alice")) as tab2,
        client.websocket_connect("/ws", headers=auth("bob")) as bob,
    ):
        for ws in (tab1, tab2, bob):
            ws.receive_json()
        chat(tab1, "one", agent="coder")
        chat(tab2, "two", agent="coder")
        alice, bobs = panel("alice"), panel("bob")
    assert alice == {
        "user_id": "alice",
        "user_scope": {
            "registries": 1,
            "agents": [{"name": "coder", "turns": 2}],
            "max_agents": 2,
            "memory": 2,
        },
        "connection_scopes": 2,
        "request_scopes": 0,
    }
    assert bobs["connection_scopes"] == 1
    assert bobs["user_scope"]["agents"] == []
    settled(lambda: panel("alice")["connection_scopes"] == 0)  # both tabs closed ...
    assert panel("alice")["user_scope"]["memory"] == 2  # ... the session stays
    assert client.get("/api/scopes").status_code == 401


def test_messages_over_the_limit_are_refused_saying_the_limit(client: TestClient) -> None:
    with client.websocket_connect("/ws", headers=auth("alice")) as ws:
        ws.receive_json()
        ws.send_json({"text": "x" * 2001, "ref": "long-1"})
        refused = ws.receive_json()
        ws.send_json({"text": "hi", "agent": "nobody", "ref": "m-2"})
        unknown = ws.receive_json()
        longest = chat(ws, "y" * 2000)
    assert refused == {
        "type": "error",
        "code": "too_long",
        "text": "the message has 2001 characters; the limit is 2000: shorten it and send again",
        "ref": "long-1",
        "user_id": "alice",
    }
    assert unknown["code"] == "unknown_agent"
    assert unknown["ref"] == "m-2"
    assert longest[0]["text"] == "y" * 2000  # nothing is cut
    assert longest[-1]["status"] == "ok"


@pytest.mark.parametrize(
    ("frame", "code", "reason"),
    [
        (b"\x00\x01", 1003, "binary frames are not accepted: send JSON text"),
        ("hello", 1007, 'not JSON: send {"agent": ..., "text": ...}'),
        ("[" * 50_000, 1007, "the JSON is nested too deeply"),
        ("[1, 2]", 1007, 'expected a JSON object {"agent": ..., "text": ...}'),
        ('{"text": {"nested": true}}', 1007, "the field 'text' must be a string"),
        ("x" * (64 * 1024 + 1), 1009, "a message frame may be at most 65536 bytes"),
    ],
    ids=["binary", "not-json", "deep", "not-object", "not-string", "too-big"],
)
def test_bad_frames_close_the_socket_with_a_reason_and_one_warning(
    client: TestClient,
    caplog: pytest.LogCaptureFixture,
    frame: bytes | str,
    code: int,
    reason: str,
) -> None:
    with client.websocket_connect("/ws", headers=auth("alice")) as ws:
        ws.receive_json()
        caplog.clear()
        if isinstance(frame, bytes):
            ws.send_bytes(frame)
        else:
            ws.send_text(frame)
        closed = ws.receive()
    assert closed == {"type": "websocket.close", "code": code, "reason": reason}
    # the demo's own lines (TestClient's teardown cancels the connection task, which the
    # runtime may log as a failed bridge cleanup: not what this test is about)
    demo = [r for r in caplog.records if r.name == "examples.agent_chat"]
    warnings = [r for r in demo if r.levelno >= logging.WARNING]
    assert [r.getMessage() for r in warnings] == [f"alice: socket closed with {code}: {reason}"]
    assert warnings[0].exc_info is None
    assert warnings[0].userscope_event == "demo_socket"  # type: ignore[attr-defined]


def test_refused_sign_ins_and_connections_are_logged_one_line_each(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="examples.agent_chat")
    stale = mint_token("an-older-secret-of-an-earlier-run-000000", "alice")
    assert client.get("/api/me", headers={"Authorization": f"Bearer {stale}"}).status_code == 401
    with (
        pytest.raises(WebSocketDisconnect) as info,
        client.websocket_connect("/ws", subprotocols=["bearer", stale]),
    ):
        pass  # pragma: no cover
    with client.websocket_connect("/ws?conversation=tab-log", headers=auth("bob")) as ws:
        ws.receive_json()
    lines = [r.getMessage() for r in caplog.records if r.name == "examples.agent_chat"]
    # the peer's address as the test client reports it (older Starlette reports none: "?")
    peer = "testclient" if "from testclient" in lines[0] else "?"
    assert info.value.code == 1008
    assert lines == [
        f"refused sign-in (request /api/me from {peer}): Signature verification failed",
        f"refused sign-in (socket /ws from {peer}): Signature verification failed",
        "bob connected (conversation tab-log; 1 connection(s) open for bob)",
        "bob disconnected (1000)",
    ]
    demo_and_adapter = [r for r in caplog.records if not r.getMessage().startswith("cleanup of")]
    assert all(r.exc_info is None for r in demo_and_adapter)


def test_runs_and_sockets_while_the_broker_is_down_say_so(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("USERSCOPE_REDIS_URL", "redis://127.0.0.1:1/0")  # nothing listens
    monkeypatch.setenv("USERSCOPE_EVENTS_SECRET", "demo-events-secret-7f3a9c1e5b2d8f4a6c0e")
    app = create_app(DemoSettings(secret=SECRET, events_timeout=1.0))
    with TestClient(app) as down:
        reply = down.post("/api/runs", json={"text": "hi"}, headers=auth("alice"))
        with down.websocket_connect("/ws", headers=auth("alice")) as ws:
            told = ws.receive_json()
            closed = ws.receive()
    assert reply.status_code == 503
    assert reply.json()["error"] == "events_unavailable"
    assert "the run was not started" in reply.json()["detail"]
    assert told["type"] == "error"
    assert told["code"] == "events_unavailable"
    assert closed["code"] == 1013  # try again later: the page reconnects
    assert len(app.state.runs) == 0
    demo_lines = [r for r in caplog.records if r.name == "examples.agent_chat"]
    assert any("event broker unavailable" in r.getMessage() for r in demo_lines)
    assert all(r.exc_info is None for r in demo_lines)


@pytest.mark.parametrize("module", [agent_chat, agent_chat_app, agent_chat_domain])
def test_docstring_examples_run(module: Any) -> None:
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
