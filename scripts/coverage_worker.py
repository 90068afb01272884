"""Run one pytest-xdist worker under coverage (used by ``scripts/check``).

execnet starts a worker as ``<python> -u -c "import sys;exec(eval(sys.stdin.readline()))"``.
``scripts/check`` names ``<python> -m coverage run -p scripts/coverage_worker.py`` as the
workers' interpreter (``--tx popen//python=...``), so this file gets that ``-c`` code as
arguments and runs it: coverage measures the worker from before its first import (the
pytest plugin imports userscope at start-up), and nothing the tests start inherits it.

The worker also loads this file as a pytest plugin (``PYTEST_PLUGINS``, taken out of the
environment again before any test runs) that saves the data when the session finishes:
the xdist controller kills a worker that takes more than 10 s to exit after its last
test, and `coverage run` saves only at exit. (It is imported before pytest starts, so
its asserts could not be rewritten: PYTEST_DONT_REWRITE; it has none.)
"""

from __future__ import annotations

import os
import sys
from typing import Any

import coverage

PLUGIN = "coverage_worker"


def pytest_configure(config: Any) -> None:
    """The tests' own subprocesses (pytest runs among them) must not load this plugin."""
    os.environ.pop("PYTEST_PLUGINS", None)


def pytest_sessionfinish(session: Any) -> None:
    """Save what this worker measured, before the controller may kill it."""
    current = coverage.Coverage.current()
    if current is not None:
        current.save()


if __name__ == "__main__":
    # importable by name whatever the worker does to sys.path (pytest imports it by name)
    sys.modules[PLUGIN] = sys.modules[__name__]
    os.environ["PYTEST_PLUGINS"] = PLUGIN
    # in a namespace of its own: the code it runs sets __doc__ and other globals
    exec(sys.argv[sys.argv.index("-c") + 1], {"__name__": "__main__"})
