"""The quickstart runs and keeps each user's runs apart."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from examples.quickstart import quickstart


def test_quickstart_isolates_users() -> None:
    runs = quickstart.main()
    assert runs == {"alice": ["hello", "a1", "a2"], "bob": ["b1", "b2"]}


def test_quickstart_runs_as_a_script() -> None:
    script = Path(quickstart.__file__)
    out = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert "outside a scope: Container.agent needs REQUEST" in out
    assert "bridge of alice closed after 1 event(s)" in out
    assert "'cleanups_run': 3" in out
