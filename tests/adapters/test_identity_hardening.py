"""Issue 16's JWT findings, each over a real uvicorn server with real clients.

Numeric-string ``exp``, leeway on WebSocket expiry, algorithm confusion that used to
crash with a 500, oversized credentials. Only names that existed before the fix are
imported, so each test also runs (and fails) against the code it fixed.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from typing import Any

import httpx
import jwt
import pytest
from adapter_support import serve
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from identity_support import forge_hs256, identity_app
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from userscope.adapters.fastapi import JWTAuthenticator

SECRET = secrets.token_urlsafe(32)


def hs256_token(**claims: Any) -> str:
    return jwt.encode({"sub": "alice", **claims}, SECRET, algorithm="HS256")


async def ws_exchange(url: str, token: str, text: str = "hi") -> dict[str, Any]:
    async with asyncio.timeout(10):
        async with connect(url, subprotocols=["bearer", token]) as ws:  # type: ignore[list-item]
            await ws.send(text)
            reply: dict[str, Any] = json.loads(await ws.recv())
            return reply


async def test_a_numeric_string_exp_is_refused_on_http_and_websocket() -> None:
    token = hs256_token(exp=str(int(time.time()) + 2))  # PyJWT would accept int("...")
    auth = JWTAuthenticator(key=SECRET, algorithms=["HS256"])
    with serve(identity_app(auth)) as server:
        async with httpx.AsyncClient(timeout=10) as client:
            response = await client.get(
                f"{server.http}/whoami", headers={"Authorization": f"Bearer {token}"}
            )
        with pytest.raises(InvalidStatus):  # before: accepted, and never closed at expiry
            await ws_exchange(f"{server.ws}/ws", token)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_claim"
    assert "'exp'" in response.json()["detail"]


async def test_leeway_applies_to_websocket_expiry_as_it_does_to_http() -> None:
    token = hs256_token(exp=time.time() - 2)  # expired 2 s ago, within 30 s of leeway
    auth = JWTAuthenticator(key=SECRET, algorithms=["HS256"], leeway=30)
    with serve(identity_app(auth)) as server:
        async with httpx.AsyncClient(timeout=10) as client:
            response = await client.get(
                f"{server.http}/whoami", headers={"Authorization": f"Bearer {token}"}
            )
        reply = await ws_exchange(f"{server.ws}/ws", token)  # before: closed with 1008
    assert response.status_code == 200
    assert reply["user_id"] == "alice"


async def test_an_hs256_token_signed_with_the_public_pem_is_401_not_500() -> None:
    signer = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = signer.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    auth = JWTAuthenticator(key=public, algorithms=["RS256"])
    auth.algorithms = ["RS256", "HS256"]  # construction refuses the mix; force it here
    forged = forge_hs256(public, {"sub": "mallory", "exp": time.time() + 60})
    with serve(identity_app(auth)) as server:
        async with httpx.AsyncClient(timeout=10) as client:
            response = await client.get(
                f"{server.http}/whoami", headers={"Authorization": f"Bearer {forged}"}
            )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"
    assert "Traceback" not in response.text


def test_mixing_symmetric_and_asymmetric_algorithms_is_refused_at_construction() -> None:
    public = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(ValueError, match="cannot share a key"):
        JWTAuthenticator(key=public, algorithms=["RS256", "HS256"])


@pytest.mark.parametrize("secret", ["k", " " * 32, "x" * 32])
def test_weak_hmac_secrets_are_refused_at_construction(secret: str) -> None:
    with pytest.raises(ValueError, match=r"secrets\.token_urlsafe\(32\)"):
        JWTAuthenticator(key=secret, algorithms=["HS256"])


async def test_an_oversized_authorization_header_is_refused_before_parsing() -> None:
    auth = JWTAuthenticator(key=SECRET, algorithms=["HS256"], allow_query_token=True)
    huge = "A" * (8 * 1024 * 1024)
    large = "A" * (20 * 1024)  # over max_token_bytes (16 KiB), under max_header_bytes (32 KiB)
    with serve(identity_app(auth)) as server:
        async with httpx.AsyncClient(timeout=30) as client:
            response = await client.get(
                f"{server.http}/whoami", headers={"Authorization": f"Bearer {large}"}
            )
            headers = await client.get(
                f"{server.http}/whoami", headers={"Authorization": f"Bearer {huge}"}
            )
            normal = await client.get(
                f"{server.http}/whoami",
                headers={"Authorization": f"Bearer {hs256_token(exp=time.time() + 60)}"},
            )
        with pytest.raises(InvalidStatus):
            async with asyncio.timeout(30):
                async with connect(f"{server.ws}/ws?token={'A' * 1_000_000}", max_size=None):
                    pass  # pragma: no cover - refused before accept
    assert response.status_code == 401
    assert response.json()["error"] == "credentials_too_large"
    assert large[:100] not in response.text
    # the whole header block is bounded before authentication even starts
    assert headers.status_code == 431
    assert headers.json()["error"] == "headers_too_large"
    assert huge[:100] not in headers.text
    assert normal.status_code == 200
