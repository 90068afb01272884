"""Leak check: scoped instances still alive after their scope closed.

The watch list is bounded: entries whose instance died are pruned when it fills up,
and the oldest are dropped (and counted) when still full. A check runs one garbage
collection and inspects the referrers of at most :data:`INSPECTED` survivors (each
inspection scans the heap). An instance held only by *finished* frames (frames that
no thread is running, kept alive by a traceback: a cleanup failure, or a handled
error such as an endpoint's 500) is not a leak; anything else holding it is.

The functions at the end are a runtime's side of it (they take its
:class:`~userscope.container._table.SessionTable`): which
instances a closing scope hands over (:func:`suspects`, under that scope's session
lock, taken by the caller), adding them to the runtime's watch list (:func:`watch`,
takes the table lock), and ``check_leaks()`` (takes the table lock twice, briefly;
the garbage collection and the logging run with no lock held).
"""

from __future__ import annotations

import gc
import logging
import sys
import weakref
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any, Final

from pydantic import BaseModel, ConfigDict

from userscope._log import fields
from userscope.container._observe import notify
from userscope.container._scope import Scope
from userscope.container._state import provider_name

if TYPE_CHECKING:
    from userscope.container._state import ScopeState
    from userscope.container._table import SessionTable

__all__ = [
    "INSPECTED",
    "WATCHED",
    "LeakReport",
    "LeakWatch",
    "check_leaks",
    "suspects",
    "watch",
]

logger = logging.getLogger("userscope")

WATCHED: Final = 4096
"""Most instances watched at once."""

INSPECTED: Final = 20
"""Most survivors whose referrers one check inspects."""

Suspect = tuple["weakref.ref[Any]", str, str, str | None, str, str]
"""``(ref, type name, provider, tenant_id, user_id, level name)``."""


class LeakReport(BaseModel):
    """A scoped instance that was still alive after its scope closed.

    Attributes:
        type: qualified name of the instance's class.
        provider: name of the provider that created it.
        user_id: the user whose scope created it.
        scope: the level of that scope.
        referrers: a short summary of what still refers to it.
        tenant_id: that user's tenant (``None``: no tenant).

    Example:
        >>> import userscope as us
        >>> us.LeakReport(type="Agent", provider="C.agent", user_id="a", scope="REQUEST",
        ...               referrers=["list"]).provider
        'C.agent'
    """

    model_config = ConfigDict(frozen=True)

    type: str
    provider: str
    user_id: str
    scope: str
    referrers: list[str]
    tenant_id: str | None = None


class LeakWatch:
    """The bounded watch list (internal; mutated under the table lock).

    Example:
        >>> from userscope.container._leaks import LeakWatch
        >>> len(LeakWatch())
        0
    """

    __slots__ = ("dropped", "suspects")

    def __init__(self) -> None:
        self.suspects: list[Suspect] = []
        self.dropped = 0  # watched entries given up because the list was full

    def __len__(self) -> int:
        return len(self.suspects)

    def add(self, entries: list[Suspect]) -> None:
        """Watch ``entries``; prune dead ones, then drop the oldest, when full."""
        self.suspects += entries
        if len(self.suspects) > WATCHED:
            self.suspects = [s for s in self.suspects if s[0]() is not None]
            extra = len(self.suspects) - WATCHED // 2
            if extra > 0:
                self.dropped += extra
                del self.suspects[:extra]

    def take(self) -> list[Suspect]:
        """Hand the watch list over for a check and start a new one."""
        suspects, self.suspects = self.suspects, []
        return suspects


def check(suspects: list[Suspect]) -> list[LeakReport]:
    """Report the suspects still alive (runs a collection only when one is)."""
    alive = [s for s in suspects if s[0]() is not None]
    if not alive:
        return []
    gc.collect()
    live_frames = _live_frames()
    found: list[LeakReport] = []
    inspected = 0
    for ref, type_name, provider, tenant_id, user_id, level in alive:
        obj = ref()
        if obj is None:
            continue
        if inspected < INSPECTED:
            inspected += 1
            referrers = _referrers(obj, live_frames)
            if referrers is None:  # held only by finished frames: not a leak
                del obj
                continue
        else:
            referrers = [f"not inspected: more than {INSPECTED} leaks in one check"]
        del obj
        found.append(
            LeakReport(
                type=type_name,
                provider=provider,
                user_id=user_id,
                tenant_id=tenant_id,
                scope=level,
                referrers=referrers,
            )
        )
    return found


