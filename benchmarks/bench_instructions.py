"""Instructions per cycle under callgrind: bench_resolve's rows, counted instead of timed.

Run::

    .venv/bin/python benchmarks/bench_instructions.py [--n N] [--lib LIB ...] [--smoke]
        [--mode auto|both|compiled|pure]

``--mode`` as in bench_resolve: by default, when userscope runs compiled, a
``userscope-pure`` row counts the same code on its pure-Python modules
(``USERSCOPE_PURE=1`` in that row's process).

Wall-clock ratios on a shared 2-core box move by 10-20 % between runs; instruction
counts do not (the same binary, inputs and environment give the same count whatever
else the machine does). Each (library, row) runs in its own ``valgrind --tool=callgrind``
process (with ``PYTHONHASHSEED=0``) that collects only inside one ``itertools.starmap``
step wrapping the ``N`` cycles of bench_resolve's own loop, after a warm-up outside it:
imports, set-up and warm-up are not counted. The cleanup counter is checked after every run, as in
bench_resolve. Instructions are not time (a cache miss costs more than an add), so
quote these as a steady second signal next to bench_resolve's medians, not instead.

``--simulate`` adds callgrind's cache and branch simulation (``--cache-sim=yes
--branch-sim=yes``): instruction-cache misses, data-cache read misses and mispredicted
indirect branches per op, which show where a library's time goes beyond its instruction
count (a simulated machine, so again a signal, not a time).

Needs valgrind (Debian package ``valgrind``); without it the script says so and exits 2.
"""

import argparse
import asyncio
import itertools
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _graph as g
import bench_resolve as br

ROWS = ("sync cycle", "async cycle", "cached scoped resolve")


