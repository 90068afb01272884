"""The runtime under mixed load: shared by tests/test_stress.py and benchmarks/stress_runtime.py.

Threads, each with its own event loop running tasks, plus plain sync threads, open
request and connection scopes for a pool of users (two tenants) under every limit;
factories and finalizers fail at random, tasks are cancelled at random, users are
evicted, swept and closed while others work, and the runtime shuts down at the end.
Afterwards: no instance was ever seen by two scopes or two users, every finalizer ran
exactly once and after the ones created later in its scope, no limit was exceeded.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

from dependency_injector import containers

import userscope as us
from userscope.container._scope import ACTIVE, USER_STATE

MAX_REQUESTS = 3
MAX_INSTANCES = 6


@dataclass
class Ledger:
    lock: threading.Lock = field(default_factory=threading.Lock)
    created: Counter[int] = field(default_factory=Counter)
    closed: Counter[int] = field(default_factory=Counter)
    owner: dict[int, Any] = field(default_factory=dict)
    order_errors: list[str] = field(default_factory=list)
    shared: list[str] = field(default_factory=list)
    active: Counter[Any] = field(default_factory=Counter)
    peak_requests: int = 0
    scopes: int = 0
    refusals: int = 0
    cancelled: int = 0
    failures: int = 0
    seq: int = 0


class Item:
    def __init__(self, ledger: Ledger, key: Any, after: Item | None = None) -> None:
        with ledger.lock:
            ledger.seq += 1
            self.id = ledger.seq
            ledger.created[self.id] += 1
            ledger.owner[self.id] = key
        self.key = key
        self.after = after  # a dependency: must be closed after this one
        self.closed = False


def build(ledger: Ledger, rng: random.Random) -> Any:
    def close(item: Item) -> None:
        with ledger.lock:
            ledger.closed[item.id] += 1
            if item.after is not None and item.after.closed:
                ledger.order_errors.append(f"{item.id} closed after its dependency")
        item.closed = True
        if rng.random() < 0.03:
            raise OSError("finalizer failed")

    def base(ctx: us.UserExecutionContext) -> Iterator[Item]:
        item = Item(ledger, ctx.user_key)
        try:
            yield item
        finally:  # the body's exception is thrown in here: close anyway
            close(item)

    def top(ctx: us.UserExecutionContext, dep: Item) -> Iterator[Item]:
        if rng.random() < 0.03:
            raise ValueError("factory failed")
        item = Item(ledger, ctx.user_key, dep)
        try:
            yield item
        finally:
            close(item)

    async def abase(ctx: us.UserExecutionContext) -> AsyncIterator[Item]:
        await asyncio.sleep(0)
        item = Item(ledger, ctx.user_key)
        try:
            yield item
            await asyncio.sleep(0)
        finally:
            close(item)

    def user_item(ctx: us.UserExecutionContext) -> Iterator[Item]:
        item = Item(ledger, ctx.user_key)
        try:
            yield item
        finally:
            close(item)

    class C(containers.DeclarativeContainer):
        context = us.CurrentContext()
        registry = us.UserScoped(user_item, context)
        dep = us.RequestScoped(base, context)
        agent = us.RequestScoped(top, context, dep)
        bridge = us.ConnectionScoped(abase, context)

    return C


def check_seen(ledger: Ledger, ctx: us.UserExecutionContext, items: list[Item]) -> None:
    for item in items:
        if item.key != ctx.user_key or ledger.owner.get(item.id) != ctx.user_key:
            ledger.shared.append(f"{ctx.user_key} got {item.key}'s item")
        if item.closed:
            ledger.shared.append(f"{ctx.user_key} got a closed item")


def run(
    seconds: float,
    *,
    seed: int = 7,
    loops: int = 3,
    tasks: int = 8,
    sync_threads: int = 2,
    users: int = 24,
) -> dict[str, Any]:
    rng = random.Random(seed)
    ledger = Ledger()
    C = build(ledger, rng)
    sessions = us.UserSessions(
        max_users=users // 2,
        idle_timeout=0.05,
        max_requests_per_user=MAX_REQUESTS,
        max_instances_per_user=MAX_INSTANCES,
        cleanup_timeout=5,
    )
    deadline = time.monotonic() + seconds
    contexts = [
        us.UserExecutionContext(
            user_id=f"u{i % (users // 2)}", tenant_id=("acme", "globex")[i % 2], thread_id="t"
        )
        for i in range(users)
    ]

    def session_of() -> int:
        # the user's session (internal): close_user may end a busy user's session and the
        # next scope starts a new one with its own budget, so peaks are per session
        frame = ACTIVE.get()
        assert frame is not None
        return id(frame[USER_STATE].session)

    def enter(ctx: us.UserExecutionContext) -> None:
        key = session_of()
        with ledger.lock:
            ledger.scopes += 1
            ledger.active[key] += 1
            ledger.peak_requests = max(ledger.peak_requests, ledger.active[key])

    def leave(ctx: us.UserExecutionContext) -> None:
        key = session_of()
        with ledger.lock:
            ledger.active[key] -= 1

    async def one_async(ctx: us.UserExecutionContext) -> None:
        try:
            async with sessions.request(ctx):
                enter(ctx)
                try:
                    items = [await C.agent.async_(), await C.bridge.async_(), C.registry()]
                    items.append(items[0].after)
                    await asyncio.sleep(0)
                    check_seen(ledger, ctx, items)
                finally:
                    leave(ctx)
        except (us.ScopeLimitError, us.ScopeClosedError):
            with ledger.lock:
                ledger.refusals += 1
        except (ValueError, OSError, us.CleanupError):
            with ledger.lock:
                ledger.failures += 1

    async def worker_task(index: int) -> None:
        local = random.Random(seed * 100 + index)
        while time.monotonic() < deadline:
            ctx = local.choice(contexts)
            task = asyncio.ensure_future(one_async(ctx))
            if local.random() < 0.1:
                await asyncio.sleep(0)
                task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                with ledger.lock:
                    ledger.cancelled += 1

    def loop_thread(index: int) -> None:
        async def main() -> None:
            await asyncio.gather(*(worker_task(index * tasks + t) for t in range(tasks)))

        asyncio.run(main())

    def sync_thread(index: int) -> None:
        local = random.Random(seed * 1000 + index)
        while time.monotonic() < deadline:
            ctx = local.choice(contexts)
            try:
                with sessions.request(ctx):
                    enter(ctx)
                    try:
                        agent = C.agent()
                        check_seen(ledger, ctx, [agent, agent.after, C.registry()])
                    finally:
                        leave(ctx)
            except (us.ScopeLimitError, us.ScopeClosedError, us.AsyncScopeRequiredError):
                with ledger.lock:
                    ledger.refusals += 1
            except (ValueError, OSError, us.CleanupError):
                with ledger.lock:
                    ledger.failures += 1
            r = local.random()
            if r < 0.02:
                sessions.sweep()
            elif r < 0.04:
                try:
                    sessions.close_user(ctx.user_id, ctx.tenant_id)
                except (us.AsyncCleanupRequiredError, us.CleanupError):
                    pass

    threads = [threading.Thread(target=loop_thread, args=(i,), daemon=True) for i in range(loops)]
    threads += [
        threading.Thread(target=sync_thread, args=(i,), daemon=True) for i in range(sync_threads)
    ]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 30)
    hung = [t.name for t in threads if t.is_alive()]

    async def shutdown() -> None:
        try:
            await sessions.aclose(timeout=10)
        except us.CleanupError:
            pass

    asyncio.run(shutdown())
    elapsed = time.monotonic() - started
    stats = sessions.stats()
    unclosed = [i for i in ledger.created if ledger.closed[i] != 1]
    return {
        "seconds": round(elapsed, 1),
        "scopes": ledger.scopes,
        "instances": sum(ledger.created.values()),
        "cancelled": ledger.cancelled,
        "refusals": ledger.refusals,
        "failures": ledger.failures,
        "hung": hung,
        "shared": ledger.shared[:5],
        "order_errors": ledger.order_errors[:5],
        "not_closed_once": len(unclosed),
        "peak_requests_per_user": ledger.peak_requests,
        "instances_left": stats.instances,
        "open_scopes_left": stats.open_scopes,
    }


def verdict(result: dict[str, Any]) -> list[str]:
    problems = []
    if result["hung"]:
        problems.append(f"hung threads: {result['hung']}")
    if result["shared"]:
        problems.append(f"shared instances: {result['shared']}")
    if result["order_errors"]:
        problems.append(f"cleanup order: {result['order_errors']}")
    if result["not_closed_once"]:
        problems.append(f"{result['not_closed_once']} instance(s) not closed exactly once")
    if result["peak_requests_per_user"] > MAX_REQUESTS:
        problems.append(f"max_requests_per_user exceeded: {result['peak_requests_per_user']}")
    if result["instances_left"] or result["open_scopes_left"]:
        problems.append("state left after shutdown")
    return problems
