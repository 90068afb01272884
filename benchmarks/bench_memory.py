"""Memory and sweep cost of userscope's session runtime (issues 3 and 7).

Run::

    .venv/bin/python benchmarks/bench_memory.py [--sessions N] [--cycles C] [--smoke]

Rows:

* ``bytes per idle user session``: tracemalloc over N (10k) users that each opened one
  request, resolved one user-scoped ``AgentRegistry`` and closed the request, so only the
  idle USER scope remains. Everything the runtime keeps alive for that user counts (its
  context, its registry, the bookkeeping). The hand-written floor (a dict of per-user
  dicts) is measured the same way for reference. Target <= 2 KB.
* ``retained after scope cycles``: traced memory after ``gc.collect()`` at 10%, 50% and
  100% of C (100k) full request cycles (resolve the whole graph, run the bridge cleanup)
  over 16 users; growth from the first checkpoint to the last is what leaks.
* ``sweep``: time of one ``sessions.sweep()`` over N_sweep (100k) idle sessions with 1%
  and with 10% of them expired (a fake clock decides who); proportional-to-expired means
  the 10% sweep costs ~10x the 1% one and the cost per expired session stays flat.
"""

import argparse
import gc
import os
import sys
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _graph as g
from bench_resolve import build_userscope


class FakeClock:
    """A monotonic clock the benchmark moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def traced_now() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def floor_bytes_per_user(n: int) -> float:
    """Reference: a plain dict of per-user dicts holding the context and the registry."""
    users: dict[str, dict[Any, Any]] = {}
    tracemalloc.start()
    try:
        before = traced_now()
        for i in range(n):
            ctx = g.make_ctx(f"user-{i}")
            users[ctx.user_id] = {g.AgentRegistry: g.AgentRegistry(ctx)}
        after = traced_now()
    finally:
        tracemalloc.stop()
    if len(users) != n:
        raise AssertionError("floor lost users")
    return (after - before) / n


def userscope_bytes_per_session(n: int) -> tuple[float, int]:
    us = g.us
    assert us is not None
    container = build_userscope(g.bridge_factory(g.Counter()))
    registry = container.registry
    warm = us.UserSessions()  # warm code paths and lazy allocations outside the trace
    for i in range(50):
        with warm.request(g.make_ctx(f"warm-{i}")):
            registry()
    warm.close()

    sessions = us.UserSessions()
    tracemalloc.start()
    try:
        before = traced_now()
        for i in range(n):
            with sessions.request(g.make_ctx(f"user-{i}")):
                registry()
        after = traced_now()
    finally:
        tracemalloc.stop()
    users = sessions.stats().users
    if users != n:
        raise AssertionError(f"expected {n} idle user sessions, stats() says {users}")
    sessions.close()
    return (after - before) / n, users


def retained_after_cycles(cycles: int) -> tuple[list[tuple[int, int]], list[str]]:
    """Traced bytes after gc at 10%, 50% and 100% of ``cycles`` request cycles, and the
    allocation sites that grew most between the first and the last checkpoint."""
    us = g.us
    assert us is not None
    counter = g.Counter()
    container = build_userscope(g.bridge_factory(counter))
    agent = container.agent
    sessions = us.UserSessions()
    ctxs = [g.make_ctx(f"user-{i}") for i in range(16)]
    for i in range(1_000):  # warm-up: every user session exists before tracing
        with sessions.request(ctxs[i % 16]):
            agent()
    marks = sorted({max(cycles // 10, 1), max(cycles // 2, 1), cycles})
    points: list[tuple[int, int]] = []
    snapshots: list[tracemalloc.Snapshot] = []
    counter.reset()
    tracemalloc.start()
    try:
        done = 0
        for mark in marks:
            for i in range(done, mark):
                with sessions.request(ctxs[i % 16]):
                    agent()
            done = mark
            points.append((mark, traced_now()))
            snapshots.append(tracemalloc.take_snapshot())
    finally:
        tracemalloc.stop()
    counter.check("userscope", "retained after scope cycles", cycles)
    sessions.close()
    # The measurement's own allocations (tracemalloc's snapshots, this script's lists)
    # are not the library's: leave them out of the per-site comparison.
    own = [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, __file__)]
    first, last = (snap.filter_traces(own) for snap in (snapshots[0], snapshots[-1]))
    growers = [
        f"{stat.traceback[0].filename.split('site-packages/')[-1]}:{stat.traceback[0].lineno} "
        f"{stat.size_diff:+,} B in {stat.count_diff:+,} blocks"
        for stat in last.compare_to(first, "lineno")[:5]
        if stat.size_diff > 0
    ]
    library_growth = sum(s.size for s in last.statistics("filename")) - sum(
        s.size for s in first.statistics("filename")
    )
    growers.insert(0, f"total outside the measurement's own frames: {library_growth:+,} B")
    return points, growers


def sweep_cost(total: int, expired_fraction: float) -> tuple[int, int, float]:
    """Return (expired, swept, ns per sweep) for ``total`` idle sessions."""
    us = g.us
    assert us is not None
    clock = FakeClock()
    container = build_userscope(g.bridge_factory(g.Counter()))
    registry = container.registry
    sessions = us.UserSessions(idle_timeout=100.0, clock=clock)
    expired = int(total * expired_fraction)
    clock.now = 0.0
    for i in range(expired):
        with sessions.request(g.make_ctx(f"old-{i}")):
            registry()
    clock.now = 150.0
    for i in range(total - expired):
        with sessions.request(g.make_ctx(f"new-{i}")):
            registry()
    gc.collect()
    t0 = g.now_ns()
    swept = sessions.sweep()
    elapsed = g.now_ns() - t0
    if swept != expired:
        raise AssertionError(f"sweep closed {swept} sessions, expected {expired}")
    left = sessions.stats().users
    if left != total - expired:
        raise AssertionError(f"{left} sessions left after sweep, expected {total - expired}")
    sessions.close()
    return expired, swept, float(elapsed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=10_000, help="idle sessions traced")
    parser.add_argument("--cycles", type=int, default=100_000, help="scope cycles")
    parser.add_argument("--sweep-sessions", type=int, default=100_000, help="sessions swept")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for CI")
    args = parser.parse_args(argv)
    if args.smoke:
        n_sessions, n_cycles, n_sweep = 200, 500, 1_000
    else:
        n_sessions, n_cycles, n_sweep = args.sessions, args.cycles, args.sweep_sessions

    print("# bench_memory")
    print()
    facts = g.versions()
    facts["nproc"] = str(os.cpu_count())
    print("machine: " + ", ".join(f"{k} {v}" for k, v in facts.items()))
    print(f"sessions={n_sessions}, cycles={n_cycles}, sweep sessions={n_sweep}")
    if g.us is None:
        print(f"note: skipped userscope: {g.US_IMPORT_ERROR}")
        return 0
    print()

    floor = floor_bytes_per_user(n_sessions)
    per_session, users = userscope_bytes_per_session(n_sessions)
    print("| row | value | target |")
    print("|---|---:|---|")
    print(
        f"| bytes per idle user session (userscope, {users} users) | {per_session:,.0f} | <= 2048 |"
    )
    print(f"| bytes per user (floor: dict of dicts, reference) | {floor:,.0f} | |")
    print(f"| userscope overhead over floor per user | {per_session - floor:,.0f} | |")

    points, growers = retained_after_cycles(n_cycles)
    for cycles, traced in points:
        print(f"| retained after {cycles:,} scope cycles (traced bytes) | {traced:,} | |")
    growth = points[-1][1] - points[0][1]
    span = points[-1][0] - points[0][0]
    per_cycle = growth / span if span else 0.0
    print(
        f"| retained growth {points[0][0]:,} -> {points[-1][0]:,} cycles "
        f"| {growth:+,} B ({per_cycle:+.3f} B/cycle) | no growth beyond noise |"
    )
    print()
    print("allocation sites that grew between the first and last checkpoint (top 5):")
    for line in growers:
        print(f"- {line}")
    print()

    if not hasattr(g.us.UserSessions, "sweep"):
        print("note: skipped sweep: UserSessions has no sweep()")
        return 0
    sweeps = [sweep_cost(n_sweep, fraction) for fraction in (0.01, 0.10)]
    for (expired, _, ns), label in zip(sweeps, ("1%", "10%"), strict=True):
        per = ns / expired if expired else 0.0
        print(
            f"| sweep {n_sweep:,} sessions, {label} expired ({expired:,}) "
            f"| {ns / 1e6:,.2f} ms ({per / 1e3:,.1f} us per expired) | proportional to expired |"
        )
    if sweeps[0][2]:
        print(f"| sweep 10% / sweep 1% | {sweeps[1][2] / sweeps[0][2]:.1f}x | ~10x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
