"""JWTAuthenticator with asymmetric keys, JWKS caching and rotation, claim mapping, limits.

Keys are generated with `cryptography` per algorithm; the JWKS endpoint is a small
local HTTP server the test controls (the real OIDC provider is in test_identity_oidc.py).
"""

from __future__ import annotations

import asyncio
import doctest
import importlib
import logging
import secrets
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from identity_support import ALGORITHMS, forge_hs256, jwks_server, private_key, public_jwk, sign
from starlette.requests import HTTPConnection

from userscope.adapters.fastapi import (
    AuthenticationError,
    CredentialsTooLargeError,
    IdentityProviderUnavailableError,
    InvalidClaimError,
    JWTAuthenticator,
    UnknownSigningKeyError,
)
from userscope.adapters.fastapi._state import credentials_expiry
from userscope.adapters.identity import (
    AlgorithmKeyMismatchError,
    JWKSKeySet,
    OIDCDiscoveryError,
    WeakKeyError,
    check_hmac_secret,
)

SECRET = secrets.token_urlsafe(32)


def conn(token: str | None = None, kind: str = "http", **extra: Any) -> HTTPConnection:
    headers = [] if token is None else [(b"authorization", f"Bearer {token}".encode())]
    scope: dict[str, Any] = {"type": kind, "path": "/", "headers": headers, "query_string": b""}
    scope.update(extra)
    return HTTPConnection(scope)


