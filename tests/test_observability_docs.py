"""docs/observability.md and docs/concepts.md say what the code does: the documented JSON
logging configuration works, the metric table lists exactly the instruments, and the
container picture is the demo's current graph."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from dependency_injector import providers
from examples.agent_chat.app import Container as DemoContainer

import userscope as us
from userscope._log import FIELDS
from userscope.otel import _instrument

DOCS = Path(__file__).resolve().parents[1] / "docs"
PAGE = (DOCS / "observability.md").read_text(encoding="utf-8")


@pytest.fixture
def restore_logging() -> Iterator[None]:
    logger = logging.getLogger("userscope")
    handlers, level, propagate = list(logger.handlers), logger.level, logger.propagate
    yield
    for handler in logger.handlers:
        handler.close()
    logger.handlers[:] = handlers
    logger.setLevel(level)
    logger.propagate = propagate


def test_the_documented_json_logging_config_works(restore_logging: None) -> None:
    block = PAGE.split("<!-- logging-config -->\n```python\n", 1)[1].split("```", 1)[0]
    exec(compile(block, "docs/observability.md", "exec"), {"__name__": "docs_logging"})
    (handler,) = logging.getLogger("userscope").handlers
    stream = io.StringIO()
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)

    class Broken(us.ScopeObserver):
        def scope_opened(self, level: us.Scope, ctx: us.UserExecutionContext) -> object:
            raise RuntimeError("observer bug")

    sessions = us.UserSessions(observer=Broken())  # the runtime logs the failure once
    with sessions.request(us.UserExecutionContext(user_id="doc-user", thread_id="t")):
        pass
    (line,) = stream.getvalue().splitlines()
    entry = json.loads(line)
    assert entry["level"] == "ERROR"
    assert entry["logger"] == "userscope"
    assert set(FIELDS) <= set(entry)
    assert entry["userscope_event"] == "observer_failed"
    assert "RuntimeError: observer bug" in entry["exception"]


def test_the_metric_table_lists_exactly_the_instruments() -> None:
    table = PAGE.split("### Metrics", 1)[1].split("### Spans", 1)[0]
    documented = set(re.findall(r"^\| `(userscope\.[a-z._]+)` \|", table, re.MULTILINE))
    counters = {name for name, _, _ in _instrument._COUNTERS}
    others = {
        "userscope.users.live",
        "userscope.scopes.open",
        "userscope.instances.live",
        "userscope.cleanup.duration",
        "userscope.sweep.duration",
    }
    source = Path(_instrument.__file__).read_text(encoding="utf-8")
    for name in others:
        assert f'"{name}"' in source
    assert documented == counters | others


def test_concepts_shows_the_demos_current_container_picture() -> None:
    concepts = (DOCS / "concepts.md").read_text(encoding="utf-8")
    block = concepts.split("```mermaid\n", 1)[1].split("```", 1)[0]
    assert block == us.graph(DemoContainer)
    assert "![The agent-chat demo's container](img/agent_chat_container.svg)" in concepts
    svg = (DOCS / "img" / "agent_chat_container.svg").read_text(encoding="utf-8")
    for name, provider in DemoContainer.providers.items():
        if not isinstance(provider, providers.Self):  # the container itself: not drawn
            assert f"Container.{name}" in svg


def test_the_page_is_in_the_nav() -> None:
    config = yaml.safe_load((DOCS.parent / "mkdocs.yml").read_text(encoding="utf-8"))
    assert {"Observability": "observability.md"} in config["nav"]
