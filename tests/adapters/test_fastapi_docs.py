"""The complete example of docs/fastapi.md runs as written."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any

import jwt
import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

DOC = Path(__file__).resolve().parents[2] / "docs" / "fastapi.md"
KEY = "change-me-32-bytes-of-secret-key!"


@pytest.fixture
def example() -> Any:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.DOTALL)
    assert blocks, "docs/fastapi.md lost its python example"
    module = types.ModuleType("fastapi_doc_example")
    sys.modules[module.__name__] = module
    try:
        exec(compile(blocks[0], str(DOC), "exec"), module.__dict__)
        yield module
    finally:
        del sys.modules[module.__name__]


def bearer(user: str) -> dict[str, str]:
    token = jwt.encode({"sub": user, "exp": time.time() + 60}, KEY, algorithm="HS256")
    return {"Authorization": f"Bearer {token}"}


def test_doc_example_http(example: Any) -> None:
    with TestClient(example.app) as client:
        assert client.get("/health").json() == {"status": "ok"}
        refused = client.get("/ask", params={"q": "hi"})
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"].startswith("Bearer")
        answer = client.get("/ask", params={"q": "hi"}, headers=bearer("alice")).json()
        sync_answer = client.get("/ask-sync", params={"q": "yo"}, headers=bearer("bob")).json()
        forged = client.get("/ask", params={"q": "hi"}, headers={"X-User-Id": "alice"})
    assert answer == {"answer": "alice asked fake-llm: hi"}
    assert sync_answer == {"answer": "bob asked fake-llm: yo"}
    assert forged.status_code == 401
    assert example.sessions.stats().closed


def test_doc_example_websocket(example: Any) -> None:
    open_connections: list[int] = []
    token = bearer("carol")["Authorization"].removeprefix("Bearer ")
    with TestClient(example.app) as client:
        with client.websocket_connect("/ws", subprotocols=["bearer", token]) as ws:
            ws.send_text("one")
            ws.send_text("two")
            replies = [ws.receive_json(), ws.receive_json()]
            stats = example.sessions.stats()
            open_connections.append(stats.connections)
        with pytest.raises(WebSocketDisconnect) as info, client.websocket_connect("/ws"):
            pass  # pragma: no cover
    assert replies == [
        {"user_id": "carol", "answer": "carol asked fake-llm: one"},
        {"user_id": "carol", "answer": "carol asked fake-llm: two"},
    ]
    assert open_connections == [1]
    assert example.sessions.stats().connections == 0
    assert info.value.code == 1008


def test_doc_token_command_mints_a_token_the_example_accepts(example: Any) -> None:
    commands = [
        block
        for block in re.findall(r"```text\n(.*?)```", DOC.read_text(), re.DOTALL)
        if block.startswith("python -c")
    ]
    assert len(commands) == 1, "docs/fastapi.md lost its token command"
    argv = shlex.split(commands[0].splitlines()[0])
    argv[0] = sys.executable
    token = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=60).stdout
    with TestClient(example.app) as client:
        answer = client.get(
            "/ask", params={"q": "hi"}, headers={"Authorization": f"Bearer {token.strip()}"}
        )
    assert answer.json() == {"answer": "alice asked fake-llm: hi"}
