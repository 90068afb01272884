"""`Inject` in ``async def`` HTTP endpoints: resolved by the adapter, not by FastAPI's
dependency machinery, with the same results and refusals as the plain ``Depends`` path."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import weakref
from typing import Annotated, Any

import pytest
from adapter_support import AUDIENCE, ISSUER, SECRET, make_token
from dependency_injector import containers, providers
from fastapi import APIRouter, Depends, FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

import userscope as us
from userscope.adapters.fastapi import Inject, JWTAuthenticator, install
from userscope.adapters.fastapi._routes import prepare_routes

_numbers = itertools.count(1)


class Thing:
    """A fresh object per resolution of a plain ``Factory``."""

    def __init__(self) -> None:
        self.number = next(_numbers)


class Tagged:
    def __init__(self, context: us.UserExecutionContext, tag: str) -> None:
        self.user_id = context.user_id
        self.tag = tag


async def make_async_tagged(context: us.UserExecutionContext, tag: str) -> Tagged:
    return Tagged(context, f"async-{tag}")


class FastContainer(containers.DeclarativeContainer):
    tag = providers.Object("base")
    context = us.CurrentContext()
    tagged = us.RequestScoped(Tagged, context, tag)
    async_tagged = us.RequestScoped(make_async_tagged, context, tag)
    thing = providers.Factory(Thing)


SharedThing = Annotated[Thing, Inject(FastContainer.thing)]


async def helper(thing: SharedThing) -> Thing:
    return thing


def authenticator() -> JWTAuthenticator:
    return JWTAuthenticator(key=SECRET, algorithms=["HS256"], audience=AUDIENCE, issuer=ISSUER)


def bearer(sub: str = "alice") -> dict[str, str]:
    return {"Authorization": f"Bearer {make_token(sub)}"}


def route(app: FastAPI, path: str) -> APIRoute:
    (found,) = [r for r in app.router.routes if isinstance(r, APIRoute) and r.path == path]
    return found


def fast(holder: Any) -> bool:
    """Whether a route (or FastAPI's per-inclusion route context) is on the fast path."""
    return type(holder.app).__name__ == "_ResolvingApp"


def build(container: FastContainer | None = None) -> tuple[FastAPI, FastContainer]:
    container = container or FastContainer()
    app = FastAPI()

    @app.get("/before")  # declared before install()
    async def before(tagged: Annotated[Tagged, Inject(FastContainer.tagged)]) -> dict[str, Any]:
        return {"user_id": tagged.user_id, "tag": tagged.tag}

    install(app, container, us.UserSessions(), authenticate=authenticator())

    @app.get("/after")  # declared after install(): prepared at startup / first request
    async def after(
        q: int,
        tagged: Annotated[Tagged, Inject(FastContainer.tagged)],
        again: Tagged = Inject(FastContainer.tagged),
        late: Tagged = Inject(FastContainer.async_tagged),
    ) -> dict[str, Any]:
        return {
            "q": q,
            "user_id": tagged.user_id,
            "same": again is tagged,
            "late": late.tag,
            "current_user": us.current_context().user_id,  # type: ignore[union-attr]
        }

    @app.get("/sync")
    def sync(tagged: Annotated[Tagged, Inject(FastContainer.tagged)]) -> dict[str, Any]:
        return {"user_id": tagged.user_id}

    return app, container


def test_async_routes_take_the_fast_path_and_def_routes_keep_depends() -> None:
    app, _ = build()
    assert fast(route(app, "/before"))  # prepared by install()
    with TestClient(app) as client:
        assert fast(route(app, "/after"))  # prepared at lifespan startup
        assert not fast(route(app, "/sync"))
        after = client.get("/after", params={"q": 3}, headers=bearer("alice")).json()
        before = client.get("/before", headers=bearer("bob")).json()
        sync = client.get("/sync", headers=bearer("carol")).json()
    assert after == {
        "q": 3,
        "user_id": "alice",
        "same": True,
        "late": "async-base",
        "current_user": "alice",
    }
    assert before == {"user_id": "bob", "tag": "base"}
    assert sync == {"user_id": "carol"}
    # nothing of FastAPI's left for the moved parameters, and the schema is unchanged
    assert route(app, "/after").dependant.dependencies == []
    assert [p.name for p in route(app, "/after").dependant.query_params] == ["q"]


def test_first_request_prepares_routes_when_there_is_no_lifespan() -> None:
    app, _ = build()
    client = TestClient(app)  # no ``with``: the lifespan never runs
    assert not fast(route(app, "/after"))
    response = client.get("/after", params={"q": 1}, headers=bearer("alice"))
    assert response.json()["user_id"] == "alice"
    assert fast(route(app, "/after"))


def test_preparing_twice_changes_nothing() -> None:
    app, _ = build()
    with TestClient(app) as client:  # install, lifespan startup and first request
        client.get("/health")
        wrapped = route(app, "/after").app
        assert prepare_routes(app.router.routes, None) == 0
    assert route(app, "/after").app is wrapped
    assert type(wrapped.app).__name__ != "_ResolvingApp"  # type: ignore[attr-defined]


def test_without_credentials_the_401_comes_before_validation() -> None:
    """As with FastAPI's own dependencies, injected providers are resolved before the
    request's parameters are validated: no user means 401, whatever the parameters."""
    app, _ = build()
    with TestClient(app) as client:
        anonymous = client.get("/after")  # no token and no ``q``
        signed_in = client.get("/after", headers=bearer("alice"))  # token, no ``q``
    assert anonymous.status_code == 401
    assert anonymous.json()["error"] == "unauthenticated"
    assert anonymous.headers["www-authenticate"].startswith("Bearer")
    assert signed_in.status_code == 422


def test_overrides_on_the_installed_container_apply() -> None:
    app, container = build()
    with container.tag.override("override"), TestClient(app) as client:
        body = client.get("/before", headers=bearer("alice")).json()
    assert body["tag"] == "override"


def test_an_inject_shared_with_a_dependency_keeps_fastapi_request_cache() -> None:
    """FastAPI resolves a dependency once per request even when it is used twice; an
    ``Inject`` marker shared with another dependency stays with FastAPI for that reason."""
    app = FastAPI()
    install(app, FastContainer(), us.UserSessions(), authenticate=authenticator())

    @app.get("/shared")
    async def endpoint(
        thing: SharedThing,
        via_helper: Annotated[Thing, Depends(helper)],
        own: Thing = Inject(FastContainer.thing),
    ) -> dict[str, Any]:
        return {"same": thing is via_helper, "own_differs": own is not thing}

    with TestClient(app) as client:
        body = client.get("/shared").json()
    assert body == {"same": True, "own_differs": True}
    assert fast(route(app, "/shared"))  # ``own`` moved, ``thing`` stayed with FastAPI


def test_included_routers_each_resolve_through_their_own_app_container() -> None:
    router = APIRouter()

    @router.get("/tag")
    async def tag(tagged: Annotated[Tagged, Inject(FastContainer.tagged)]) -> dict[str, Any]:
        return {"tag": tagged.tag, "user_id": tagged.user_id}

    apps = []
    for name in ("one", "two"):
        container = FastContainer()
        container.tag.override(name)
        app = FastAPI()
        app.include_router(router, prefix=f"/{name}")
        install(app, container, us.UserSessions(), authenticate=authenticator())
        apps.append(app)

    for name, app in zip(("one", "two"), apps, strict=True):
        with TestClient(app) as client:
            body = client.get(f"/{name}/tag", headers=bearer("alice")).json()
        assert body == {"tag": name, "user_id": "alice"}


def test_a_rebuilt_route_app_still_gets_its_values() -> None:
    """Should FastAPI rebuild a prepared route's app, the endpoint resolves by itself."""
    app, _ = build()
    with TestClient(app) as client:
        prepared = route(app, "/before")
        prepared.app = prepared.app.app  # type: ignore[attr-defined]
        body = client.get("/before", headers=bearer("alice")).json()
        anonymous = client.get("/before")
    assert body == {"user_id": "alice", "tag": "base"}
    assert anonymous.status_code == 401


def fail() -> Tagged:
    raise RuntimeError("secret detail")


@pytest.mark.parametrize("path", ["/before", "/sync"])
def test_errors_keep_their_refusals(path: str) -> None:
    app, container = build()
    with container.tagged.override(providers.Callable(fail)), TestClient(app) as client:
        response = client.get(path, headers=bearer("alice"))
    assert response.status_code == 500
    assert response.json()["error"] == "internal_error"
    assert "secret" not in response.text


def test_tasks_started_by_the_endpoint_keep_no_injected_instance_alive() -> None:
    """A task copies the request's context; the values handed to the endpoint through it
    are dropped when the request ends, so the scope's objects can be collected."""
    app = FastAPI()
    install(app, FastContainer(), us.UserSessions(), authenticate=authenticator())
    seen: list[weakref.ref[Tagged]] = []
    tasks: list[asyncio.Task[None]] = []

    @app.get("/spawn")
    async def spawn(tagged: Annotated[Tagged, Inject(FastContainer.tagged)]) -> None:
        seen.append(weakref.ref(tagged))
        tasks.append(asyncio.get_running_loop().create_task(asyncio.sleep(30)))

    with TestClient(app) as client:
        assert client.get("/spawn", headers=bearer("alice")).status_code == 200
        gc.collect()
        assert seen[0]() is None
        assert not tasks[0].done()  # the task (and its context copy) is still alive
        client.portal.call(_cancel, tasks[0])  # type: ignore[union-attr]


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