def _live_frames() -> set[int]:
    """Ids of every frame some thread is running now."""
    ids: set[int] = set()
    for frame in sys._current_frames().values():
        current: FrameType | None = frame
        while current is not None:
            ids.add(id(current))
            current = current.f_back
    return ids


def _finished(holder: object, live_frames: set[int], ignored: int) -> bool:
    """A frame no thread runs whose only holders are tracebacks and other such frames."""
    if not isinstance(holder, FrameType) or id(holder) in live_frames:
        return False
    if holder.f_code in _SKIP:
        return True
    for ref in gc.get_referrers(holder):
        if id(ref) == ignored or isinstance(ref, TracebackType):
            continue
        if isinstance(ref, FrameType) and id(ref) not in live_frames:
            continue  # a finished callee's f_back
        return False
    return True


def _referrers(obj: object, live_frames: set[int]) -> list[str] | None:
    """A short summary of what holds ``obj``; ``None`` when only finished frames do."""
    out: list[str] = []
    discounted = 0
    holders = gc.get_referrers(obj)
    for ref in holders:
        if isinstance(ref, FrameType) and ref.f_code in _SKIP:
            continue
        if _finished(ref, live_frames, id(holders)):
            discounted += 1
            continue
        if isinstance(ref, FrameType):
            out.append(f"frame {ref.f_code.co_name} ({ref.f_code.co_filename}:{ref.f_lineno})")
        elif isinstance(ref, dict):
            out.append(_describe_dict(ref))
        else:
            out.append(type(ref).__qualname__)
        if len(out) >= 5:
            break
    del holders
    if not out and discounted:
        return None
    return out


def _describe_dict(mapping: dict[Any, Any]) -> str:
    # a function of its own: a generator expression over the loop variable in
    # `_referrers` would turn it into a cell that keeps the referrer alive
    for owner in gc.get_referrers(mapping):
        if getattr(owner, "__dict__", None) is mapping:
            return f"attribute of {type(owner).__qualname__}"
    return "dict"


_SKIP = {check.__code__, _referrers.__code__, _finished.__code__}


# -- a runtime's leak check ---------------------------------------------------------
def suspects(state: ScopeState) -> list[Suspect]:
    """Weak references to a closing scope's instances (session lock held)."""
    session = state.session
    out: list[Suspect] = []
    for key, value in state.cache.items():
        try:
            ref = weakref.ref(value)
        except TypeError:
            continue
        level = getattr(type(key), "scope", state.level)  # the provider's own level
        out.append(
            (
                ref,
                type(value).__qualname__,
                provider_name(key),
                session.tenant_id,
                session.user_id,
                level.name,
            )
        )
    return out


def watch(table: SessionTable, suspects: list[Suspect]) -> None:
    """Add a closed scope's instances to the runtime's watch list (takes the table lock)."""
    with table.lock:
        table.leak_watch.add(suspects)


def check_leaks(table: SessionTable) -> list[LeakReport]:
    """``UserSessions.check_leaks()``: check the watched instances; log and record leaks."""
    with table.lock:
        suspects = table.leak_watch.take()
    found = check(suspects)
    for report in found:
        logger.warning(
            "scoped instance %s from %s (user %r, %s scope) outlived its scope; held by %s",
            report.type,
            report.provider,
            report.user_id,
            report.scope,
            ", ".join(report.referrers) or "nothing visible",
            extra=fields(
                "leak_detected",
                user_id=report.user_id,
                tenant_id=report.tenant_id,
                scope=report.scope,
                provider=report.provider,
            ),
        )
        if table.observer is not None:
            notify(table, "leak_detected", report.provider, Scope[report.scope], report.type)
    if found:
        with table.lock:
            table.leaks.extend(found)
    return found
