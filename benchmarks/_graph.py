"""The object graph every benchmark resolves, shared by all libraries.

Graph (issue 3)::

    LLMClient(settings)              app singleton
    AgentRegistry(ctx)               one per user
    WebSocketBridge(ctx)             one per connection, from a generator whose cleanup must run
    Agent(registry, bridge, llm)     one per request

Every library gets its own :class:`Counter` so a benchmark can check, after its timing
loop, that the bridge cleanup ran exactly once per cycle for *that* library.

``Ctx`` is userscope's ``UserExecutionContext`` when userscope imports, else a frozen
dataclass with the same fields, so every library is handed the same kind of object.
"""

import dataclasses
import importlib
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

T = TypeVar("T")


def try_import(name: str) -> tuple[ModuleType | None, str]:
    """Import ``name``; on any failure return ``(None, reason)`` instead of raising."""
    try:
        return importlib.import_module(name), ""
    except Exception as exc:  # a half-written package may raise anything
        return None, f"{type(exc).__name__}: {exc}"


_SRC = str(Path(__file__).resolve().parent.parent / "src")
if _SRC not in sys.path:  # a checkout where userscope is not installed into the venv
    sys.path.append(_SRC)

us, US_IMPORT_ERROR = try_import("userscope")
if us is not None and not hasattr(us, "UserSessions"):
    US_IMPORT_ERROR = "userscope imports but has no UserSessions yet"
    us = None


@dataclasses.dataclass(frozen=True, slots=True)
class _PlainCtx:
    user_id: str
    thread_id: str
    request_id: str


Ctx: Any = us.UserExecutionContext if us is not None else _PlainCtx


def make_ctx(user_id: str = "alice", request_id: str = "r-1") -> Any:
    """Build one context for ``user_id`` (the same way for every library)."""
    return Ctx(user_id=user_id, thread_id="t-1", request_id=request_id)


class Settings:
    __slots__ = ("model",)

    def __init__(self) -> None:
        self.model = "gpt-bench"


class LLMClient:
    __slots__ = ("settings",)

    def __init__(self, settings: Settings) -> None:
        self.settings = settings


class AgentRegistry:
    __slots__ = ("agents", "ctx")

    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx
        self.agents: dict[str, Any] = {}


class WebSocketBridge:
    __slots__ = ("ctx", "open")

    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx
        self.open = True


class Agent:
    __slots__ = ("bridge", "llm", "registry")

    def __init__(self, registry: AgentRegistry, bridge: WebSocketBridge, llm: LLMClient) -> None:
        self.registry = registry
        self.bridge = bridge
        self.llm = llm

    def answer(self) -> dict[str, str]:
        """What the FastAPI endpoints return: data read through the whole graph."""
        return {"user": self.registry.ctx.user_id, "model": self.llm.settings.model}


class Counter:
    """Bridges opened and closed by one library's factory."""

    __slots__ = ("closed", "opened")

    def __init__(self) -> None:
        self.opened = 0
        self.closed = 0

    def reset(self) -> None:
        self.opened = 0
        self.closed = 0

    def check(self, library: str, row: str, expected: int) -> None:
        """Fail loudly unless every opened bridge was cleaned up, ``expected`` times."""
        if self.opened != expected or self.closed != expected:
            raise AssertionError(
                f"{library} / {row}: expected {expected} bridges opened and closed, "
                f"got opened={self.opened} closed={self.closed}; its cleanup did not run"
            )


def bridge_factory(counter: Counter) -> Callable[[Ctx], Iterator[WebSocketBridge]]:
    """A generator factory for the bridge whose cleanup increments ``counter.closed``."""

    def open_bridge(ctx: Ctx) -> Iterator[WebSocketBridge]:
        counter.opened += 1
        bridge = WebSocketBridge(ctx)
        yield bridge
        bridge.open = False
        counter.closed += 1

    return open_bridge


def abridge_factory(counter: Counter) -> Callable[[Ctx], AsyncIterator[WebSocketBridge]]:
    """The async-generator twin of :func:`bridge_factory`."""

    async def aopen_bridge(ctx: Ctx) -> AsyncIterator[WebSocketBridge]:
        counter.opened += 1
        bridge = WebSocketBridge(ctx)
        yield bridge
        bridge.open = False
        counter.closed += 1

    return aopen_bridge


def load_participants(
    builders: Mapping[str, tuple[Callable[[], T], str]], notes: list[str]
) -> list[T]:
    """Build every participant whose library imports; note why any other was skipped.

    ``builders`` maps a name to ``(build, module)``: ``module`` (if any) must import
    first. A participant that fails to build is skipped with a note, never fatal, so
    the scripts keep running while a library is half-written.
    """
    built: list[T] = []
    for name, (build, module) in builders.items():
        if name == "userscope" and us is None:
            notes.append(f"skipped userscope: {US_IMPORT_ERROR}")
            continue
        if module:
            _, err = try_import(module)
            if err:
                notes.append(f"skipped {name}: {module} does not import ({err})")
                continue
        try:
            built.append(build())
        except Exception as exc:
            notes.append(f"skipped {name}: setup failed: {type(exc).__name__}: {exc}")
    return built


def versions() -> dict[str, str]:
    """Versions of Python and of every library that takes part."""
    from importlib import metadata

    out = {"python": sys.version.split()[0]}
    for dist in (
        "userscope",
        "dependency-injector",
        "dishka",
        "wireup",
        "fastapi",
        "starlette",
        "pydantic",
    ):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    if us is not None:
        out["userscope from"] = str(Path(us.__file__).resolve().parent)
    return out


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[mid]
    return (ordered[mid - 1] + ordered[mid]) / 2


def now_ns() -> int:
    return time.perf_counter_ns()
