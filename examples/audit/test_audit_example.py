"""The audit example: legacy findings, a clean scoped rewrite that really isolates users."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

import userscope as us
from userscope.audit import scan_paths

HERE = Path(__file__).resolve().parent


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"audit_example_{name}", HERE / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_legacy_chat_findings() -> None:
    findings = scan_paths([HERE / "legacy_chat.py"]).findings
    assert [(f.code, f.line, f.severity) for f in findings] == [
        ("US001", 36, "error"),
        ("US006", 37, "error"),
        ("US002", 41, "warning"),
        ("US005", 53, "error"),
    ]
    assert "`registry = UserScoped(AgentRegistry)`" in findings[0].hint


def test_scoped_chat_is_clean() -> None:
    assert scan_paths([HERE / "scoped_chat.py"]).findings == ()


def test_demo_exit_statuses(capsys: pytest.CaptureFixture[str]) -> None:
    assert load("audit_demo").demo() == (1, 0, 0)
    out = capsys.readouterr().out
    assert "US005" in out
    assert "userscope audit: no findings in 1 file (4 known in baseline)" in out


def test_scoped_chat_keeps_users_apart() -> None:
    chat = load("scoped_chat")
    sessions = us.UserSessions()
    try:
        alice = us.UserExecutionContext(user_id="alice", thread_id="t-1", request_id="r-1")
        bob = us.UserExecutionContext(user_id="bob", thread_id="t-1", request_id="r-2")
        with sessions.request(alice):
            assert chat.remember("hi from alice") == ["hi from alice"]
        with sessions.request(bob):
            assert chat.remember("hi from bob") == ["hi from bob"]
            assert chat.Container.conversation().user_id == "bob"
        with sessions.request(alice.for_request(request_id="r-3")):
            assert chat.remember("again") == ["hi from alice", "again"]
        with pytest.raises(us.OutOfScopeError):
            chat.Container.conversation()
    finally:
        sessions.close()
