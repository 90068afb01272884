"""JWTAuthenticator.from_oidc against a real OpenID Connect provider process.

The provider (PyPI ``oidc-provider-mock``) runs as a child process on a loopback
port; tokens come from its real authorization-code flow; the app runs on a real
uvicorn server and is reached with httpx and websockets. Restarting the provider
gives it a new signing key (rotation); stopping it takes its JWKS endpoint down.
"""

from __future__ import annotations

import asyncio
import faulthandler
import json
import logging
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from adapter_support import serve
from identity_support import OIDCProvider, identity_app, oidc_provider, private_key
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from userscope.adapters.fastapi import JWTAuthenticator

AUDIENCE = "chat-api"
ALICE = {"sub": "alice", "tenant": "acme", "roles": ["admin", "reader"]}


@pytest.fixture(autouse=True)
def _bounded() -> Iterator[None]:
    """A hang dumps every thread's stack and fails the run instead of waiting forever."""
    faulthandler.dump_traceback_later(120, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OIDCProvider]:
    with oidc_provider(tmp_path_factory.mktemp("oidc"), users=(ALICE,)) as running:
        yield running


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as http:
        yield http


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def ws_whoami(base: str, token: str) -> dict[str, Any]:
    async with asyncio.timeout(10):
        async with connect(f"{base}/ws", subprotocols=["bearer", token]) as ws:  # type: ignore[list-item]
            await ws.send("hi")
            reply: dict[str, Any] = json.loads(await ws.recv())
            return reply


def oidc(provider: OIDCProvider, **options: Any) -> JWTAuthenticator:
    return JWTAuthenticator.from_oidc(
        provider.issuer, audience=AUDIENCE, algorithms=["RS256"], tenant_claim="tenant", **options
    )


async def test_discovery_and_a_real_token_over_http_and_websocket(
    provider: OIDCProvider, client: httpx.AsyncClient
) -> None:
    token = provider.id_token("alice", client_id=AUDIENCE)
    auth = oidc(provider)
    await auth.aload_keys()
    assert auth.key_set is not None
    assert auth.key_set.jwks_url == f"{provider.issuer}/jwks"  # from the discovery document
    assert auth.key_set.issuer == provider.issuer
    with serve(identity_app(auth)) as server:
        response = await client.get(f"{server.http}/whoami", headers=bearer(token))
        assert response.status_code == 200, response.text
        expected = {
            "user_id": "alice",
            "tenant_id": "acme",
            "thread_id": "default",
            "roles": ["admin", "reader"],
            "scopes": [],
        }
        assert response.json() == expected
        assert await ws_whoami(server.ws, token) == expected
        anonymous = await client.get(f"{server.http}/whoami")
        assert anonymous.status_code == 401


async def test_wrong_audience_and_wrong_issuer_are_refused(
    provider: OIDCProvider, client: httpx.AsyncClient
) -> None:
    other_app = provider.id_token("alice", client_id="another-app")
    token = provider.id_token("alice", client_id=AUDIENCE)
    elsewhere = JWTAuthenticator(
        jwks_url=f"{provider.issuer}/jwks",
        issuer="https://login.example.com",
        audience=AUDIENCE,
        algorithms=["RS256"],
    )
    with serve(identity_app(oidc(provider))) as server:
        wrong_aud = await client.get(f"{server.http}/whoami", headers=bearer(other_app))
        with pytest.raises(InvalidStatus) as refused:
            await ws_whoami(server.ws, other_app)
    assert wrong_aud.status_code == 401
    assert wrong_aud.json()["error"] == "invalid_token"
    assert "audience" in wrong_aud.json()["detail"].lower()
    assert refused.value.response.status_code == 403  # closed before accept
    with serve(identity_app(elsewhere)) as server:
        wrong_iss = await client.get(f"{server.http}/whoami", headers=bearer(token))
    assert wrong_iss.status_code == 401
    assert "issuer" in wrong_iss.json()["detail"].lower()


