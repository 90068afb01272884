"""The worker example: the captive dispatcher is refused on the first job, for every user."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from examples.worker import worker

REFUSED = "refused: BuggyContainer.dispatcher (Singleton) -> BuggyContainer.agent (RequestScoped)"


async def test_captive_dispatcher_is_refused_and_the_fixed_one_isolates() -> None:
    results = await worker.main()
    assert results["buggy"] == [REFUSED] * 3  # nobody ever gets alice's agent
    assert results["fixed"] == ["alice: summarise", "bob: translate", "alice: reply"]


def test_worker_runs_as_a_script() -> None:
    out = subprocess.run(
        [sys.executable, str(Path(worker.__file__))],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert REFUSED in out
    assert "bob: translate" in out
