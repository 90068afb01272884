"""Smoke tests for the benchmark scripts: they run with tiny N, print every row, and their
cleanup checks really fail when a library's cleanup does not run. No timing assertions."""

import asyncio
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def _has(module: str, attribute: str | None = None) -> bool:
    try:
        loaded = importlib.import_module(module)
    except ImportError:
        return False
    return attribute is None or hasattr(loaded, attribute)


def _run(script: str, *extra: str, env: dict[str, str] | None = None, timeout: float = 120) -> str:
    proc = subprocess.run(
        [sys.executable, str(BENCH / script), "--smoke", *extra],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert proc.returncode == 0, f"{script} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def _table(output: str) -> list[list[str]]:
    """The cells of every markdown table row in ``output``."""
    return [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in output.splitlines()
        if line.startswith("|")
    ]


def _rows(output: str) -> set[tuple[str, str]]:
    """``(first column, second column)`` of every markdown table row."""
    return {(cells[0], cells[1]) for cells in _table(output) if len(cells) >= 2}


def _load(name: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(BENCH))
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)
    spec.loader.exec_module(module)
    return module


def _compiled() -> bool:
    try:
        import userscope
    except ImportError:
        return False
    return bool(getattr(userscope, "COMPILED", False))


def test_bench_resolve_prints_every_row_for_every_library() -> None:
    output = _run("bench_resolve.py")
    libraries = ["floor", "di-contextlocal", "dishka", "wireup"]
    if _has("userscope", "UserSessions"):
        libraries.append("userscope")
        if _compiled():  # the pure twin runs next to the compiled one, in the same run
            libraries.append("userscope-pure")
            assert "userscope runs compiled" in output
        else:
            assert "userscope-pure" not in output
    else:
        assert "note: skipped userscope" in output
    rows = _rows(output)
    for row in ("sync cycle", "async cycle", "cached scoped resolve", "app singleton resolve"):
        for library in libraries:
            assert (row, library) in rows, f"missing {row} / {library}:\n{output}"
    assert "skipped" not in output.replace("note: skipped userscope", "")


