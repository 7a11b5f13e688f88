#!/usr/bin/env bash
# The C core (boltfix/_speedups.c) under AddressSanitizer and UBSan: build it
# with -fsanitize=address,undefined, load it in place of the normal build, and
# run the tests that drive it hardest (direct calls with hostile arguments,
# the C-vs-Python comparisons, and the check, repair and dump fuzzers).  Any
# out-of-bounds access or undefined behaviour stops the run with a report.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

asan="$(gcc -print-file-name=libasan.so 2>/dev/null || true)"
ubsan="$(gcc -print-file-name=libubsan.so 2>/dev/null || true)"
if [ ! -f "$asan" ] || [ ! -f "$ubsan" ]; then
  msg="sanitize.sh: gcc with libasan/libubsan is needed (apt-get install gcc)"
  if [ "${CI:-}" = true ]; then echo "$msg" >&2; exit 1; fi
  echo "$msg; skipped" >&2
  exit 0
fi

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
inc="$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
ext="$(python3 -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')"
so="$out/_speedups$ext"
gcc -shared -fPIC -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
    -fno-sanitize-recover=all -I"$inc" boltfix/_speedups.c -o "$so"

export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
LD_PRELOAD="$asan:$ubsan" \
    python3 scripts/asan_pytest.py "$so" -q -p no:cacheprovider \
    tests/test_speedups.py tests/test_check_fuzz.py tests/test_repair_fuzz.py tests/test_dump.py \
    tests/test_inline_runs.py \
    "$@"
