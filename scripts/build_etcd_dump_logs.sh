#!/usr/bin/env bash
# Build etcd's own etcd-dump-logs from etcd's Go module (the Go module proxy,
# no fetched source) into build/etcd-dump-logs-<version>/etcd-dump-logs: the
# reference that tests/test_wal_dumplogs.py holds `boltfix wal` to.
#   bash scripts/build_etcd_dump_logs.sh [v3.5.x]
# Until the shared build helper (etcd 3.5/3.6/3.7 from their modules) lands,
# this is the one place that builds it.  Idempotent: an existing binary is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
ver="${1:-v3.5.21}"
out="build/etcd-dump-logs-$ver"
[ -x "$out/etcd-dump-logs" ] && { echo "$out/etcd-dump-logs"; exit 0; }
mkdir -p "$out/mod"
cat > "$out/mod/go.mod" <<GOMOD
module boltfix.local/dumplogs

go 1.25

require go.etcd.io/etcd/v3 $ver
GOMOD
cat > "$out/mod/tools.go" <<'GO'
//go:build tools

package tools

import _ "go.etcd.io/etcd/v3/tools/etcd-dump-logs"
GO
(cd "$out/mod" && { GOFLAGS=-mod=mod GOTOOLCHAIN=local go mod tidy >/dev/null 2>&1 || true; } \
 && GOFLAGS=-mod=mod GOTOOLCHAIN=local nice -n 10 go build -o ../etcd-dump-logs \
   go.etcd.io/etcd/v3/tools/etcd-dump-logs)
echo "$out/etcd-dump-logs"
