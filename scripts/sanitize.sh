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
    tests/unit/test_ccore.py tests/hostile/test_check_fuzz.py \
    tests/hostile/test_repair_fuzz.py::test_repair_ends_in_a_valid_file_or_writes_nothing \
    tests/unit/test_dump.py tests/oracle/test_bbolt_dump.py \
    tests/oracle/test_etcd_dump.py::test_real_etcd_decode \
    tests/oracle/test_etcd_dump.py::test_real_etcd_free_pages_guess_key_bucket \
    tests/unit/test_secrets.py::test_redact_user_value_masks_password_only \
    tests/unit/test_leaves.py \
    --deselect tests/unit/test_ccore.py::test_c_core_takes_the_pages_of_deep_db \
    --deselect tests/unit/test_ccore.py::test_c_core_takes_the_pages_of_the_bench_smoke_file \
    --deselect tests/unit/test_ccore.py::test_every_command_prints_the_same_with_and_without_c \
    "$@"
