#!/usr/bin/env bash
# The whole test suite: a normal build and an ASan+UBSan build, each with
# ctest (unit + integration). Reference data: $G4_TESTDATA, default
# ../shared/testdata beside the repository.
set -uo pipefail
cd "$(dirname "$0")/.."
JOBS=$(nproc 2>/dev/null || echo 2)
if ! pkg-config --exists libzmq libprotobuf-c hwloc libcjson libmicrohttpd libmpg123 libsodium 2>/dev/null || [ ! -f /usr/include/stb/stb_image.h ]; then
  echo "dependencies missing: running deploy/install-deps.sh"
  bash deploy/install-deps.sh || exit 1
fi
status=0
run() { # dir, cmake flags...
  local dir=$1; shift
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null || return 1
  cmake --build "$dir" -j"$JOBS" >/dev/null || { cmake --build "$dir" 2>&1 | grep -E "error" | head -20; return 1; }
  (cd "$dir" && ctest --output-on-failure -j"$JOBS")
}
echo "== build + tests =="
run build || status=1
echo "== ASan + UBSan build + tests =="
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 run build-asan -DG4_SANITIZE=ON || status=1
exit $status
