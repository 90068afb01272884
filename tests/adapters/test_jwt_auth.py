"""JWTAuthenticator: HS256/RS256, claims checks, where tokens are read, what is never read."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
from adapter_support import AUDIENCE, ISSUER, SECRET, make_token
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.requests import HTTPConnection

from userscope.adapters.fastapi import (
    DEFAULT_THREAD_ID,
    AuthenticationError,
    CredentialsExpiredError,
    InvalidClaimError,
    JWTAuthenticator,
    bearer_subprotocol_token,
    set_credentials_expiry,
)
from userscope.adapters.fastapi._state import credentials_expiry


def conn(
    kind: str = "http",
    headers: dict[str, str] | None = None,
    query: str = "",
    subprotocols: list[str] | None = None,
) -> HTTPConnection:
    scope: dict[str, Any] = {
        "type": kind,
        "path": "/",
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
        "query_string": query.encode(),
    }
    if kind == "websocket":
        scope["subprotocols"] = subprotocols or []
    return HTTPConnection(scope)


def hs256(**kw: Any) -> JWTAuthenticator:
    return JWTAuthenticator(
        key=SECRET, algorithms=["HS256"], audience=AUDIENCE, issuer=ISSUER, **kw
    )


@pytest.fixture(scope="module")
def rsa_keys() -> tuple[bytes, bytes]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private_pem, public_pem


async def test_hs256_bearer_header_builds_context_from_claims_only() -> None:
    token = make_token("alice")
    connection = conn(
        headers={"Authorization": f"Bearer {token}", "X-User-Id": "mallory"},
        query="user_id=mallory&thread_id=t-evil",
    )
    ctx = await hs256()(connection)
    assert ctx is not None
    assert ctx.user_id == "alice"
    assert ctx.thread_id != "t-evil"
    assert ctx.request_id
    assert ctx.connection_id
    exp = jwt.decode(token, options={"verify_signature": False})["exp"]
    assert credentials_expiry(connection.scope) == pytest.approx(exp)


async def test_each_connection_gets_fresh_ids() -> None:
    auth = hs256()
    headers = {"Authorization": f"Bearer {make_token('alice')}"}
    first, second = await auth(conn(headers=headers)), await auth(conn(headers=headers))
    assert first is not None
    assert second is not None
    assert first.request_id != second.request_id
    assert first.connection_id != second.connection_id


async def test_thread_and_user_claims_are_configurable() -> None:
    auth = hs256(user_claim="uid", thread_claim="tid")
    token = make_token("ignored", uid="bob", tid="thread-7")
    ctx = await auth(conn(headers={"Authorization": f"Bearer {token}"}))
    assert ctx is not None
    assert (ctx.user_id, ctx.thread_id) == ("bob", "thread-7")
    # no thread claim: the documented default thread, the same on every connection
    without = {"Authorization": f"Bearer {make_token('x', uid='bob')}"}
    first, second = await auth(conn(headers=without)), await auth(conn(headers=without))
    assert first is not None
    assert second is not None
    assert first.thread_id == second.thread_id == DEFAULT_THREAD_ID == "default"
    # a thread claim that is required (no default) and missing: 401 naming the claim
    strict = hs256(user_claim="uid", thread_claim="tid", default_thread=None)
    with pytest.raises(InvalidClaimError) as info:
        await strict(conn(headers=without))
    assert info.value.claim == "tid"
    assert info.value.code == "invalid_claim"


async def test_rs256_with_public_key(rsa_keys: tuple[bytes, bytes]) -> None:
    private_pem, public_pem = rsa_keys
    auth = JWTAuthenticator(key=public_pem, algorithms=["RS256"], audience=AUDIENCE)
    token = make_token("carol", key=private_pem, algorithm="RS256")
    ctx = await auth(conn(headers={"Authorization": f"Bearer {token}"}))
    assert ctx is not None
    assert ctx.user_id == "carol"


async def test_rs256_refuses_hs256_token_signed_with_the_public_key(
    rsa_keys: tuple[bytes, bytes],
) -> None:
    """Algorithm confusion: an HS256 token "signed" with the public key must not pass."""
    _, public_pem = rsa_keys
    auth = JWTAuthenticator(key=public_pem, algorithms=["RS256"], audience=AUDIENCE)
    forged = make_token("mallory", key=SECRET)  # HS256
    with pytest.raises(AuthenticationError):
        await auth(conn(headers={"Authorization": f"Bearer {forged}"}))


async def test_unsigned_token_is_refused() -> None:
    unsigned = jwt.encode(
        {"sub": "mallory", "aud": AUDIENCE, "iss": ISSUER, "exp": time.time() + 60},
        key=None,
        algorithm="none",
    )
    with pytest.raises(AuthenticationError):
        await hs256()(conn(headers={"Authorization": f"Bearer {unsigned}"}))


@pytest.mark.parametrize(
    ("token", "reason_part"),
    [
        (make_token("alice", aud="other-audience"), "audience"),
        (make_token("alice", iss="https://evil.test"), "issuer"),
        (make_token("alice", key="a-different-secret-a-different-secret"), "Signature"),
        (make_token("alice", drop=("exp",)), "exp"),
        (make_token(drop=("sub",)), "sub"),
        (make_token("null"), "user_id"),
        (make_token(42), "sub"),
        ("not-a-token", ""),
    ],
)
async def test_invalid_tokens_raise_authentication_error(token: str, reason_part: str) -> None:
    with pytest.raises(AuthenticationError) as info:
        await hs256()(conn(headers={"Authorization": f"Bearer {token}"}))
    assert not isinstance(info.value, CredentialsExpiredError)
    assert reason_part.lower() in info.value.reason.lower()
    assert token not in str(info.value) or token == "not-a-token"


async def test_expired_token_raises_expired_with_the_exp() -> None:
    token = make_token("alice", exp_in=-30)
    exp = jwt.decode(token, options={"verify_signature": False})["exp"]
    with pytest.raises(CredentialsExpiredError) as info:
        await hs256()(conn(headers={"Authorization": f"Bearer {token}"}))
    assert info.value.expired_at == pytest.approx(exp)
    assert "sign in again" in str(info.value)


async def test_leeway_tolerates_clock_skew() -> None:
    token = make_token("alice", exp_in=-5)
    ctx = await hs256(leeway=30)(conn(headers={"Authorization": f"Bearer {token}"}))
    assert ctx is not None
    assert ctx.user_id == "alice"


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Basic YWxpY2U6cHc="}, {"X-User-Id": "alice"}, {"Cookie": "user=alice"}],
)
async def test_no_bearer_credentials_is_none(headers: dict[str, str]) -> None:
    assert await hs256()(conn(headers=headers)) is None


async def test_empty_bearer_is_invalid() -> None:
    with pytest.raises(AuthenticationError, match="empty"):
        await hs256()(conn(headers={"Authorization": "Bearer   "}))


async def test_websocket_reads_header_then_subprotocol() -> None:
    auth = hs256()
    by_header = await auth(
        conn("websocket", headers={"Authorization": f"Bearer {make_token('alice')}"})
    )
    by_subprotocol = await auth(conn("websocket", subprotocols=["bearer", make_token("bob")]))
    assert by_header is not None
    assert by_header.user_id == "alice"
    assert by_subprotocol is not None
    assert by_subprotocol.user_id == "bob"
    with pytest.raises(AuthenticationError, match="followed by the token"):
        await auth(conn("websocket", subprotocols=["chat", "bearer"]))


async def test_query_token_only_when_opted_in_and_only_for_websockets() -> None:
    query = f"token={make_token('alice')}"
    assert await hs256()(conn("websocket", query=query)) is None
    ctx = await hs256(allow_query_token=True)(conn("websocket", query=query))
    assert ctx is not None
    assert ctx.user_id == "alice"
    assert await hs256(allow_query_token=True)(conn("http", query=query)) is None
    custom = await hs256(allow_query_token=True, query_param="access_token")(
        conn("websocket", query=f"access_{query}")
    )
    assert custom is not None
    assert custom.user_id == "alice"


def test_bearer_subprotocol_parsing() -> None:
    assert bearer_subprotocol_token(["chat", "Bearer", "abc.def.ghi"]) == "abc.def.ghi"
    assert bearer_subprotocol_token([]) is None
    with pytest.raises(AuthenticationError):
        bearer_subprotocol_token(["bearer"])


def test_constructor_refuses_missing_or_none_algorithm() -> None:
    with pytest.raises(ValueError, match="at least one algorithm"):
        JWTAuthenticator(key=SECRET, algorithms=[])
    with pytest.raises(ValueError, match="'none'"):
        JWTAuthenticator(key=SECRET, algorithms=["HS256", "none"])


def test_set_credentials_expiry_round_trip() -> None:
    connection = conn("websocket")
    set_credentials_expiry(connection, 123.0)
    assert credentials_expiry(connection.scope) == 123.0
    set_credentials_expiry(connection, None)
    assert credentials_expiry(connection.scope) is None


def test_repr_never_shows_the_key() -> None:
    assert SECRET not in repr(hs256())


# -- remembered verifications -------------------------------------------------------------


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every token that PyJWT really decodes (signature and claims checked)."""
    seen: list[str] = []
    real = jwt.decode

    def counting(token: str, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("options", {}).get("verify_signature", True):
            seen.append(token)
        return real(token, *args, **kwargs)

    monkeypatch.setattr(jwt, "decode", counting)
    return seen


def test_a_verified_token_is_remembered_by_its_exact_string(decodes: list[str]) -> None:
    auth = hs256()
    token = make_token("alice", roles=["reader"])
    first = auth.verify(token)
    second = auth.verify(token)
    assert first == second
    assert decodes == [token]  # decoded once
    second["roles"].append("admin")  # callers get copies: the remembered claims stay
    second["sub"] = "mallory"
    assert auth.verify(token)["roles"] == ["reader"]
    assert auth.verify(token)["sub"] == "alice"
    # one character off (here: in the signature) is a different token, verified in full
    tampered = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    with pytest.raises(AuthenticationError):
        auth.verify(tampered)
    assert decodes == [token, tampered]


def test_refused_tokens_are_never_remembered(decodes: list[str]) -> None:
    auth = hs256()
    bad = make_token("alice", key="another-secret-another-secret-0123456789")
    for _ in range(2):
        with pytest.raises(AuthenticationError):
            auth.verify(bad)
    assert decodes == [bad, bad]


def test_a_remembered_token_is_refused_once_it_expires(decodes: list[str]) -> None:
    auth = hs256()
    token = make_token("alice", exp_in=1.2)
    assert auth.verify(token)["sub"] == "alice"
    assert auth.verify(token)["sub"] == "alice"
    assert len(decodes) == 1
    exp = jwt.decode(token, options={"verify_signature": False})["exp"]
    time.sleep(max(0.0, int(exp) - time.time()) + 0.05)  # PyJWT: expired at int(exp)
    with pytest.raises(CredentialsExpiredError):
        auth.verify(token)
    assert len(decodes) == 2


def test_remembered_expiry_follows_pyjwt_rounding_and_leeway(
    decodes: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """PyJWT reads ``exp`` as ``int(exp)``: a remembered token ends at the same instant."""
    auth = hs256(leeway=30)
    exp = time.time() + 100.75
    token = make_token("alice", exp_in=100.75)
    auth.verify(token)
    clock = {"now": int(exp) + 30 - 0.01}
    monkeypatch.setattr(time, "time", lambda: clock["now"])
    auth.verify(token)
    assert len(decodes) == 1  # still valid: remembered
    clock["now"] = int(exp) + 30  # PyJWT's first expired instant (exp <= now - leeway)
    auth.verify(token)  # not remembered any more: decoded in full (PyJWT's own clock)
    assert len(decodes) == 2


def test_remembered_tokens_are_bounded(decodes: list[str]) -> None:
    auth = hs256(cache_size=2)
    tokens = [make_token(user) for user in ("a1", "b2", "c3")]
    for token in tokens:
        auth.verify(token)
    assert len(auth._verified) == 2
    auth.verify(tokens[0])  # the oldest was dropped: decoded again
    assert decodes == [*tokens, tokens[0]]


def test_changing_the_settings_forgets_every_token(decodes: list[str]) -> None:
    auth = hs256()
    token = make_token("alice")
    auth.verify(token)
    auth.key = "rotated-secret-rotated-secret-0123456789"
    with pytest.raises(AuthenticationError):
        auth.verify(token)
    auth.key = SECRET
    auth.audience = "another-audience"
    with pytest.raises(AuthenticationError):
        auth.verify(token)
    assert decodes == [token, token, token]


def test_cache_size_zero_verifies_every_time(decodes: list[str]) -> None:
    auth = hs256(cache_size=0)
    token = make_token("alice")
    auth.verify(token)
    auth.verify(token)
    assert decodes == [token, token]
    with pytest.raises(ValueError, match="cache_size"):
        hs256(cache_size=-1)


async def test_checks_added_in_a_subclass_run_on_every_connection(decodes: list[str]) -> None:
    revoked: set[str] = set()

    class Revocable(JWTAuthenticator):
        def verify(self, token: str) -> dict[str, Any]:
            claims = super().verify(token)
            if claims.get("jti") in revoked:
                raise AuthenticationError("token revoked")
            return claims

    auth = Revocable(key=SECRET, algorithms=["HS256"], audience=AUDIENCE, issuer=ISSUER)
    token = make_token("alice", jti="t-1")
    headers = {"Authorization": f"Bearer {token}"}
    first = await auth(conn(headers=headers))
    second = await auth(conn(headers=headers))
    assert first is not None
    assert second is not None
    assert first.request_id != second.request_id  # fresh ids per connection, as before
    revoked.add("t-1")
    with pytest.raises(AuthenticationError, match="revoked"):
        await auth(conn(headers=headers))
    assert decodes == [token]
