#!/usr/bin/env bash
# The whole test suite: a normal build and an ASan+UBSan build, each with
# ctest (unit + integration). Reference data: $G4_TESTDATA, default
# ../shared/testdata beside the repository.
set -uo pipefail
cd "$(dirname "$0")/.."
JOBS=$(nproc 2>/dev/null || echo 2)
# the one list of dependencies is deploy/install-deps.sh's (commands, modules, headers)
if ! bash deploy/install-deps.sh --check; then
  echo "dependencies missing: running deploy/install-deps.sh"
  bash deploy/install-deps.sh || exit 1
fi
status=0
run() { # dir, ctest flags, cmake flags...
  local dir=$1 ctest_flags=$2; shift 2
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null || return 1
  cmake --build "$dir" -j"$JOBS" >/dev/null || { cmake --build "$dir" 2>&1 | grep -E "error" | head -20; return 1; }
  (cd "$dir" && ctest --output-on-failure -j"$JOBS" $ctest_flags)
}
echo "== build + tests (unit, integration, scale tier) =="
run build "" || status=1
# the scale tier (31B-width forward passes, minutes each under ASan) runs in the normal build only
echo "== ASan + UBSan build + tests (unit, integration) =="
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 run build-asan "-LE scale" -DG4_SANITIZE=ON || status=1
exit $status
