"""Structured log fields: the `extra` every userscope log record carries."""

from __future__ import annotations

import logging

import pytest

import userscope as us
from userscope._log import FIELDS, fields


def test_fields_from_a_context_and_explicit_values() -> None:
    ctx = us.UserExecutionContext(
        user_id="alice", thread_id="t", request_id="r-1", tenant_id="acme"
    )
    extra = fields("cleanup_failed", ctx, scope=us.Scope.REQUEST, provider="C.agent")
    assert extra == {
        "userscope_event": "cleanup_failed",
        "userscope_user_id": "alice",
        "userscope_tenant_id": "acme",
        "userscope_request_id": "r-1",
        "userscope_scope": "REQUEST",
        "userscope_provider": "C.agent",
    }
    assert set(extra) == set(FIELDS)
    assert fields("evicted", user_id="bob")["userscope_user_id"] == "bob"
    assert fields("evicted", ctx, user_id="bob")["userscope_user_id"] == "bob"


def test_fields_reach_the_log_record(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="userscope"):
        logging.getLogger("userscope").info("x", extra=fields("swept", user_id="u"))
    record = caplog.records[-1]
    assert record.userscope_event == "swept"  # type: ignore[attr-defined]
    assert record.userscope_user_id == "u"  # type: ignore[attr-defined]
