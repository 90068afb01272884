"""Smoke tests for the end-to-end event benchmark: tiny N, every row printed, and its
delivery check really fails on a foreign or out-of-order event. No timing assertions."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def _run(script: str) -> str:
    proc = subprocess.run(
        [sys.executable, str(BENCH / script), "--smoke"],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, f"{script} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def _load(name: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(BENCH))
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)
    spec.loader.exec_module(module)
    return module


def test_bench_events_e2e_prints_every_broker_and_scenario() -> None:
    output = _run("bench_events_e2e.py")
    rows = [line for line in output.splitlines() if line.startswith("| ")]
    assert rows[0].startswith("| broker | scenario | events/s | p50 ms | p99 ms |")
    cells = {tuple(cell.strip() for cell in row.strip("|").split("|")[:2]) for row in rows[1:]}
    assert cells == {
        ("memory", "max"),
        ("memory", "paced 500/s"),
        ("redis", "max"),
        ("redis", "paced 500/s"),
    }
    assert "sockets" in output
    assert "agents" in output


class _FakeSocket:
    """Stands in for a websockets connection: yields prepared messages."""

    def __init__(self, messages: list[dict[str, Any]]) -> None:
        self.messages = messages

    async def _gen(self) -> AsyncIterator[str]:
        for message in self.messages:
            yield json.dumps(message)

    def __aiter__(self) -> AsyncIterator[str]:
        return self._gen()


def _token(user: str, n: int, run: str = "r1") -> dict[str, Any]:
    return {"type": "token", "user_id": user, "run_id": run, "n": n, "t": 0}


def test_e2e_delivery_check_fails_on_foreign_or_out_of_order_events(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bench = _load("bench_events_e2e", monkeypatch)

    async def check(messages: list[dict[str, Any]]) -> list[str]:
        client = bench.Client("alice", _FakeSocket(messages))
        client.round = bench.Round(expected=len(messages))
        await client.listen()
        errors: list[str] = client.round.errors
        return errors

    assert asyncio.run(check([_token("alice", 0), _token("alice", 1)])) == []
    foreign = asyncio.run(check([_token("alice", 0), _token("bob", 1)]))
    assert foreign == ["alice got an event of bob"]
    disorder = asyncio.run(check([_token("alice", 1), _token("alice", 0)]))
    assert any("out of order" in error for error in disorder)