def inner(name: str, row: str, n: int) -> int:
    """The measured process: warm up, then run ``n`` cycles inside one starmap step."""
    if name == br.PURE_TWIN:
        if br.userscope_mode() == "compiled":
            raise RuntimeError(f"{name} must run on the pure modules ({br.PURE_ENV}=1)")
        name = "userscope"
    cls, _ = br.LIBRARY_CLASSES[name]
    lib = cls()
    loop = asyncio.new_event_loop()
    counter = br.counter_for(lib, row)
    try:
        br.run_row(lib, row, max(n // 5, 10), loop)  # warm-up, not collected
        counter.reset()
        # collected: everything inside the one starmap step
        [(_, expected)] = list(itertools.starmap(br.run_row, [(lib, row, n, loop)]))
        counter.check(name, row, expected)
    finally:
        loop.close()
        lib.close()
    return 0


#: columns of ``--simulate``: callgrind event name -> heading
SIMULATED = {
    "I1mr": "I1 misses / op",
    "D1mr": "D1 read misses / op",
    "Bim": "indirect mispredicts / op",
}


def count(valgrind: str, name: str, row: str, n: int, *, simulate: bool = False) -> dict[str, int]:
    """callgrind's event totals for ``n`` cycles of ``row`` in library ``name``.

    Always ``Ir`` (instructions); with ``simulate`` also the cache and branch simulation's
    events (``I1mr``, ``D1mr``, ``Bim``, ...).
    """
    return callgrind(
        valgrind,
        __file__,
        [name, row, str(n)],
        label=f"{name} / {row}",
        env=_mode_env(name),
        simulate=simulate,
    )


def callgrind(
    valgrind: str,
    script: str,
    inner: list[str],
    *,
    label: str,
    env: dict[str, str] | None = None,
    simulate: bool = False,
    exclude: str | None = None,
    inside: str | None = None,
) -> dict[str, int]:
    """Run ``script --inner *inner`` under callgrind and return its event totals.

    Only the one ``itertools.starmap`` step of the script's inner run is collected;
    ``PYTHONHASHSEED=0`` (same dict layouts, same count every run) and ``env`` are added
    to this process's environment. ``exclude`` names a C function whose inclusive ``Ir``
    is taken off the total (ws_instructions: the driver's own ``gc.collect()``);
    ``simulate`` adds the cache and branch simulation. ``inside`` adds, as
    ``inside:EVENT``, the events spent in code of the shared objects whose path contains
    it (ws_instructions: ``/userscope/``, the compiled core's own machine code). Shared
    by bench_instructions and ws_instructions, so that both count the same way.
    """
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        proc = subprocess.run(
            [
                valgrind,
                "--tool=callgrind",
                f"--callgrind-out-file={out}",
                "--collect-atstart=no",
                "--toggle-collect=starmap_next",
                *(["--cache-sim=yes", "--branch-sim=yes"] if simulate else []),
                sys.executable,
                script,
                "--inner",
                *inner,
            ],
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, "PYTHONHASHSEED": "0", **(env or {})},
        )
        text = out.read_text() if out.exists() else ""
        excluded = _inclusive_ir(out, exclude) if exclude and out.exists() else 0
        in_objects = object_totals(text, inside) if inside else {}
    events = re.search(r"^events: (.+)$", text, re.MULTILINE)
    totals = re.search(r"^summary: (.+)$", text, re.MULTILINE)
    if proc.returncode != 0 or events is None or totals is None:
        raise RuntimeError(f"{label} failed under callgrind:\n{proc.stderr[-2000:]}")
    result = dict(zip(events.group(1).split(), map(int, totals.group(1).split()), strict=True))
    result["Ir"] -= excluded
    result.update({f"inside:{event}": value for event, value in in_objects.items()})
    return result


_POSITION = re.compile(r"^[0-9+*-]")
_NAMED = re.compile(r"^(c?ob)=(?:\((\d+)\))?\s*(.*)$")


def object_totals(text: str, needle: str) -> dict[str, int]:
    r"""Self cost of every event in the objects (``.so`` files, the executable) of callgrind
    output ``text`` whose path contains ``needle``.

    Reads callgrind's format directly: ``ob=`` names (or, compressed, numbers) the object
    of the cost lines that follow; the line after a ``calls=`` line is the call's inclusive
    cost, charged to the caller, so it is skipped (the callee's own lines count it once).

    Example:
        >>> text = "events: Ir I1mr\nob=(1) /x/userscope/a.so\nfn=(1) f\n3 10 2\n"
        >>> text += "calls=1 0\n4 99 9\nob=(2) /lib/libc.so\nfn=(2) g\n5 7 1\n"
        >>> text += "ob=(1)\nfn=(1)\n6 5 1\n"
        >>> object_totals(text, "/userscope/")
        {'Ir': 15, 'I1mr': 3}
    """
    events: list[str] = []
    objects: dict[str, str] = {}
    totals: list[int] = []
    current = ""
    after_call = False
    for line in text.splitlines():
        if _POSITION.match(line):
            if after_call:
                after_call = False
            elif needle in current:
                costs = [int(cost) for cost in line.split()[1:]]
                totals.extend([0] * (len(costs) - len(totals)))
                for index, cost in enumerate(costs):
                    totals[index] += cost
            continue
        if line.startswith("calls="):
            after_call = True
        elif line.startswith("events:"):
            events = line.split()[1:]
        elif line.startswith(("ob=", "cob=")) and (named := _NAMED.match(line)):
            kind, number, name = named.groups()
            if number is not None:  # name compression: "(3) path" once, then "(3)"
                name = objects.setdefault(number, name) if name else objects.get(number, "")
            if kind == "ob":
                current = name
    totals.extend([0] * (len(events) - len(totals)))
    return dict(zip(events, totals, strict=True))


def _inclusive_ir(out: Path, function: str) -> int:
    """Inclusive ``Ir`` of C function ``function`` in callgrind output ``out`` (0 when
    ``callgrind_annotate`` is missing or the function never ran)."""
    annotate = shutil.which("callgrind_annotate")
    if annotate is None:
        return 0
    report = subprocess.run(
        [annotate, "--inclusive=yes", str(out)], capture_output=True, text=True, check=False
    ).stdout
    found = re.search(rf"^\s*([\d,]+) .*:{function} ", report, re.MULTILINE)
    return int(found.group(1).replace(",", "")) if found else 0


def _mode_env(name: str) -> dict[str, str]:
    """The pure twin runs with ``USERSCOPE_PURE=1``; every other row as this process does."""
    return {br.PURE_ENV: "1"} if name == br.PURE_TWIN else {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=2_000, help="cycles per measurement")
    parser.add_argument("--lib", action="append", help="libraries (default: all importable)")
    parser.add_argument("--row", action="append", choices=ROWS, help="rows (default: all)")
    parser.add_argument(
        "--simulate",
        action="store_true",
        help="also simulate caches and branch prediction (I1/D1 misses, mispredicts; slower)",
    )
    parser.add_argument("--smoke", action="store_true", help="floor and userscope, sync, tiny N")
    parser.add_argument("--mode", choices=br.MODES, default="auto", help="how userscope runs")
    parser.add_argument("--inner", nargs=3, metavar=("LIB", "ROW", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.inner:
        name, row, n_text = args.inner
        return inner(name, row, int(n_text))

    valgrind = shutil.which("valgrind")
    if valgrind is None:
        print("valgrind not found: install it (Debian: apt-get install valgrind)")
        return 2
    if args.mode == "pure" and os.environ.get(br.PURE_ENV) != "1":
        rerun = [sys.executable, __file__, *(sys.argv[1:] if argv is None else argv)]
        return subprocess.call(rerun, env={**os.environ, br.PURE_ENV: "1"})
    n = 20 if args.smoke else args.n
    rows = ["sync cycle"] if args.smoke else (args.row or list(ROWS))
    notes: list[str] = []
    twin, refusal = br.check_mode(args.mode, notes)
    if refusal:
        print(refusal)
        return 2
    available = [lib.name for lib in br.load_libraries(notes)]
    if twin and "userscope" in available:
        available.append(br.PURE_TWIN)
    wanted = ["floor", "userscope"] if args.smoke else (args.lib or available)
    names = [name for name in wanted if name in available]

    print("# bench_instructions")
    print()
    facts = g.versions()
    facts["userscope runs"] = br.userscope_mode()
    print("machine: " + ", ".join(f"{k} {v}" for k, v in facts.items()))
    print(f"n={n} cycles per measurement (x10 for the resolve row), callgrind instruction counts")
    for note in notes:
        print(f"note: {note}")
    print()
    extra = list(SIMULATED) if args.simulate else []
    print(
        "| row | library | instructions / op | ratio to floor |"
        + "".join(f" {SIMULATED[e]} |" for e in extra)
    )
    print("|---|---|---:|---:|" + "---:|" * len(extra))
    for row in rows:
        ops = n * br.ROW_SCALE[row]
        per_op = {
            name: {
                event: value / ops
                for event, value in count(valgrind, name, row, ops, simulate=args.simulate).items()
            }
            for name in names
        }
        floor = per_op.get("floor", {}).get("Ir")
        for name, events in per_op.items():
            ratio = f"{events['Ir'] / floor:.2f}x" if floor else "n/a"
            cells = "".join(f" {events[e]:,.0f} |" for e in extra)
            print(f"| {row} | {name} | {events['Ir']:,.0f} | {ratio} |{cells}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
