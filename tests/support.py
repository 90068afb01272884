"""Shared test support: a typical agent-backend container and context helpers."""

from __future__ import annotations

import contextlib
import faulthandler
import subprocess
import sys
import textwrap
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

from dependency_injector import containers, providers

import userscope as us


class Settings:
    model = "fake-llm"


class LLMClient:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings


class AgentRegistry:
    def __init__(self, ctx: us.UserExecutionContext) -> None:
        self.user_id = ctx.user_id
        self.agents: list[str] = []


@dataclass
class Bridge:
    user_id: str
    events: list[str] = field(default_factory=list)
    closed: bool = False


class Agent:
    def __init__(self, registry: AgentRegistry, bridge: Bridge, llm: LLMClient) -> None:
        self.registry = registry
        self.bridge = bridge
        self.llm = llm


class Log:
    """Records lifecycle events in order (shared by a test's factories)."""

    def __init__(self) -> None:
        self.events: list[str] = []


def make_container(log: Log) -> type[containers.DeclarativeContainer]:
    def open_bridge(ctx: us.UserExecutionContext) -> Iterator[Bridge]:
        bridge = Bridge(ctx.user_id)
        log.events.append(f"open bridge {ctx.user_id}")
        try:
            yield bridge
        finally:
            bridge.closed = True
            log.events.append(f"close bridge {ctx.user_id}")

    class Container(containers.DeclarativeContainer):
        settings = providers.Singleton(Settings)
        llm = providers.Singleton(LLMClient, settings)
        context = us.CurrentContext()
        registry = us.UserScoped(AgentRegistry, context)
        bridge = us.ConnectionScoped(open_bridge, context)
        agent = us.RequestScoped(Agent, registry=registry, bridge=bridge, llm=llm)

    return Container


async def open_async_bridge(ctx: us.UserExecutionContext) -> AsyncIterator[Bridge]:
    bridge = Bridge(ctx.user_id)
    yield bridge
    bridge.closed = True


def ctx_for(user: str, request: str = "r-1") -> us.UserExecutionContext:
    return us.UserExecutionContext(user_id=user, thread_id=f"t-{user}", request_id=request)


def run_fork_script(script: str, timeout: float) -> None:
    """Run ``script`` (dedented) in a fresh interpreter in this test's mode and assert it
    exited 0, its stderr as the message. For tests that fork: forking the test process
    itself would copy its threads' locks (3.12+ warns of it)."""
    done = subprocess.run(
        [sys.executable, "-W", "ignore::DeprecationWarning", "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stderr


@contextlib.contextmanager
def hang_guard(seconds: float = 60) -> Iterator[None]:
    """Dump every thread's stack to stderr when the block runs longer than ``seconds``."""
    faulthandler.dump_traceback_later(seconds, exit=False, file=sys.stderr)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


def run_threads(threads: list[threading.Thread], hang: str) -> None:
    """Start ``threads`` and join them, failing with ``hang`` when one does not finish."""
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads), hang