def pem(public: Any) -> bytes:
    return bytes(
        public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


# -- every algorithm, with a static key and with a JWKS -----------------------------------


@pytest.mark.parametrize("algorithm", ALGORITHMS)
async def test_each_asymmetric_algorithm_with_a_static_public_key(algorithm: str) -> None:
    signer = private_key(algorithm)
    for key in (signer.public_key(), pem(signer.public_key())):
        auth = JWTAuthenticator(key=key, algorithms=[algorithm])
        ctx = await auth(conn(sign(signer, algorithm, sub="carol")))
        assert ctx is not None
        assert ctx.user_id == "carol"
        with pytest.raises(AuthenticationError) as info:  # same kind of key, not the signer
            await auth(conn(sign(private_key(algorithm), algorithm)))
        assert "signature" in info.value.reason.lower()


@pytest.mark.parametrize("algorithm", ALGORITHMS)
async def test_each_asymmetric_algorithm_through_a_jwks(algorithm: str) -> None:
    signer = private_key(algorithm)
    with jwks_server() as server:
        server.keys = [public_jwk(signer, algorithm, kid="k1")]
        auth = JWTAuthenticator(jwks_url=server.url, algorithms=[algorithm])
        ctx = await auth(conn(sign(signer, algorithm, kid="k1", sub="dave")))
        assert ctx is not None
        assert ctx.user_id == "dave"
        assert server.hits == 1


@pytest.mark.parametrize(
    ("key", "algorithms"),
    [
        (ec.generate_private_key(ec.SECP256R1()).public_key(), ["ES384"]),  # wrong curve
        (ec.generate_private_key(ec.SECP256R1()).public_key(), ["RS256"]),
        (rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key(), ["ES256"]),
        (ed25519.Ed25519PrivateKey.generate().public_key(), ["ES256"]),
        (ed25519.Ed25519PrivateKey.generate().public_key(), ["HS256"]),  # HS* with a key object
        (pem(ec.generate_private_key(ec.SECP256R1()).public_key()), ["HS256"]),  # HS* with a PEM
        (SECRET, ["RS256"]),  # a secret is no RSA key
    ],
)
def test_an_algorithm_that_does_not_fit_the_key_is_refused_at_construction(
    key: Any, algorithms: list[str]
) -> None:
    with pytest.raises(AlgorithmKeyMismatchError) as info:
        JWTAuthenticator(key=key, algorithms=algorithms)
    assert info.value.algorithms == tuple(algorithms)
    assert info.value.problem


@pytest.mark.parametrize("algorithm", ["RS256", "ES256", "EdDSA"])
def test_a_private_key_is_refused_the_verifier_needs_only_the_public_one(algorithm: str) -> None:
    signer = private_key(algorithm)
    with pytest.raises(AlgorithmKeyMismatchError, match="public_key") as info:
        JWTAuthenticator(key=signer, algorithms=[algorithm])
    assert info.value.key_type.startswith("private")


def test_direct_verify_with_a_jwks_fetches_blocking_and_follows_kidless_rotation() -> None:
    old, new = private_key("RS256"), private_key("RS256")
    with jwks_server() as server:
        server.keys = [public_jwk(old, "RS256", kid=None)]
        auth = JWTAuthenticator(
            jwks_url=server.url, algorithms=["RS256"], jwks_min_refresh_interval=0.05
        )
        assert auth.verify(sign(old, "RS256"))["sub"] == "alice"
        server.keys = [public_jwk(new, "RS256", kid=None)]
        time.sleep(0.06)
        assert auth.verify(sign(new, "RS256", sub="bob"))["sub"] == "bob"
        assert server.hits == 2
        with pytest.raises(AuthenticationError, match="Signature"):
            auth.verify(sign(old, "RS256"))  # its key is gone; no refetch moments later
        assert server.hits == 2


def test_symmetric_and_asymmetric_algorithms_are_never_mixed() -> None:
    public = pem(rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key())
    with pytest.raises(AlgorithmKeyMismatchError, match="cannot share a key") as info:
        JWTAuthenticator(key=public, algorithms=["RS256", "HS256"])
    assert info.value.algorithms == ("RS256", "HS256")
    with pytest.raises(AlgorithmKeyMismatchError, match="JWKS"):
        JWTAuthenticator(jwks_url="https://id.example.com/jwks", algorithms=["HS256"])


async def test_an_hs256_token_signed_with_the_public_key_is_a_401_never_a_crash() -> None:
    """Issue 16: even if the algorithms are changed after construction, never a 500."""
    signer = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = pem(signer.public_key())
    auth = JWTAuthenticator(key=public, algorithms=["RS256"])
    auth.algorithms = ["RS256", "HS256"]  # what construction refuses
    forged = forge_hs256(public, {"sub": "mallory", "exp": time.time() + 60})
    with pytest.raises(AuthenticationError) as info:
        await auth(conn(forged))
    assert isinstance(info.value.__cause__, jwt.InvalidKeyError)


@pytest.mark.parametrize(
    ("secret", "problem"),
    [
        ("k", "1 bytes long"),
        ("s3cret-s3cret", "13 bytes long"),
        (" " * 32, "distinct"),
        ("k" * 32, "distinct"),
        ("0123456789abcdef" * 2, "repeats a 16-character unit"),
        ("a" * 24 + "bcdefghi", "bits of entropy"),
    ],
)
def test_weak_hmac_secrets_are_refused_with_how_to_make_one(secret: str, problem: str) -> None:
    with pytest.raises(WeakKeyError) as info:
        JWTAuthenticator(key=secret, algorithms=["HS256"])
    assert info.value.length == len(secret.encode())
    assert problem in info.value.problem
    assert 'python -c "import secrets; print(secrets.token_urlsafe(32))"' in str(info.value)
    assert len(secret.strip()) < 4 or secret not in str(info.value)  # never echoed


def test_real_secrets_pass() -> None:
    for _ in range(200):
        check_hmac_secret(secrets.token_urlsafe(32))
        check_hmac_secret(secrets.token_bytes(32))
        check_hmac_secret(secrets.token_hex(16))
    check_hmac_secret("test-secret-for-userscope-adapter-tests-0123456789")


def test_unknown_algorithms_and_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown JWT algorithm"):
        JWTAuthenticator(key=SECRET, algorithms=["HS257"])
    with pytest.raises(TypeError, match="list of names"):
        JWTAuthenticator(key=SECRET, algorithms="HS256")
    with pytest.raises(ValueError, match="exactly one key source"):
        JWTAuthenticator(algorithms=["RS256"])
    with pytest.raises(ValueError, match="exactly one key source"):
        JWTAuthenticator(key=SECRET, jwks_url="https://id.example.com/jwks", algorithms=["HS256"])
    with pytest.raises(ValueError, match="https://"):
        JWTAuthenticator(jwks_url="http://id.example.com/jwks", algorithms=["RS256"])
    with pytest.raises(ValueError, match="audience"):
        JWTAuthenticator.from_oidc("https://id.example.com", audience="", algorithms=["RS256"])
    with pytest.raises(ValueError, match="default_thread"):
        JWTAuthenticator(key=SECRET, algorithms=["HS256"], default_thread="null")


# -- numeric dates, leeway, oversized credentials (issue 16) -------------------------------


@pytest.mark.parametrize("claim", ["exp", "nbf", "iat"])
async def test_numeric_dates_given_as_strings_are_refused(claim: str) -> None:
    now = int(time.time())
    values = {"exp": now + 300, "nbf": now - 10, "iat": now - 10}
    values[claim] = str(values[claim])  # type: ignore[assignment]
    token = jwt.encode({"sub": "alice", **values}, SECRET, algorithm="HS256")
    connection = conn(token)
    with pytest.raises(InvalidClaimError) as info:
        await JWTAuthenticator(key=SECRET, algorithms=["HS256"])(connection)
    assert info.value.claim == claim
    assert info.value.code == "invalid_claim"
    assert credentials_expiry(connection.scope) is None


async def test_the_recorded_expiry_includes_the_leeway() -> None:
    token = jwt.encode({"sub": "alice", "exp": time.time() - 5}, SECRET, algorithm="HS256")
    exp = jwt.decode(token, options={"verify_signature": False})["exp"]
    connection = conn(token)
    ctx = await JWTAuthenticator(key=SECRET, algorithms=["HS256"], leeway=30)(connection)
    assert ctx is not None
    assert credentials_expiry(connection.scope) == int(exp) + 30  # PyJWT's own instant


@pytest.mark.parametrize("where", ["header", "subprotocol", "query"])
async def test_oversized_credentials_are_refused_before_any_parsing(
    where: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    parsed: list[str] = []
    monkeypatch.setattr(jwt, "decode", lambda *a, **k: parsed.append("decode"))
    monkeypatch.setattr(jwt, "get_unverified_header", lambda *a, **k: parsed.append("header"))
    huge = "e" * 1_000_000
    auth = JWTAuthenticator(key=SECRET, algorithms=["HS256"], allow_query_token=True)
    if where == "header":
        connection = conn(huge)
    elif where == "subprotocol":
        connection = conn(kind="websocket", subprotocols=["bearer", huge])
    else:
        connection = conn(kind="websocket", subprotocols=[], query_string=f"token={huge}".encode())
    with pytest.raises(CredentialsTooLargeError) as info:
        await auth(connection)
    assert info.value.limit == auth.max_token_bytes == 16 * 1024
    assert info.value.size >= 1_000_000
    assert info.value.code == "credentials_too_large"
    assert parsed == []


# -- claim mapping ---------------------------------------------------------------------------


def mapped(**options: Any) -> JWTAuthenticator:
    return JWTAuthenticator(key=SECRET, algorithms=["HS256"], **options)


def test_claims_map_to_tenant_thread_roles_scopes_groups() -> None:
    auth = mapped(
        tenant_claim="org_id",
        thread_claim="thread",
        roles_claims=("https://chat.example.com/roles", "realm_access.roles"),
        groups_claims=("cognito:groups",),
    )
    ctx = auth.context_from_claims(
        {
            "sub": "alice",
            "org_id": "acme",
            "thread": "t-42",
            "realm_access": {"roles": ["reader", "writer"]},
            "scope": "openid chat:write",
            "cognito:groups": ["staff"],
        }
    )
    assert (ctx.user_id, ctx.tenant_id, ctx.thread_id) == ("alice", "acme", "t-42")
    assert ctx.user_key == ("acme", "alice")
    assert ctx.metadata["roles"] == ("reader", "writer")
    assert ctx.metadata["scopes"] == ("openid", "chat:write")
    assert ctx.metadata["groups"] == ("staff",)
    namespaced = auth.context_from_claims(
        {"sub": "bob", "org_id": "acme", "https://chat.example.com/roles": ["admin"], "scp": ["a"]}
    )
    assert namespaced.metadata["roles"] == ("admin",)
    assert namespaced.metadata["scopes"] == ("a",)
    assert namespaced.thread_id == "default"
    bare = mapped().context_from_claims({"sub": "carol"})
    assert (bare.tenant_id, bare.metadata) == (None, {"roles": (), "scopes": (), "groups": ()})


@pytest.mark.parametrize(
    ("claims", "claim"),
    [
        ({"org_id": "acme"}, "sub"),
        ({"sub": 7, "org_id": "acme"}, "sub"),
        ({"sub": "alice"}, "org_id"),
        ({"sub": "alice", "org_id": ["acme"]}, "org_id"),
        ({"sub": "alice", "org_id": "null"}, "org_id"),
        ({"sub": "alice", "org_id": "acme", "thread": ""}, "thread"),
        ({"sub": "alice", "org_id": "acme", "roles": [1, 2]}, "roles"),
        ({"sub": "alice", "org_id": "acme", "scope": {"a": 1}}, "scope"),
    ],
)
async def test_missing_or_malformed_mapped_claims_are_a_401_with_the_claim(
    claims: dict[str, Any], claim: str
) -> None:
    auth = mapped(tenant_claim="org_id", thread_claim="thread")
    token = jwt.encode({**claims, "exp": time.time() + 60}, SECRET, algorithm="HS256")
    with pytest.raises(InvalidClaimError) as info:
        await auth(conn(token))
    assert info.value.claim == claim
    assert info.value.code == "invalid_claim"


def test_claims_hook_adds_metadata_and_can_refuse() -> None:
    def hook(claims: Any) -> dict[str, Any]:
        if claims.get("blocked"):
            raise InvalidClaimError("blocked", "marks a suspended account")
        return {"plan": claims["plan"], "roles": ("from-hook",)}

    auth = mapped(claims_hook=hook)
    ctx = auth.context_from_claims({"sub": "alice", "plan": "pro"})
    assert ctx.metadata["plan"] == "pro"
    assert ctx.metadata["roles"] == ("from-hook",)
    with pytest.raises(InvalidClaimError) as refused:
        auth.context_from_claims({"sub": "alice", "plan": "pro", "blocked": True})
    assert refused.value.claim == "blocked"
    with pytest.raises(InvalidClaimError) as missing:  # the hook's KeyError: 401, not 500
        auth.context_from_claims({"sub": "alice"})
    assert missing.value.claim == "claims_hook"
    assert isinstance(missing.value.__cause__, KeyError)


# -- JWKS: rotation, unknown kids, outages, the event loop -----------------------------------


async def test_rotation_unknown_kid_refetches_once_and_removed_keys_stop_working() -> None:
    old, new = private_key("ES256"), private_key("ES256")
    with jwks_server() as server:
        server.keys = [public_jwk(old, "ES256", kid="old")]
        auth = JWTAuthenticator(
            jwks_url=server.url, algorithms=["ES256"], jwks_min_refresh_interval=0.05
        )
        old_token = sign(old, "ES256", kid="old")
        assert await auth(conn(old_token)) is not None
        assert await auth(conn(old_token)) is not None  # remembered
        assert (server.hits, auth.key_set and auth.key_set.generation) == (1, 1)
        server.keys = [public_jwk(new, "ES256", kid="new")]  # the provider rotates
        await asyncio.sleep(0.06)
        ctx = await auth(conn(sign(new, "ES256", kid="new", sub="bob")))
        assert ctx is not None
        assert ctx.user_id == "bob"
        assert server.hits == 2
        with pytest.raises(UnknownSigningKeyError) as info:  # remembered, but its key is gone
            await auth(conn(old_token))
        assert info.value.kid == "old"
        assert info.value.code == "unknown_key"


async def test_a_flood_of_unknown_kids_fetches_the_keys_at_most_once_per_interval() -> None:
    signer = private_key("ES256")
    with jwks_server() as server:
        server.keys = [public_jwk(signer, "ES256", kid="real")]
        auth = JWTAuthenticator(
            jwks_url=server.url, algorithms=["ES256"], jwks_min_refresh_interval=3600
        )
        assert await auth(conn(sign(signer, "ES256", kid="real"))) is not None
        results = await asyncio.gather(
            *(auth(conn(sign(signer, "ES256", kid=f"random-{i}"))) for i in range(200)),
            return_exceptions=True,
        )
        assert all(isinstance(r, UnknownSigningKeyError) for r in results)
        assert server.hits == 1  # the first fetch was moments ago: no refetch at all


async def test_concurrent_first_requests_share_one_fetch() -> None:
    signer = private_key("ES256")
    with jwks_server() as server:
        server.keys = [public_jwk(signer, "ES256", kid="k")]
        server.delay = 0.2
        auth = JWTAuthenticator(jwks_url=server.url, algorithms=["ES256"])
        token = sign(signer, "ES256", kid="k")
        results = await asyncio.gather(*(auth(conn(token)) for _ in range(20)))
        assert all(r is not None and r.user_id == "alice" for r in results)
        assert server.hits == 1


async def test_fetches_never_block_the_event_loop() -> None:
    signer = private_key("ES256")
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    with jwks_server() as server:
        server.keys = [public_jwk(signer, "ES256", kid="k")]
        server.delay = 0.5
        auth = JWTAuthenticator(jwks_url=server.url, algorithms=["ES256"])
        task = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        before = ticks
        assert await auth(conn(sign(signer, "ES256", kid="k"))) is not None
        during = ticks - before
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert during >= 10  # the loop kept running while the keys were fetched (0.5 s)


async def test_a_fetch_that_times_out_is_a_503_not_a_401() -> None:
    signer = private_key("ES256")
    with jwks_server() as server:
        server.keys = [public_jwk(signer, "ES256", kid="k")]
        server.delay = 2.0
        auth = JWTAuthenticator(jwks_url=server.url, algorithms=["ES256"], jwks_timeout=0.2)
        with pytest.raises(IdentityProviderUnavailableError) as info:
            await auth(conn(sign(signer, "ES256", kid="k")))
        assert info.value.url == server.url
        assert "timed out" in info.value.reason


async def test_jwks_down_cached_keys_until_ttl_then_503_and_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    signer = private_key("EdDSA")
    caplog.set_level(logging.WARNING, logger="userscope")
    with jwks_server() as server:
        server.keys = [public_jwk(signer, "EdDSA", kid="k")]
        auth = JWTAuthenticator(
            jwks_url=server.url,
            algorithms=["EdDSA"],
            jwks_ttl=3.0,
            jwks_min_refresh_interval=0.05,
        )
        assert await auth(conn(sign(signer, "EdDSA", kid="k"))) is not None
        server.stop()
        await asyncio.sleep(1.6)  # past half the TTL: background refreshes fail
        for _ in range(3):  # the cached keys keep working until the TTL
            assert await auth(conn(sign(signer, "EdDSA", kid="k", sub="bob"))) is not None
            await asyncio.sleep(0.06)
        await asyncio.sleep(1.6)
        for _ in range(10):
            with pytest.raises(IdentityProviderUnavailableError):
                await auth(conn(sign(signer, "EdDSA", kid="k")))
            await asyncio.sleep(0.01)
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert warnings[0].userscope_event == "jwks_unavailable"  # type: ignore[attr-defined]
    assert "503" in warnings[0].getMessage()


def test_discovery_refuses_another_issuer_and_a_missing_jwks_uri() -> None:
    import json
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from threading import Thread

    documents: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps(documents[-1]).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    Thread(target=server.serve_forever, daemon=True).start()
    issuer = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        documents.append({"issuer": "https://evil.example.com", "jwks_uri": issuer + "/jwks"})
        auth = JWTAuthenticator.from_oidc(issuer, audience="api", algorithms=["RS256"])
        with pytest.raises(OIDCDiscoveryError) as info:
            auth.load_keys()
        assert info.value.issuer == issuer
        assert "evil.example.com" in info.value.problem
        documents.append({"issuer": issuer})
        with pytest.raises(OIDCDiscoveryError, match="no jwks_uri"):
            JWTAuthenticator.from_oidc(issuer, audience="api", algorithms=["RS256"]).load_keys()
    finally:
        server.shutdown()
        server.server_close()


def test_key_set_parameters() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        JWKSKeySet()
    with pytest.raises(ValueError, match="jwks_ttl"):
        JWTAuthenticator(jwks_url="https://id.example.com/jwks", algorithms=["RS256"], jwks_ttl=0)


@pytest.mark.parametrize(
    "name",
    [
        "userscope.adapters.identity",
        "userscope.adapters.identity._errors",
        "userscope.adapters.identity._keys",
        "userscope.adapters.identity._jwks",
        "userscope.adapters.identity._claims",
        "userscope.adapters.fastapi._auth",
        "userscope.adapters.fastapi._errors",
    ],
)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0


def test_identity_errors_are_userscope_errors_with_their_builtins() -> None:
    import pickle

    import userscope as us
    import userscope.adapters.identity as identity

    builtins = {
        "AlgorithmKeyMismatchError": ValueError,
        "IdentityProviderUnavailableError": ConnectionError,
        "OIDCDiscoveryError": ValueError,
        "WeakKeyError": ValueError,
    }
    exported = {n for n in identity.__all__ if n.endswith("Error")}
    assert exported == set(builtins)
    assert identity.__all__ == sorted(identity.__all__)
    for name, builtin in builtins.items():
        cls = getattr(identity, name)
        assert issubclass(cls, us.UserscopeError)
        assert issubclass(cls, builtin)
    unavailable = IdentityProviderUnavailableError("https://id.example.com/jwks", "timed out")
    copy = pickle.loads(pickle.dumps(unavailable))
    assert (copy.url, copy.reason) == (unavailable.url, unavailable.reason)
    weak = pickle.loads(pickle.dumps(WeakKeyError(length=3, problem="short")))
    assert (weak.length, weak.problem) == (3, "short")


async def test_jwks_mode_refuses_bad_headers_and_foreign_algorithms_before_any_fetch() -> None:
    with jwks_server() as server:
        server.keys = [public_jwk(private_key("ES256"), "ES256", kid="k")]
        auth = JWTAuthenticator(jwks_url=server.url, algorithms=["ES256"])
        hs256 = jwt.encode({"sub": "mallory", "exp": time.time() + 60}, SECRET, algorithm="HS256")
        for token, reason in [
            ("no-dots-at-all", "not a JWT"),
            ("!!!.e30.sig", "base64url JSON"),
            ("WzFd.e30.sig", "JSON object"),  # header [1]
            ("A" * 3000 + ".e30.sig", "not a JWT"),
            (hs256, "algorithm 'HS256' is not accepted"),
        ]:
            with pytest.raises(AuthenticationError) as info:
                await auth(conn(token))
            assert reason in info.value.reason
        assert server.hits == 0  # nothing reached the provider
