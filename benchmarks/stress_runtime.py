"""The runtime stress test of tests/test_stress.py, longer: ``--seconds N`` (default 60).

Run::

    .venv/bin/python benchmarks/stress_runtime.py --seconds 60 [--loops 3 --tasks 8 --threads 2]

Prints the counts (scopes, instances, cancellations, refusals, injected failures) and the
verdict (shared instances, finalizers not run exactly once or out of order, limits
exceeded, hung threads, state left after shutdown); exits 1 on any problem.
"""

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from stress_runtime import run, verdict


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--loops", type=int, default=3, help="threads with their own event loop")
    parser.add_argument("--tasks", type=int, default=8, help="tasks per loop")
    parser.add_argument("--threads", type=int, default=2, help="plain sync threads")
    parser.add_argument("--users", type=int, default=24)
    parser.add_argument("--smoke", action="store_true", help="half a second (what CI runs)")
    args = parser.parse_args()
    if args.smoke:
        args.seconds = 0.5
    logging.disable(logging.CRITICAL)  # injected failures are logged by design
    result = run(
        args.seconds,
        loops=args.loops,
        tasks=args.tasks,
        sync_threads=args.threads,
        users=args.users,
    )
    for key, value in result.items():
        print(f"{key}: {value}")
    problems = verdict(result)
    print("verdict:", "ok" if not problems else "; ".join(problems))
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
