"""FastAPI adapter, in-process (Starlette TestClient): injection, scopes, refusals, lifespan."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Annotated, Any

import pytest
from adapter_support import SECRET, AdapterApp, AppContainer, Worker, make_token
from dependency_injector import containers, providers
from fastapi import FastAPI, WebSocket
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

import userscope as us
import userscope.adapters.fastapi as adapter
from userscope.adapters.fastapi import (
    AlreadyInstalledError,
    Inject,
    JWTAuthenticator,
    NotInstalledError,
    install,
    message_scope,
)


def bearer(sub: str = "alice", **kw: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_token(sub, **kw)}"}


def test_public_names_are_exported_sorted() -> None:
    assert adapter.__all__ == sorted(adapter.__all__)
    for name in ("install", "Inject", "message_scope", "JWTAuthenticator"):
        assert name in adapter.__all__
        assert getattr(adapter, name).__doc__


def test_health_needs_no_credentials(adapter_app: AdapterApp) -> None:
    with TestClient(adapter_app.app) as client:
        response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "user_id": None}


def test_async_endpoint_gets_request_scoped_instance_of_the_token_user(
    adapter_app: AdapterApp,
) -> None:
    with TestClient(adapter_app.app) as client:
        first = client.get("/whoami", headers=bearer("alice")).json()
        second = client.get("/whoami", headers=bearer("alice")).json()
    assert first["user_id"] == first["worker_user"] == "alice"
    assert first["worker"] != second["worker"]  # one worker per request
    assert first["request_id"] != second["request_id"]
    assert adapter_app.probe.opened["worker"] == adapter_app.probe.closed["worker"] == 2


def test_sync_endpoint_resolves_in_the_event_loop_thread(adapter_app: AdapterApp) -> None:
    with TestClient(adapter_app.app) as client:
        body = client.get("/whoami-sync", headers=bearer("bob")).json()
        loop_thread = client.get("/whoami", headers=bearer("bob")).json()["endpoint_thread"]
    assert body["user_id"] == body["worker_user"] == "bob"
    assert body["same_worker"] is True  # the endpoint thread sees the same REQUEST scope
    # Inject resolves in an ``async def`` dependency: the worker was created on the loop
    # thread (where async endpoints run), not on the threadpool thread of the sync endpoint.
    assert body["endpoint_thread"] != loop_thread
    assert adapter_app.probe.threads["worker"] == loop_thread


def test_async_provider_is_awaited_for_async_and_sync_endpoints(adapter_app: AdapterApp) -> None:
    with TestClient(adapter_app.app) as client:
        body = client.get("/async-worker", headers=bearer("carol")).json()
        sync_body = client.get("/async-worker-sync", headers=bearer("dave")).json()
    assert body == {"worker_user": "carol", "same_worker": True}
    assert sync_body == {"worker_user": "dave"}
    assert adapter_app.probe.opened["async_worker"] == adapter_app.probe.closed["async_worker"] == 2


def test_user_scope_spans_requests_of_the_same_user_only(adapter_app: AdapterApp) -> None:
    with TestClient(adapter_app.app) as client:
        a1 = client.get("/notebook", headers=bearer("alice")).json()
        a2 = client.get("/notebook", headers=bearer("alice")).json()
        b1 = client.get("/notebook", headers=bearer("bob")).json()
    assert (a1["pages"], a2["pages"], b1["pages"]) == (1, 2, 1)
    assert b1["user_id"] == "bob"


def test_scoped_endpoint_without_credentials_is_401_and_resolves_nothing(
    adapter_app: AdapterApp,
) -> None:
    with TestClient(adapter_app.app) as client:
        response = client.get("/whoami")
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["error"] == "unauthenticated"
    assert adapter_app.probe.opened["worker"] == 0


@pytest.mark.parametrize(
    ("headers", "error"),
    [
        ({"Authorization": "Bearer not.a.jwt"}, "invalid_token"),
        (bearer("alice", exp_in=-60), "token_expired"),
        (bearer("alice", key="another-secret-another-secret-0123456789"), "invalid_token"),
        (bearer("alice", aud="someone-else"), "invalid_token"),
        ({"Authorization": "Bearer "}, "invalid_token"),
    ],
)
def test_invalid_or_expired_token_is_401_even_on_public_endpoints(
    adapter_app: AdapterApp, headers: dict[str, str], error: str
) -> None:
    with TestClient(adapter_app.app) as client:
        for path in ("/whoami", "/health"):
            response = client.get(path, headers=headers)
            assert response.status_code == 401
            assert response.json()["error"] == error
            assert 'error="invalid_token"' in response.headers["www-authenticate"]
            assert "Traceback" not in response.text


def test_unexpected_error_is_json_500_without_trace_and_cleanup_runs(
    adapter_app: AdapterApp, caplog: pytest.LogCaptureFixture
) -> None:
    with TestClient(adapter_app.app) as client:
        response = client.get("/boom", headers=bearer("alice"))
    assert response.status_code == 500
    assert response.json() == {
        "error": "internal_error",
        "detail": "the server failed to handle this",
    }
    assert "secret internal detail" not in response.text
    assert adapter_app.probe.opened["worker"] == adapter_app.probe.closed["worker"] == 1
    assert any("RuntimeError" in r.getMessage() for r in caplog.records)


def test_isolation_error_is_403(adapter_app: AdapterApp) -> None:
    with TestClient(adapter_app.app) as client:
        response = client.get("/other-user", headers=bearer("alice"))
    assert response.status_code == 403
    assert response.json()["error"] == "forbidden"
    assert "mallory" not in response.text


def test_stats_endpoint_is_guarded(adapter_app: AdapterApp) -> None:
    with TestClient(adapter_app.app) as client:
        client.get("/notebook", headers=bearer("alice"))
        refused = client.get("/admin/userscope", headers=bearer("alice"))
        allowed = client.get("/admin/userscope", headers={"X-Admin": "let-me-in"})
        wrong_method = client.post("/admin/userscope", headers={"X-Admin": "let-me-in"})
    assert refused.status_code == 403
    assert refused.json()["error"] == "forbidden"
    assert allowed.status_code == 200
    stats = allowed.json()
    assert stats["users"] == 1
    assert stats["requests"] == 0  # the stats request opens no scope itself
    assert wrong_method.status_code == 405


def test_install_refuses_stats_path_without_guard() -> None:
    app = FastAPI()
    with pytest.raises(ValueError, match="stats_guard"):
        install(
            app,
            AppContainer(),
            us.UserSessions(),
            authenticate=JWTAuthenticator(key=SECRET, algorithms=["HS256"]),
            stats_path="/stats",
        )
    assert app.user_middleware == []  # nothing half-installed


def test_install_twice_is_refused(adapter_app: AdapterApp) -> None:
    middleware = list(adapter_app.app.user_middleware)
    with pytest.raises(AlreadyInstalledError) as info:
        install(
            adapter_app.app,
            adapter_app.container,
            adapter_app.sessions,
            authenticate=JWTAuthenticator(key=SECRET, algorithms=["HS256"]),
        )
    assert info.value.app == adapter_app.app.title
    assert isinstance(info.value, RuntimeError)
    assert "call install() once per app" in str(info.value)
    assert adapter_app.app.user_middleware == middleware  # the first install stands


def test_install_validates_the_container() -> None:
    class Captive(containers.DeclarativeContainer):
        context = us.CurrentContext()
        per_request = us.RequestScoped(list)
        cached = providers.Singleton(list, per_request)

    with pytest.raises(us.CaptiveDependencyError) as info:
        install(
            FastAPI(),
            Captive(),
            us.UserSessions(),
            authenticate=JWTAuthenticator(key=SECRET, algorithms=["HS256"]),
        )
    assert info.value.paths


def test_install_uses_a_pure_asgi_middleware(adapter_app: AdapterApp) -> None:
    from starlette.middleware.base import BaseHTTPMiddleware

    (middleware,) = adapter_app.app.user_middleware
    assert middleware.cls is adapter.UserscopeMiddleware
    assert not issubclass(adapter.UserscopeMiddleware, BaseHTTPMiddleware)


def test_lifespan_composes_starts_reaper_and_closes_sessions() -> None:
    events: list[str] = []

    @contextlib.asynccontextmanager
    async def app_lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        events.append("app startup")
        yield {"greeting": "hi"}
        events.append("app shutdown")

    class Sessions(us.UserSessions):
        reaper: asyncio.Task[None] | None = None

        def start_reaper(self, interval: float | None = None) -> asyncio.Task[None] | None:
            events.append("reaper started")
            self.reaper = asyncio.get_running_loop().create_task(asyncio.sleep(3600))
            return self.reaper

        async def aclose(self) -> None:
            assert self.reaper is not None
            assert self.reaper.cancelled()
            events.append("sessions closed")
            await super().aclose()

    app = FastAPI(lifespan=app_lifespan)
    sessions = Sessions()
    install(
        app,
        AppContainer(),
        sessions,
        authenticate=JWTAuthenticator(key=SECRET, algorithms=["HS256"]),
    )

    @app.get("/greeting")
    async def greeting(request: Any = None) -> dict[str, Any]:
        return {"ok": True}

    with TestClient(app) as client:
        assert client.get("/greeting").json() == {"ok": True}
        assert events == ["reaper started", "app startup"]
    assert events == ["reaper started", "app startup", "app shutdown", "sessions closed"]
    assert sessions.stats().closed is True


def test_lifespan_without_reaper_support_still_closes_sessions() -> None:
    closed: list[bool] = []

    class Plain:
        """Duck-typed sessions object without start_reaper."""

        def __init__(self) -> None:
            self.inner = us.UserSessions()

        def __getattr__(self, name: str) -> Any:
            if name == "start_reaper":
                raise AttributeError(name)
            return getattr(self.inner, name)

        async def aclose(self) -> None:
            closed.append(True)
            await self.inner.aclose()

    app = FastAPI()
    install(
        app,
        AppContainer(),
        Plain(),
        authenticate=JWTAuthenticator(key=SECRET, algorithms=["HS256"]),
    )  # type: ignore[arg-type]
    with TestClient(app):
        pass
    assert closed == [True]


def test_websocket_message_scope_per_message(adapter_app: AdapterApp) -> None:
    with TestClient(adapter_app.app) as client:
        with client.websocket_connect("/ws", headers=bearer("alice")) as ws:
            ws.send_text("one")
            first = ws.receive_json()
            ws.send_text("two")
            second = ws.receive_json()
        assert first["user_id"] == first["worker_user"] == first["channel_user"] == "alice"
        assert first["current_user"] == "alice"
        assert first["request_id"] != second["request_id"]
        assert first["connection_id"] == second["connection_id"]
        assert first["worker"] != second["worker"]
        assert first["channel"] == second["channel"]
    probe = adapter_app.probe
    assert probe.opened["worker"] == probe.closed["worker"] == 2
    assert probe.opened["channel"] == probe.closed["channel"] == 1


def test_websocket_without_credentials_is_closed_1008_before_accept(
    adapter_app: AdapterApp,
) -> None:
    with TestClient(adapter_app.app) as client:
        for headers in ({}, {"Authorization": "Bearer junk"}, {"X-User-Id": "alice"}):
            with (
                pytest.raises(WebSocketDisconnect) as info,
                client.websocket_connect("/ws", headers=headers),
            ):
                pass  # pragma: no cover - refused before accept
            assert info.value.code == 1008
    assert adapter_app.probe.opened["channel"] == 0


def test_websocket_token_in_subprotocol_is_accepted_with_bearer(adapter_app: AdapterApp) -> None:
    with (
        TestClient(adapter_app.app) as client,
        client.websocket_connect("/ws", subprotocols=["bearer", make_token("bob")]) as ws,
    ):
        assert ws.accepted_subprotocol == "bearer"
        ws.send_text("hi")
        assert ws.receive_json()["user_id"] == "bob"


def test_websocket_isolation_error_closes_1008(adapter_app: AdapterApp) -> None:
    with (
        TestClient(adapter_app.app) as client,
        client.websocket_connect("/ws", headers=bearer("alice")) as ws,
    ):
        ws.send_text("impersonate")
        with pytest.raises(WebSocketDisconnect) as info:
            ws.receive_json()
    assert info.value.code == 1008


def test_websocket_unexpected_error_closes_1011_and_cleans_up(adapter_app: AdapterApp) -> None:
    with (
        TestClient(adapter_app.app) as client,
        client.websocket_connect("/ws", headers=bearer("alice")) as ws,
    ):
        ws.send_text("boom")
        with pytest.raises(WebSocketDisconnect) as info:
            ws.receive_json()
    assert info.value.code == 1011
    assert "secret" not in (info.value.reason or "")
    probe = adapter_app.probe
    assert probe.opened["worker"] == probe.closed["worker"] == 1
    assert probe.opened["channel"] == probe.closed["channel"] == 1


def test_message_scope_outside_the_middleware_is_a_clear_error() -> None:
    app = FastAPI()

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            async with message_scope(websocket):
                pass  # pragma: no cover
        except NotInstalledError as exc:
            await websocket.send_json(
                {"provider": exc.provider, "path": exc.path, "text": str(exc)}
            )
        await websocket.close()

    with TestClient(app) as client, client.websocket_connect("/ws") as conn:
        refused = conn.receive_json()
    assert (refused["provider"], refused["path"]) == ("message_scope()", "/ws")
    assert "install(app, container, sessions" in refused["text"]


def test_a_message_scope_object_is_entered_once(adapter_app: AdapterApp) -> None:
    app = adapter_app.app

    @app.websocket("/ws-reuse")
    async def reuse(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.receive_text()
        scope = message_scope(websocket)
        async with scope as ctx:
            first = ctx.request_id
        try:
            async with scope:
                pass  # pragma: no cover - refused on entry
        except us.ScopeReuseError as exc:
            await websocket.send_json({"first": first, "kind": exc.kind, "problem": exc.problem})

    with (
        TestClient(app) as client,
        client.websocket_connect("/ws-reuse", headers=bearer("alice")) as ws,
    ):
        ws.send_text("go")
        answer = ws.receive_json()
    assert (answer["kind"], answer["problem"]) == ("request", "used")
    assert answer["first"]


def test_inject_resolves_through_the_installed_container_instance(adapter_app: AdapterApp) -> None:
    """Overrides on the instance given to install() apply to Inject(Container.x)."""
    impostor = Worker("override", "r", 0)
    with (
        adapter_app.container.worker.override(providers.Object(impostor)),
        TestClient(adapter_app.app) as client,
    ):
        body = client.get("/whoami", headers=bearer("alice")).json()
    assert body["worker_user"] == "override"
    assert adapter_app.probe.opened["worker"] == 0


class Bare(containers.DeclarativeContainer):
    context = us.CurrentContext()
    thing = us.RequestScoped(list)


def test_inject_without_scope_never_falls_back(caplog: pytest.LogCaptureFixture) -> None:
    """Without the middleware there is no scope: resolution refuses, nothing is created,
    and the answer is a 500 that says to call `install` (never a 401: the token is not
    the problem)."""
    app = FastAPI()
    made: list[Any] = []

    @app.get("/thing")
    async def thing(value: Annotated[list[Any], Inject(Bare.thing)]) -> list[Any]:
        made.append(value)  # pragma: no cover
        return value  # pragma: no cover

    with TestClient(app) as client:
        response = client.get("/thing", headers={"Authorization": f"Bearer {make_token()}"})
    assert response.status_code == 500
    assert made == []
    (record,) = [r for r in caplog.records if r.name == "userscope.adapters.fastapi"]
    assert record.userscope_event == "not_installed"  # type: ignore[attr-defined]
    assert "install(app, " in record.getMessage()
