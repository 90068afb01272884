"""Instructions per WebSocket message under callgrind: bench_fastapi's ``ws:`` rows,
counted instead of timed.

Run::

    .venv/bin/python benchmarks/ws_instructions.py [--n N] [--app APP ...] [--smoke] [--simulate]

Each app runs in its own ``valgrind --tool=callgrind`` process (``PYTHONHASHSEED=0``)
driving one connection of ``N`` text messages through bench_fastapi's own driver
(``drive_ws``: direct ASGI calls, the same endpoint work per message), after a warm-up
connection outside the collected step; only one ``itertools.starmap`` step wrapping the
measured connection is collected, minus the driver's own ``gc.collect()``. The count per
message includes the connection's set-up and tear-down spread over ``N`` messages (one
connection each), so use a large ``N`` (the default 2,000 leaves ~1 %). Quote these as
the steady signal next to bench_fastapi's noisy microseconds.

``--simulate`` adds callgrind's cache and branch simulation, as bench_instructions'
does: instruction-cache misses per message (and, for userscope, how many of them are in
the compiled core's own extension modules), data-cache read misses, and mispredicted
branches (conditional plus indirect). A message that runs fewer instructions can still
take longer when its code is cold: this is where that shows.

Needs valgrind; without it the script says so and exits 2.
"""

import argparse
import asyncio
import gc
import itertools
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _graph as g
import bench_fastapi as bf
import bench_instructions as bi

#: callgrind function whose cost is the driver's gc.collect(), not the app's
GC_FUNCTION = "gc_collect_main"

#: what ``--simulate`` adds: heading -> events summed (``inside:`` the compiled core's)
SIMULATED = {
    "I1 misses / msg": ("I1mr",),
    "of which in userscope's extensions": ("inside:I1mr",),
    "D1 read misses / msg": ("D1mr",),
    "mispredicts / msg": ("Bcm", "Bim"),
}

#: path fragment of the compiled core's extension modules (the ``.so`` files)
CORE_OBJECTS = "/userscope/"


def inner(name: str, n: int) -> int:
    """The measured process: one warm-up connection, then ``n`` messages in one step."""
    notes: list[str] = []
    apps = [app for app in bf.load_ws_apps(notes) if app.name == name]
    if not apps:
        raise RuntimeError(f"{name} did not load: {notes}")
    bench = apps[0]
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(bench.startup())
        loop.run_until_complete(bf.drive_ws(bench, max(n // 5, 10)))  # warm-up
        gc.collect()
        list(itertools.starmap(loop.run_until_complete, [(bf.drive_ws(bench, n),)]))
        loop.run_until_complete(bench.shutdown())
    finally:
        loop.close()
    return 0


def count(valgrind: str, name: str, n: int, *, simulate: bool = False) -> dict[str, int]:
    """callgrind's events for ``n`` messages of app ``name``: ``Ir`` (the driver's gc
    excluded) and, with ``simulate``, the cache and branch simulation's (``inside:`` the
    same events in userscope's own extension modules)."""
    return bi.callgrind(
        valgrind,
        __file__,
        [name, str(n)],
        label=name,
        exclude=GC_FUNCTION,
        simulate=simulate,
        inside=CORE_OBJECTS if simulate else None,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=2_000, help="messages per connection")
    parser.add_argument("--app", action="append", help="ws apps (default: all importable)")
    parser.add_argument("--smoke", action="store_true", help="ws:bare and ws:userscope, tiny N")
    parser.add_argument(
        "--simulate",
        action="store_true",
        help="also simulate caches and branch prediction (I1/D1 misses, mispredicts; slower)",
    )
    parser.add_argument("--inner", nargs=2, metavar=("APP", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.inner:
        return inner(args.inner[0], int(args.inner[1]))
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        print("valgrind not found: install it (Debian: apt-get install valgrind)")
        return 2
    n = 20 if args.smoke else args.n
    notes: list[str] = []
    available = [app.name for app in bf.load_ws_apps(notes)]
    wanted = ["ws:bare", "ws:userscope"] if args.smoke else (args.app or available)
    names = [name for name in wanted if name in available]
    print("# ws_instructions")
    print()
    print("machine: " + ", ".join(f"{k} {v}" for k, v in g.versions().items()))
    print(f"n={n} messages over one connection, callgrind instruction counts")
    for note in notes:
        print(f"note: {note}")
    print()
    extra = list(SIMULATED) if args.simulate else []
    print("| app | instructions / message | over ws:bare |" + "".join(f" {e} |" for e in extra))
    print("|---|---:|---:|" + "---:|" * len(extra))
    with ThreadPoolExecutor(max_workers=2) as pool:  # one valgrind process per app
        totals = list(pool.map(lambda app: count(valgrind, app, n, simulate=args.simulate), names))
    per_message = {
        name: {event: value / n for event, value in events.items()}
        for name, events in zip(names, totals, strict=True)
    }
    floor = per_message.get("ws:bare", {}).get("Ir")
    for name, events in per_message.items():
        over = f"{events['Ir'] - floor:,.0f}" if floor is not None else "n/a"
        cells = "".join(
            f" {sum(events.get(event, 0.0) for event in SIMULATED[heading]):,.0f} |"
            for heading in extra
        )
        print(f"| {name} | {events['Ir']:,.0f} | {over} |{cells}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
