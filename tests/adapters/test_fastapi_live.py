"""FastAPI adapter on a real uvicorn server with real clients (httpx, websockets).

Refusals, token expiry on an open socket, forged identity attempts, limits.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest
from adapter_support import AdapterApp, build_adapter_app, make_token, serve
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from userscope.adapters.fastapi import _middleware
from userscope.adapters.fastapi._middleware import ExpiryDeadline


def bearer(sub: str = "alice", **kw: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_token(sub, **kw)}"}


async def wait_until_idle(app: AdapterApp) -> None:
    """The server finishes a connection's cleanup a moment after the client sees the close."""
    for _ in range(500):
        stats = app.sessions.stats()
        if stats.connections == 0 and stats.requests == 0:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"scopes still open: {app.sessions.stats()}")


async def test_http_refusals_and_public_endpoint() -> None:
    app = build_adapter_app()
    with serve(app.app) as server:
        async with httpx.AsyncClient(base_url=server.http) as client:
            health = await client.get("/health")
            missing = await client.get("/whoami")
            invalid = await client.get("/whoami", headers={"Authorization": "Bearer nope"})
            expired = await client.get("/whoami", headers=bearer(exp_in=-10))
            boom = await client.get("/boom", headers=bearer())
            other = await client.get("/other-user", headers=bearer())
            ok = await client.get("/whoami", headers=bearer("alice"))
    assert health.status_code == 200
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert missing.json()["error"] == "unauthenticated"
    assert invalid.status_code == expired.status_code == 401
    assert (invalid.json()["error"], expired.json()["error"]) == ("invalid_token", "token_expired")
    assert boom.status_code == 500
    assert boom.headers["content-type"] == "application/json"
    assert "secret" not in boom.text
    assert "Traceback" not in boom.text
    assert other.status_code == 403
    assert ok.json()["user_id"] == "alice"
    assert app.probe.opened["worker"] == app.probe.closed["worker"] == 2  # ok + boom
    assert app.sessions.stats().closed  # lifespan shutdown closed the sessions


async def test_forged_identity_never_becomes_the_context() -> None:
    app = build_adapter_app()
    forged_token = make_token("mallory", key="attacker-secret-attacker-secret-0123")
    with serve(app.app) as server:
        async with httpx.AsyncClient(base_url=server.http) as client:
            signed_in = await client.post(
                "/forged?user_id=mallory",
                json={"user_id": "mallory"},
                headers={**bearer("alice"), "X-User-Id": "mallory"},
            )
            anonymous = await client.post(
                "/forged?user_id=mallory",
                json={"user_id": "mallory"},
                headers={"X-User-Id": "mallory"},
            )
            anonymous_public = await client.get(
                "/health?user_id=mallory", headers={"X-User-Id": "mallory"}
            )
            wrong_key = await client.post(
                "/forged",
                json={"user_id": "mallory"},
                headers={"Authorization": f"Bearer {forged_token}"},
            )
        body = signed_in.json()
        assert (body["context_user"], body["current_user"]) == ("alice", "alice")
        assert body["header_user"] == body["body_user"] == body["query_user"] == "mallory"
        assert anonymous.status_code == 401
        assert anonymous_public.json()["user_id"] is None
        assert wrong_key.status_code == 401

        # WebSocket: X-User-Id header and query fields are ignored; the token decides.
        async with connect(
            f"{server.ws}/ws?user_id=mallory",
            additional_headers={**bearer("alice"), "X-User-Id": "mallory"},
        ) as ws:
            await ws.send("hello")
            reply = json.loads(await ws.recv())
        assert reply["user_id"] == reply["current_user"] == reply["worker_user"] == "alice"
        for headers in ({"X-User-Id": "mallory"}, {"Authorization": f"Bearer {forged_token}"}):
            with pytest.raises(InvalidStatus) as info:
                async with connect(f"{server.ws}/ws", additional_headers=headers):
                    pass  # pragma: no cover - refused before accept
            assert info.value.response.status_code == 403  # uvicorn's answer to close-before-accept
        with pytest.raises(InvalidStatus):  # query tokens are opt-in
            async with connect(f"{server.ws}/ws?token={make_token('alice')}"):
                pass  # pragma: no cover
    assert app.probe.opened["channel"] == 1


async def test_websocket_with_subprotocol_token_and_message_scopes() -> None:
    app = build_adapter_app()
    with serve(app.app) as server:
        async with connect(
            f"{server.ws}/ws",
            subprotocols=["bearer", make_token("bob")],  # type: ignore[list-item]
        ) as ws:
            assert ws.subprotocol == "bearer"
            replies = []
            for text in ("one", "two", "three"):
                await ws.send(text)
                replies.append(json.loads(await ws.recv()))
            assert app.sessions.stats().connections == 1
        assert {r["user_id"] for r in replies} == {"bob"}
        assert len({r["request_id"] for r in replies}) == 3
        assert len({r["worker"] for r in replies}) == 3
        assert len({r["channel"] for r in replies}) == 1
        await wait_until_idle(app)
    assert app.probe.opened["worker"] == app.probe.closed["worker"] == 3
    assert app.probe.opened["channel"] == app.probe.closed["channel"] == 1