def test_bench_resolve_mode_compiled_refuses_the_pure_runtime() -> None:
    proc = subprocess.run(
        [sys.executable, str(BENCH / "bench_resolve.py"), "--smoke", "--mode", "compiled"],
        env={**os.environ, "USERSCOPE_PURE": "1"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "--mode compiled needs the compiled core" in proc.stdout
    assert "pure (USERSCOPE_PURE=1)" in proc.stdout


def _sync_rows(output: str) -> dict[str, list[int]]:
    """``{library: [numbers of its sync-cycle row, ratio column left out]}``."""
    return {
        cells[1]: [int(cell.replace(",", "")) for cell in (cells[2], *cells[4:])]
        for cells in _table(output)
        if cells[0] == "sync cycle"
    }


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind not installed")
def test_bench_instructions_counts_floor_and_userscope() -> None:
    output = _run("bench_instructions.py", timeout=300)  # valgrind: ~40 s alone, >120 s at load 9
    counts = _sync_rows(output)
    assert set(counts) == {"floor", "userscope"}, output
    # a real count: thousands of instructions per cycle, the floor doing the least work
    assert 1_000 < counts["floor"][0] < counts["userscope"][0], counts


def _fake_valgrind(tmp_path: Path, callgrind_file: str) -> dict[str, str]:
    """An environment whose ``valgrind`` is a stand-in writing ``callgrind_file`` (printf
    escapes) as its callgrind output: the --simulate columns are checked without the
    minute a real cache simulation takes."""
    fake = tmp_path / "valgrind"
    fake.write_text(
        "#!/bin/sh\n"
        'for arg in "$@"; do case "$arg" in --callgrind-out-file=*) out="${arg#*=}";; esac; done\n'
        f'printf "{callgrind_file}" > "$out"\n'
    )
    fake.chmod(0o755)
    return {**os.environ, "PATH": f"{tmp_path}{os.pathsep}{os.environ.get('PATH', '')}"}


def test_bench_instructions_simulate_reads_callgrinds_totals(tmp_path: Path) -> None:
    # known totals in the stand-in's callgrind file
    env = _fake_valgrind(tmp_path, "events: Ir I1mr D1mr Bim\\nsummary: 2000 60 40 20\\n")
    output = _run("bench_instructions.py", "--simulate", env=env)
    assert "I1 misses / op" in output
    # --smoke runs 20 cycles: 2000 / 20 instructions, 60 / 20 I1 misses, and so on
    assert _sync_rows(output) == {"floor": [100, 3, 2, 1], "userscope": [100, 3, 2, 1]}, output


def test_ws_instructions_simulate_splits_off_userscopes_own_misses(tmp_path: Path) -> None:
    # A stand-in callgrind file with costs in two objects: one of userscope's extensions
    # and libpython. The "in userscope's extensions" column must count only the first
    # (20 messages per app in --smoke).
    env = _fake_valgrind(
        tmp_path,
        "events: Ir I1mr D1mr Bcm Bim\\n"
        "ob=(1) /site/userscope/providers/_scoped.so\\nfn=(1) f\\n1 400 20 40 20 20\\n"
        "calls=1 0\\n2 999 999 999 999 999\\n"
        "ob=(2) /usr/lib/libpython3.so\\nfn=(2) g\\n1 1600 40 20 20 20\\n"
        "summary: 2000 60 60 40 40\\n",
    )
    output = _run("ws_instructions.py", "--simulate", env=env)
    assert "of which in userscope's extensions" in output
    rows = {cells[0]: cells[1:] for cells in _table(output)[2:]}
    assert set(rows) == {"ws:bare", "ws:userscope"}, output
    # per message: 100 instructions, 3 I1 misses of which 1 in userscope's .so (the
    # call's inclusive line is not counted twice), 3 D1 read misses, 2 + 2 mispredicts
    assert rows["ws:userscope"] == ["100", "0", "3", "1", "3", "4"], output


def test_bench_fastapi_prints_every_app() -> None:
    output = _run("bench_fastapi.py")
    apps = ["bare", "fastapi-depends", "dishka", "wireup"]
    apps += ["ws:bare", "ws:dishka", "ws:wireup"]
    if _has("userscope.adapters.fastapi"):
        apps += ["userscope", "ws:userscope"]
    else:
        assert "note: skipped userscope" in output
    names = {first for first, _ in _rows(output)}
    for app in apps:
        assert app in names, f"missing {app}:\n{output}"


def test_the_ws_table_pairs_every_app_with_wireup_per_repetition(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bench = _load("bench_fastapi", monkeypatch)
    # messages per second, one per repetition: 1e6 / rate is us per message
    us_per_msg = {
        "ws:bare": [8.0, 9.0, 10.0, 11.0, 9.0],
        "ws:wireup": [10.0, 12.0, 11.0, 20.0, 10.0],  # one repetition hit by the drift
        "ws:userscope": [10.5, 12.25, 11.75, 19.0, 10.25],
    }
    results = {name: [1e6 / t for t in times] for name, times in us_per_msg.items()}

    def versus(name: str) -> list[float]:
        table = {cells[0]: cells for cells in _table(bench.format_ws_table(results))}
        return [float(x) for x in re.findall(r"[-+]\d+\.\d+", table[name][-1])]

    # per repetition: +0.5, +0.25, +0.75, -1.0, +0.25: median +0.25, quartiles
    # -0.375 and +0.625 (the drifting repetition moves a quartile, not the median)
    assert versus("ws:userscope") == pytest.approx([0.25, -0.38, 0.62], abs=0.011)
    assert versus("ws:wireup") == [0.0, 0.0, 0.0]
    assert versus("ws:bare")[0] == pytest.approx(-2.0)
    del results["ws:wireup"]  # no wireup in the run: nothing to pair with
    table = {cells[0]: cells for cells in _table(bench.format_ws_table(results))}
    assert table["ws:userscope"][-1] == "n/a"


def test_bench_memory_prints_every_row() -> None:
    output = _run("bench_memory.py")
    if not _has("userscope", "UserSessions"):
        assert "note: skipped userscope" in output
        return
    text = output.lower()
    for needle in ("bytes per idle user session", "retained growth", "retained after"):
        assert needle in text, f"missing {needle}:\n{output}"
    assert "sweep 10% / sweep 1%" in text or "skipped sweep" in text


def test_cycle_check_fails_when_a_library_skips_its_cleanup(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bench = _load("bench_resolve", monkeypatch)
    floor = bench.Floor()
    loop = asyncio.new_event_loop()
    try:
        assert bench.measure(floor, "sync cycle", 5, loop) > 0  # intact: passes
        monkeypatch.setattr(bench.Floor, "close_scope", staticmethod(lambda scope: None))
        with pytest.raises(AssertionError, match="cleanup did not run") as raised:
            bench.measure(floor, "sync cycle", 5, loop)
        assert "opened=5 closed=0" in str(raised.value)
    finally:
        loop.close()


def test_fastapi_check_fails_when_an_app_skips_its_cleanup(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bench = _load("bench_fastapi", monkeypatch)

    def leaky_factory(counter: object) -> object:
        async def aopen_bridge(ctx: object) -> AsyncIterator[object]:
            counter.opened += 1  # type: ignore[attr-defined]
            yield object()  # no cleanup after the yield

        return aopen_bridge

    intact = bench.bare_app()
    monkeypatch.setattr(bench.g, "abridge_factory", leaky_factory)
    leaky = bench.bare_app()

    async def go() -> None:
        for app in (intact, leaky):
            await app.startup()
        try:
            assert await bench.drive(intact, 3) > 0
            with pytest.raises(AssertionError, match="cleanup did not run") as raised:
                await bench.drive(leaky, 3)
            assert "opened=3 closed=0" in str(raised.value)
        finally:
            for app in (intact, leaky):
                await app.shutdown()

    asyncio.run(go())


def test_fastapi_ws_check_fails_when_an_app_skips_its_cleanup(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bench = _load("bench_fastapi", monkeypatch)

    def leaky_factory(counter: object) -> object:
        async def aopen_bridge(ctx: object) -> AsyncIterator[object]:
            counter.opened += 1  # type: ignore[attr-defined]
            yield object()  # no cleanup after the yield

        return aopen_bridge

    intact = bench.ws_bare_app()
    monkeypatch.setattr(bench.g, "abridge_factory", leaky_factory)
    leaky = bench.ws_bare_app()

    async def go() -> None:
        for app in (intact, leaky):
            await app.startup()
        try:
            assert await bench.drive_ws(intact, 3) > 0
            with pytest.raises(AssertionError, match="cleanup did not run") as raised:
                await bench.drive_ws(leaky, 3)
            assert "opened=1 closed=0" in str(raised.value)
        finally:
            for app in (intact, leaky):
                await app.shutdown()

    asyncio.run(go())


def test_stress_runtime_reports_a_clean_verdict() -> None:
    output = _run("stress_runtime.py")
    assert "verdict: ok" in output, output
    assert "not_closed_once: 0" in output, output


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind not installed")
def test_ws_instructions_counts_the_floor_and_userscope_per_message() -> None:
    output = _run("ws_instructions.py", timeout=300)  # FastAPI imports slowly under valgrind
    counts = {cells[0]: int(cells[1].replace(",", "")) for cells in _table(output)[2:]}
    assert set(counts) == {"ws:bare", "ws:userscope"}, output
    # a real count: thousands of instructions per message, the floor doing the least work
    assert 1_000 < counts["ws:bare"] < counts["ws:userscope"], counts
