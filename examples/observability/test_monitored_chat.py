"""The observability example runs and shows what it says: metrics, spans, JSON logs, graph."""

from __future__ import annotations

import json

import pytest

from examples.observability.monitored_chat import main


def test_the_example_reports_metrics_spans_logs_and_a_picture(
    capsys: pytest.CaptureFixture[str],
) -> None:
    result = main()
    metrics = result["metrics"]
    assert metrics["userscope.users.live"] == {"": 3}
    assert metrics["userscope.limit.refusals"] == {"userscope.limit=max_connections_per_user": 1}
    assert metrics["userscope.cleanups.failed"] == {
        "error.type=ConnectionResetError,userscope.provider=Container.bridge,"
        "userscope.scope=CONNECTION": 1
    }
    assert (
        metrics["userscope.instances.created"][
            "userscope.provider=Container.agent,userscope.scope=REQUEST"
        ]
        == 4
    )
    names = sorted(span.name for span in result["spans"])
    assert names.count("userscope.user") == 3  # alice, bob, mallory, ended at close()
    assert names.count("userscope.request") == 4
    for metric in metrics.values():
        for attributes in metric:
            assert "alice" not in attributes
            assert "mallory" not in attributes
    out = capsys.readouterr().out
    logged = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    (failure,) = [e for e in logged if e["level"] == "ERROR"]
    assert failure["logger"] == "userscope"
    assert "ConnectionResetError: socket already gone" in failure["exception"]
    assert "flowchart LR" in out
    assert "userscope.limit.refusals: {'userscope.limit=max_connections_per_user': 1}" in out