async def test_token_expiry_closes_open_socket_with_1008(monkeypatch: pytest.MonkeyPatch) -> None:
    # uvicorn runs on asyncio: the connection gets the one-timer deadline (recorded here)
    deadlines: list[ExpiryDeadline] = []
    start = _middleware.start_deadline

    def recording(expires_at: float) -> ExpiryDeadline | None:
        deadline = start(expires_at)
        if deadline is not None:
            deadlines.append(deadline)
        return deadline

    monkeypatch.setattr(_middleware, "start_deadline", recording)
    app = build_adapter_app()
    with serve(app.app) as server:
        # long enough for the handshake and one echo on a loaded box (a 1 s token failed
        # there once: the echo itself came after `exp`)
        token = make_token("alice", exp_in=3.0)
        async with connect(f"{server.ws}/ws", subprotocols=["bearer", token]) as ws:  # type: ignore[list-item]
            await ws.send("before expiry")
            assert json.loads(await ws.recv())["text"] == "before expiry"
            # The server closes the socket by itself when `exp` passes.
            with pytest.raises(ConnectionClosed) as info:
                await asyncio.wait_for(ws.recv(), timeout=10)
            assert info.value.rcvd is not None
            assert info.value.rcvd.code == 1008
            assert "expired" in info.value.rcvd.reason
        await wait_until_idle(app)
    assert app.probe.opened["worker"] == 1  # no message scope after exp
    assert app.probe.opened["channel"] == app.probe.closed["channel"] == 1
    assert len(deadlines) == 1
    assert deadlines[0].handle is None  # it fired, and nothing of it is left
    assert deadlines[0].waiter is None
    assert deadlines[0].fired is None


async def test_message_scope_refuses_after_expiry() -> None:
    """A message received before exp but handled after it opens no scope."""
    app = build_adapter_app()
    with serve(app.app) as server:
        exp_in = 3.0  # the handshake must finish before `exp`, also on a loaded box
        token = make_token("alice", exp_in=exp_in)
        async with connect(
            f"{server.ws}/ws", additional_headers={"Authorization": f"Bearer {token}"}
        ) as ws:
            await ws.send(f"sleep:{exp_in + 0.3}")
            with pytest.raises(ConnectionClosed) as info:
                await asyncio.wait_for(ws.recv(), timeout=10)
        assert info.value.rcvd is not None
        assert info.value.rcvd.code == 1008
        await wait_until_idle(app)
    assert app.probe.opened["worker"] == 0


async def test_websocket_limits_close_1013_and_http_limits_429() -> None:
    app = build_adapter_app(max_connections_per_user=1)
    with serve(app.app) as server:
        async with connect(f"{server.ws}/ws", additional_headers=bearer("alice")) as first:
            await first.send("hi")
            await first.recv()
            async with connect(f"{server.ws}/ws", additional_headers=bearer("alice")) as second:
                with pytest.raises(ConnectionClosed) as info:
                    await asyncio.wait_for(second.recv(), timeout=10)
            assert info.value.rcvd is not None
            assert info.value.rcvd.code == 1013
            # another user is not affected by alice's limit
            async with connect(f"{server.ws}/ws", additional_headers=bearer("bob")) as other:
                await other.send("hi")
                assert json.loads(await other.recv())["user_id"] == "bob"
        await wait_until_idle(app)

    app = build_adapter_app(max_requests_per_user=1)
    with serve(app.app) as server:
        async with httpx.AsyncClient(base_url=server.http, timeout=15) as client:
            held = asyncio.create_task(client.get("/hold", headers=bearer("carol")))
            for _ in range(500):  # wait until the held request is inside its scope
                if app.probe.opened["worker"] >= 1:
                    break
                await asyncio.sleep(0.01)
            refused = await client.get("/whoami", headers=bearer("carol"))
            app.probe.release.set()
            assert (await held).status_code == 200
        assert refused.status_code == 429
        assert refused.json()["error"] == "too_many_requests"
        assert "max_requests_per_user" in refused.json()["detail"]


async def test_every_scope_closed_after_many_sequential_sockets() -> None:
    app = build_adapter_app()
    started = time.monotonic()
    with serve(app.app) as server:
        for user in ("u1", "u2", "u3"):
            async with connect(f"{server.ws}/ws", additional_headers=bearer(user)) as ws:
                await ws.send("x")
                assert json.loads(await ws.recv())["user_id"] == user
        await wait_until_idle(app)
        stats = app.sessions.stats()
    assert stats.users == 3
    assert app.probe.open_now("channel") == 0
    assert time.monotonic() - started < 60  # sanity bound, not a speed assertion
