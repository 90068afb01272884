"""Run one pytest-xdist worker under coverage (used by ``scripts/check``).

execnet starts a worker as ``<python> -u -c "import sys;exec(eval(sys.stdin.readline()))"``.
``scripts/check`` names ``<python> -m coverage run -p scripts/coverage_worker.py`` as the
workers' interpreter (``--tx popen//python=...``), so this file gets that ``-c`` code as
arguments and runs it: coverage measures the worker from before its first import (the
pytest plugin imports userscope at start-up), and nothing the tests start inherits it.
"""

import sys

exec(sys.argv[sys.argv.index("-c") + 1])
