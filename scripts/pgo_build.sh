#!/usr/bin/env bash
# A profile-guided build of the compiled core, in place (opt-in; docs/compiled.md).
#
#   scripts/pgo_build.sh                  build instrumented, train, rebuild with the profile
#   scripts/pgo_build.sh --wheel DIR      the same, then a wheel of that build into DIR
#
# 1. `USERSCOPE_PGO=generate`: every extension compiled with -fprofile-generate.
# 2. Training: the benchmarks' own hot paths on the instrumented build (bench_fastapi's
#    HTTP and WebSocket apps, bench_resolve's cycles), a few seconds; each extension
#    writes its profile (.gcda) next to its object file under build/ at exit.
# 3. `USERSCOPE_PGO=use`: every extension compiled again from the same objects' paths
#    with -fprofile-use: GCC lays out the hot blocks together and moves the rest away.
# 4. --wheel: `pip wheel` of this tree without build isolation, so it compiles to the same
#    build/ paths and reads the same profile (a fresh isolated build would not find it).
#
# GCC only (Clang's profiles are a different format); needs the dev environment (.venv,
# scripts/bootstrap.sh) for the training. The default build never depends on this.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
wheel_dir=""
if [ "${1:-}" = "--wheel" ]; then wheel_dir="${2:?--wheel needs a directory}"; fi
cd "$ROOT"
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"  # train and check this tree's build
check_compiled() {
  "$PY" -c "import userscope, sys; sys.exit(0 if userscope.COMPILED else 'userscope: the $1 build is not compiled')"
}

find build -name '*.gcda' -delete 2>/dev/null || true  # no profile of an older build
echo "==> 1/3 instrumented build (USERSCOPE_PGO=generate)"
USERSCOPE_PGO=generate "$PY" setup.py -q build_ext --inplace --force -j 2
check_compiled instrumented
echo "==> 2/3 training run (benchmarks, tiny N)"
"$PY" benchmarks/bench_fastapi.py --reps 3 --n 2000 >/dev/null
"$PY" benchmarks/bench_resolve.py --reps 3 --n 3000 --mode compiled >/dev/null
profiles=$(find build -name '*.gcda' | wc -l)
if [ "$profiles" -eq 0 ]; then
  echo "scripts/pgo_build.sh: the training wrote no profile (.gcda) under build/" >&2
  exit 1
fi
echo "    $profiles profiles"
echo "==> 3/3 optimised build (USERSCOPE_PGO=use)"
USERSCOPE_PGO=use "$PY" setup.py -q build_ext --inplace --force -j 2
check_compiled profile-guided
if [ -n "$wheel_dir" ]; then
  echo "==> wheel into $wheel_dir"
  rm -rf build/lib.*  # or setuptools would package an older non-inplace build as up to date
  USERSCOPE_PGO=use "$PY" -m pip wheel --no-deps --no-build-isolation -w "$wheel_dir" .
fi
echo "profile-guided build in place: userscope.COMPILED is True"
