"""The identity example: real tokens from a real OIDC provider process, tenants kept apart."""

from __future__ import annotations

import faulthandler
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from examples.identity.__main__ import AUDIENCE, USERS
from examples.identity.app import create_app
from examples.identity.mock_idp import OIDCProvider, oidc_provider


@pytest.fixture(scope="module")
def idp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OIDCProvider]:
    faulthandler.dump_traceback_later(120, exit=True)
    try:
        with oidc_provider(tmp_path_factory.mktemp("idp"), users=USERS) as running:
            yield running
    finally:
        faulthandler.cancel_dump_traceback_later()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_tokens_of_the_provider_sign_users_in_with_tenant_and_roles(idp: OIDCProvider) -> None:
    alice_token = idp.id_token("alice", client_id=AUDIENCE)
    alice = bearer(alice_token)
    bob = bearer(idp.id_token("bob", client_id=AUDIENCE))
    with TestClient(create_app(idp.issuer, AUDIENCE)) as client:
        me = client.get("/me", headers=alice).json()
        added = client.post("/notes", json={"text": "buy milk"}, headers=alice)
        refused = client.post("/notes", json={"text": "hi"}, headers=bob)
        bobs_notes = client.get("/notes", headers=bob).json()
        alices_notes = client.get("/notes", headers=alice).json()
        anonymous = client.get("/me")
        with client.websocket_connect(
            "/ws", subprotocols=["bearer", alice["Authorization"][7:]]
        ) as ws:
            ws.send_text("hello")
            echoed = ws.receive_json()
    assert me == {
        "user_id": "alice",
        "tenant_id": "acme",
        "thread_id": "default",
        "roles": ["writer"],
    }
    assert added.json() == ["buy milk"]
    assert refused.status_code == 403
    assert bobs_notes == []  # globex/bob has his own notebook
    assert alices_notes == ["buy milk"]
    assert anonymous.status_code == 401
    assert echoed == {**me, "echo": "hello"}


def test_a_token_for_another_audience_is_refused(idp: OIDCProvider) -> None:
    other = bearer(idp.id_token("alice", client_id="someone-elses-app"))
    with TestClient(create_app(idp.issuer, AUDIENCE)) as client:
        response = client.get("/me", headers=other)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"


def test_a_wrong_issuer_fails_at_start_up(tmp_path: Path) -> None:
    from userscope.adapters.identity import IdentityProviderUnavailableError

    app = create_app("http://127.0.0.1:9", AUDIENCE, jwks_timeout=2)  # nothing listens there
    with pytest.raises(IdentityProviderUnavailableError), TestClient(app):
        pass  # pragma: no cover - start-up fails
