#!/usr/bin/env bash
# etcd's own etcd-dump-logs (tests/oracle/test_wal_etcd.py's reference), built
# by the shared scripts/build_etcd.sh into build/etcd-dump-logs-<version>/.
#   bash scripts/build_etcd_dump_logs.sh [v3.5.x]
set -euo pipefail
exec bash "$(dirname "$0")/build_etcd.sh" "${1:-v3.5.21}" dump-logs
