"""Thread run bookkeeping: a get_instance() singleton and a module-level map."""

from __future__ import annotations

from collections import defaultdict
from typing import Any


class ThreadRunRegistry:
    _instance: ThreadRunRegistry | None = None

    def __init__(self) -> None:
        self.runs: dict[str, list[str]] = {}

    @classmethod
    def get_instance(cls) -> ThreadRunRegistry:
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance


_active_runs: dict[str, list[str]] = {}
_run_events = defaultdict(list)
_finished_run_ids: set[str] = set()


def start_run(user_id: str, run_id: str) -> None:
    _active_runs.setdefault(user_id, []).append(run_id)


def record_event(ctx: Any, event: dict[str, Any]) -> None:
    _run_events[ctx.thread_id].append(event)


def finish_run(run_id: str) -> None:
    _finished_run_ids.add(run_id)