async def test_unknown_kids_get_401_and_cannot_hammer_the_provider(
    provider: OIDCProvider, client: httpx.AsyncClient
) -> None:
    auth = oidc(provider)
    intruder = private_key("RS256")
    with serve(identity_app(auth)) as server:
        good = await client.get(
            f"{server.http}/whoami", headers=bearer(provider.id_token("alice", client_id=AUDIENCE))
        )
        assert good.status_code == 200
        hits = provider.jwks_hits()
        answers = await asyncio.gather(
            *(
                client.get(
                    f"{server.http}/whoami",
                    headers=bearer(
                        jwt.encode(
                            {
                                "sub": "mallory",
                                "aud": AUDIENCE,
                                "iss": provider.issuer,
                                "exp": time.time() + 60,
                            },
                            intruder,
                            algorithm="RS256",
                            headers={"kid": f"kid-{i}"},
                        )
                    ),
                )
                for i in range(40)
            )
        )
    assert {a.status_code for a in answers} == {401}
    assert {a.json()["error"] for a in answers} == {"unknown_key"}
    assert provider.jwks_hits() == hits  # keys fetched moments ago: not one more fetch


async def test_expired_tokens_are_refused_and_leeway_applies_on_websockets_too(
    tmp_path: Path, client: httpx.AsyncClient
) -> None:
    with oidc_provider(tmp_path, users=(ALICE,), token_max_age=1) as short:
        token = short.id_token("alice", client_id=AUDIENCE)
        exp = jwt.decode(token, options={"verify_signature": False})["exp"]
        await asyncio.sleep(max(0.0, exp - time.time()) + 1.1)
        with serve(identity_app(oidc(short))) as server:
            expired = await client.get(f"{server.http}/whoami", headers=bearer(token))
            with pytest.raises(InvalidStatus):
                await ws_whoami(server.ws, token)
        with serve(identity_app(oidc(short, leeway=60))) as server:
            tolerated = await client.get(f"{server.http}/whoami", headers=bearer(token))
            reply = await ws_whoami(server.ws, token)  # the socket works, as HTTP does
    assert expired.status_code == 401
    assert expired.json()["error"] == "token_expired"
    assert tolerated.status_code == 200
    assert reply["user_id"] == "alice"


async def test_rotation_when_the_provider_restarts_with_a_new_key(
    tmp_path: Path, client: httpx.AsyncClient
) -> None:
    with oidc_provider(tmp_path, users=(ALICE,)) as rotating:
        auth = oidc(rotating, jwks_min_refresh_interval=0.2)
        old_token = rotating.id_token("alice", client_id=AUDIENCE)
        with serve(identity_app(auth)) as server:
            first = await client.get(f"{server.http}/whoami", headers=bearer(old_token))
            assert first.status_code == 200
            again = await client.get(f"{server.http}/whoami", headers=bearer(old_token))
            assert again.status_code == 200  # remembered
            rotating.restart()  # same issuer, new signing key
            await asyncio.sleep(0.25)
            new_token = rotating.id_token("alice", client_id=AUDIENCE)
            rotated = await client.get(f"{server.http}/whoami", headers=bearer(new_token))
            assert rotated.status_code == 200, rotated.text  # one refetch found the new key
            assert await ws_whoami(server.ws, new_token) == rotated.json()
            retired = await client.get(f"{server.http}/whoami", headers=bearer(old_token))
        assert retired.status_code == 401  # remembered before, but its key is gone
        assert retired.json()["error"] == "invalid_token"
        assert rotating.jwks_hits() == 2


async def test_provider_down_cached_keys_until_ttl_then_503_with_one_warning(
    tmp_path: Path, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="userscope")
    with oidc_provider(tmp_path, users=(ALICE,)) as flaky:
        token = flaky.id_token("alice", client_id=AUDIENCE)
        auth = oidc(flaky, jwks_ttl=3, jwks_min_refresh_interval=0.1)
        await auth.aload_keys()
        with serve(identity_app(auth)) as server:
            flaky.stop()
            await asyncio.sleep(1.6)  # past half the TTL: a background refresh fails
            cached = await client.get(f"{server.http}/whoami", headers=bearer(token))
            cached_ws = await ws_whoami(server.ws, token)
            await asyncio.sleep(1.6)  # past the TTL
            down = [
                await client.get(f"{server.http}/whoami", headers=bearer(token)) for _ in range(5)
            ]
            with pytest.raises(InvalidStatus):
                await ws_whoami(server.ws, token)
            flaky.start()  # back: the next fetch (rate-limited) recovers
            await asyncio.sleep(0.15)
            back = await client.get(f"{server.http}/whoami", headers=bearer(token))
    assert cached.status_code == 200
    assert cached_ws["user_id"] == "alice"
    assert {r.status_code for r in down} == {503}
    assert {r.json()["error"] for r in down} == {"identity_provider_unavailable"}
    assert back.status_code == 401  # restarted with a new key: the old token is gone for good
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert warnings[0].name == "userscope.adapters.identity"
