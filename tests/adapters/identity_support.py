"""Test helpers for identity: keys per algorithm, a JWKS server, a real OIDC provider process."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from dependency_injector import containers
from examples.identity.mock_idp import OIDCProvider, free_port, oidc_provider
from fastapi import FastAPI, WebSocket, WebSocketDisconnect

import userscope as us
from userscope.adapters.fastapi import Inject, install, message_scope

__all__ = ["OIDCProvider", "free_port", "oidc_provider"]

#: the private-key generator for each asymmetric algorithm the authenticator supports
_GENERATORS: dict[str, Any] = {
    "RS256": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
    "RS384": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
    "RS512": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
    "PS256": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
    "ES256": lambda: ec.generate_private_key(ec.SECP256R1()),
    "ES384": lambda: ec.generate_private_key(ec.SECP384R1()),
    "EdDSA": lambda: ed25519.Ed25519PrivateKey.generate(),
}
ALGORITHMS = tuple(_GENERATORS)


def private_key(algorithm: str) -> Any:
    """A fresh private key that can sign ``algorithm``."""
    return _GENERATORS[algorithm]()


def public_jwk(key: Any, algorithm: str, kid: str | None) -> dict[str, Any]:
    """The public JWK of ``key`` (PyJWT's own serialiser), with ``kid`` and ``alg``."""
    jwk: dict[str, Any] = json.loads(jwt.get_algorithm_by_name(algorithm).to_jwk(key.public_key()))
    if kid is not None:
        jwk["kid"] = kid
    jwk["alg"] = algorithm
    jwk["use"] = "sig"
    return jwk


def sign(
    key: Any,
    algorithm: str,
    *,
    kid: str | None = None,
    sub: str = "alice",
    exp_in: float = 300,
    **claims: Any,
) -> str:
    """A token signed with ``key`` (``exp`` ``exp_in`` seconds from now)."""
    payload = {"sub": sub, "iat": int(time.time()), "exp": time.time() + exp_in, **claims}
    headers = None if kid is None else {"kid": kid}
    return jwt.encode(payload, key, algorithm=algorithm, headers=headers)


def forge_hs256(secret: bytes, payload: dict[str, Any]) -> str:
    """An HS256 token "signed" with arbitrary bytes (e.g. a public key's PEM text).

    PyJWT refuses to do this (that is the attack), so the test builds it by hand.
    """

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps(payload).encode())
    mac = hmac.new(secret, f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{b64(mac)}"


# -- a JWKS endpoint the test controls ---------------------------------------------------


class JWKSServer:
    """Serves a mutable JWKS on 127.0.0.1; counts hits; can be slowed down or stopped."""

    def __init__(self) -> None:
        self.keys: list[dict[str, Any]] = []
        self.hits = 0
        self.delay = 0.0
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with outer._lock:
                    outer.hits += 1
                    body = json.dumps({"keys": outer.keys}).encode()
                    delay = outer.delay
                if delay:
                    time.sleep(delay)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/jwks"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop answering: later fetches get "connection refused"."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@contextmanager
def jwks_server() -> Iterator[JWKSServer]:
    server = JWKSServer()
    try:
        yield server
    finally:
        if server._thread.is_alive():
            server.stop()


# the real OpenID Connect provider process is the example's recipe, reused here


# -- a small app that shows what the authenticator made of the token ----------------------


def identity_app(authenticate: Any) -> FastAPI:
    """A FastAPI app with ``GET /whoami`` and ``WS /ws`` answering the verified context."""

    class Container(containers.DeclarativeContainer):
        context = us.CurrentContext()

    def describe(ctx: us.UserExecutionContext) -> dict[str, Any]:
        return {
            "user_id": ctx.user_id,
            "tenant_id": ctx.tenant_id,
            "thread_id": ctx.thread_id,
            "roles": list(ctx.metadata.get("roles", ())),
            "scopes": list(ctx.metadata.get("scopes", ())),
        }

    app = FastAPI()
    install(app, Container(), us.UserSessions(), authenticate=authenticate)

    @app.get("/whoami")
    async def whoami(
        ctx: us.UserExecutionContext = Inject(Container.context),
    ) -> dict[str, Any]:
        return describe(ctx)

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            async for _text in websocket.iter_text():
                async with message_scope(websocket) as ctx:
                    await websocket.send_json(describe(ctx))
        except WebSocketDisconnect:
            pass

    return app
