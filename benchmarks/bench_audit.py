"""Throughput of ``userscope audit`` on a synthetic code base.

Generates a code base (default about 200,000 lines of mixed legacy and clean
code, with every rule's pattern in it) in a temporary directory, scans it with
``scan_paths`` and prints lines per second and the ratio to the 20,000
lines/s target. Generation is not timed.

    .venv/bin/python benchmarks/bench_audit.py            # full run
    .venv/bin/python benchmarks/bench_audit.py --smoke    # tiny run for CI
    .venv/bin/python benchmarks/bench_audit.py --profile  # top functions by time
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import tempfile
import time
from pathlib import Path

from userscope.audit import AuditConfig, scan_paths

TARGET_LINES_PER_SECOND = 20_000

_LEGACY = """\
from dependency_injector import containers, providers
from functools import lru_cache


class Agent{n}Registry:
    def __init__(self) -> None:
        self._agents: dict[str, object] = {{}}

    def register(self, user_id: str, agent: object) -> None:
        self._agents[user_id] = agent


registry_{n} = Agent{n}Registry()
_bridge_{n} = None
_sessions_{n}: dict[str, dict[str, object]] = {{}}


def get_bridge_{n}():
    global _bridge_{n}
    if _bridge_{n} is None:
        _bridge_{n} = AgentBridge{n}()
    return _bridge_{n}


class Conn{n}Pool:
    _instance = None

    def __new__(cls):
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance


@lru_cache(maxsize=None)
def get_manager_{n}():
    return Agent{n}Registry()


class Manager{n}Factory:
    _managers: dict[str, object] = {{}}

    @classmethod
    def for_user(cls, user_id: str) -> object:
        return cls._managers.setdefault(user_id, object())


class User{n}State:
    def __init__(self, user_id: str) -> None:
        self.user_id = user_id


class Container{n}(containers.DeclarativeContainer):
    state = providers.Singleton(User{n}State, user_id="x")
    factory = providers.Factory(dict)


def remember_{n}(user_id: str, data: dict[str, object]) -> None:
    _sessions_{n}[user_id] = data
    get_agent_websocket_bridge()
"""

_CLEAN = '''\


class Service{n}{k}:
    """A stateless service with ordinary code in it."""

    def __init__(self, client: object, limit: int = 10) -> None:
        self.client = client
        self.limit = limit

    def handle(self, items: list[dict[str, int]]) -> dict[str, int]:
        totals: dict[str, int] = {{}}
        for item in items:
            for key, value in item.items():
                if value > self.limit and key.startswith("x"):
                    totals[key] = totals.get(key, 0) + value
                elif value < 0:
                    raise ValueError(f"negative value {{value}} for {{key}}")
                else:
                    totals.setdefault(key, 0)
        return {{k: v for k, v in sorted(totals.items()) if v}}

    async def fetch(self, ids: list[int]) -> list[str]:
        results = []
        for chunk_start in range(0, len(ids), self.limit):
            chunk = ids[chunk_start : chunk_start + self.limit]
            try:
                response = await self.client.get("/items", params={{"ids": chunk}})
            except TimeoutError:
                continue
            results.extend(str(row["name"]) for row in response.json() if row)
        return results


def helper_{n}_{k}(values: list[int], *, scale: float = 1.5) -> list[float]:
    """Pure function."""
    scaled = [value * scale for value in values if value % 2 == 0]
    with open("/dev/null") as sink:
        sink.write(",".join(map(str, scaled)))
    return scaled
'''


def generate(root: Path, target_lines: int) -> tuple[int, int]:
    """Write modules under ``root`` until ``target_lines`` lines exist."""
    lines = files = 0
    n = 0
    while lines < target_lines:
        package = root / f"pkg{n // 50}"
        package.mkdir(exist_ok=True)
        parts = [_LEGACY.format(n=n)] + [_CLEAN.format(n=n, k=k) for k in range(10)]
        text = "".join(parts)
        (package / f"module_{n}.py").write_text(text, encoding="utf-8")
        lines += text.count("\n")
        files += 1
        n += 1
    return files, lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny run (about 2,000 lines)")
    parser.add_argument("--lines", type=int, default=200_000, help="size of the code base")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs; the best is reported")
    parser.add_argument("--profile", action="store_true", help="print the top functions by time")
    args = parser.parse_args(argv)
    target = 2_000 if args.smoke else args.lines
    repeat = 1 if args.smoke else args.repeat
    config = AuditConfig(deprecated_accessors={"get_agent_websocket_bridge": ""})
    with tempfile.TemporaryDirectory(prefix="userscope-bench-") as tmp:
        root = Path(tmp)
        files, _ = generate(root, target)
        best = best_cpu = float("inf")
        result = None
        for _ in range(repeat):
            started, started_cpu = time.perf_counter(), time.process_time()
            result = scan_paths([root], config)
            best = min(best, time.perf_counter() - started)
            best_cpu = min(best_cpu, time.process_time() - started_cpu)
        assert result is not None
        if args.profile:
            profiler = cProfile.Profile()
            profiler.runcall(scan_paths, [root], config)
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(20)
    rate = result.lines_scanned / best
    print(f"files scanned      {result.files_scanned}")
    print(f"lines scanned      {result.lines_scanned}")
    print(f"findings           {len(result.findings)}")
    print(f"best of {repeat} runs     {best:.3f} s")
    print(f"throughput         {rate:,.0f} lines/s")
    print(f"CPU throughput     {result.lines_scanned / best_cpu:,.0f} lines/s (process CPU time)")
    print(f"ratio to target    {rate / TARGET_LINES_PER_SECOND:.2f}x (target 20,000 lines/s)")
    expected_per_file = 8  # US001 to US008 once each
    if len(result.findings) < files * expected_per_file:
        print("unexpectedly few findings: the scanner missed patterns", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
