"""Run `userscope audit` on the legacy and the scoped chat backends.

    .venv/bin/python examples/audit/audit_demo.py

Prints the legacy findings with their fixes, shows that the scoped version is
clean, and shows a baseline accepting today's findings.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from userscope.audit import main

HERE = Path(__file__).resolve().parent


def demo() -> tuple[int, int, int]:
    """Return the exit statuses of: legacy audit, scoped audit, legacy with baseline."""
    legacy = str(HERE / "legacy_chat.py")
    scoped = str(HERE / "scoped_chat.py")
    print("== legacy_chat.py")
    legacy_status = main(["audit", legacy])
    print("\n== scoped_chat.py")
    scoped_status = main(["audit", scoped])
    print("\n== legacy_chat.py against a baseline of today's findings")
    with tempfile.TemporaryDirectory() as tmp:
        baseline = str(Path(tmp) / "baseline.json")
        main(["audit", legacy, "--write-baseline", baseline])
        baseline_status = main(["audit", legacy, "--baseline", baseline])
    return legacy_status, scoped_status, baseline_status


if __name__ == "__main__":
    statuses = demo()
    print(f"\nexit statuses (legacy, scoped, legacy+baseline): {statuses}")
