"""Bounded stress run of the runtime (a few seconds; ``USERSCOPE_STRESS_SECONDS`` for more)."""

from __future__ import annotations

import faulthandler
import os
import sys

import pytest

from stress_runtime import run, verdict


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_mixed_load_shares_nothing_closes_everything_once_and_never_hangs() -> None:
    seconds = float(os.environ.get("USERSCOPE_STRESS_SECONDS", "4"))
    faulthandler.dump_traceback_later(seconds + 60, exit=False, file=sys.stderr)
    try:
        result = run(seconds)
    finally:
        faulthandler.cancel_dump_traceback_later()
    assert verdict(result) == [], result
    assert result["scopes"] > 100, result
    assert result["cancelled"] > 0, result
