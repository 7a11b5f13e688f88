#!/usr/bin/env bash
# Build the real etcd tools from etcd's Go modules (the Go module proxy, no
# fetched source) into build/etcd-<version>/ (git-ignored):
#   bash scripts/build_etcd.sh v3.6.16             etcd, etcdctl, etcdutl
#   bash scripts/build_etcd.sh v3.5.21 dump-logs   etcd-dump-logs
# etcd's server/go.mod has `replace` lines, so `go install .../server/v3@v`
# is refused; a small local module that requires the server, etcdctl and
# etcdutl modules at one version and calls their main entry points builds
# them (replace lines of a dependency are ignored, its requires are used).
# Idempotent: an existing binary is kept.  GOTOOLCHAIN=local (Go 1.26).
set -euo pipefail
cd "$(dirname "$0")/.."
ver="${1:?usage: build_etcd.sh vX.Y.Z [dump-logs]}"
what="${2:-server}"
export GOTOOLCHAIN=local GOFLAGS=-mod=mod
flags=(-trimpath "-ldflags=-s -w")

if [ "$what" = dump-logs ]; then
  out="build/etcd-dump-logs-$ver"
  [ -x "$out/etcd-dump-logs" ] && { echo "$out/etcd-dump-logs"; exit 0; }
  mkdir -p "$out/mod"
  printf 'module boltfix.local/dumplogs\n\ngo 1.25\n\nrequire go.etcd.io/etcd/v3 %s\n' \
    "$ver" > "$out/mod/go.mod"
  printf '//go:build tools\n\npackage tools\n\nimport _ "go.etcd.io/etcd/v3/tools/etcd-dump-logs"\n' \
    > "$out/mod/tools.go"
  (cd "$out/mod" && { go mod tidy >/dev/null 2>&1 || true; } \
   && nice -n 10 go build "${flags[@]}" -o ../etcd-dump-logs.tmp \
        go.etcd.io/etcd/v3/tools/etcd-dump-logs \
   && mv ../etcd-dump-logs.tmp ../etcd-dump-logs)
  echo "$out/etcd-dump-logs"
  exit 0
fi

out="build/etcd-$ver"
if [ -x "$out/etcd" ] && [ -x "$out/etcdctl" ] && [ -x "$out/etcdutl" ]; then
  echo "$out"; exit 0
fi
mod="$out/mod"
mkdir -p "$mod/etcd"
cat > "$mod/go.mod" <<GOMOD
module boltfix.local/etcd

go 1.25

require (
	go.etcd.io/etcd/server/v3 $ver
	go.etcd.io/etcd/etcdctl/v3 $ver
	go.etcd.io/etcd/etcdutl/v3 $ver
)
GOMOD
# etcd's own main (server/main.go in 3.6+, the root main.go in 3.5):
# etcdmain.Main(os.Args[1:]... ) -- Main takes the whole os.Args
cat > "$mod/etcd/main.go" <<'GO'
// Command etcd: the real etcd server, its own entry point.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
GO
cat > "$mod/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "go.etcd.io/etcd/etcdctl/v3"
	_ "go.etcd.io/etcd/etcdutl/v3"
)
GO
cd "$mod"
go mod tidy >/dev/null
for t in etcd etcdctl etcdutl; do
  [ -x "../$t" ] && continue
  case $t in
    etcd) pkg=./etcd ;;
    etcdctl) pkg=go.etcd.io/etcd/etcdctl/v3 ;;
    etcdutl) pkg=go.etcd.io/etcd/etcdutl/v3 ;;
  esac
  nice -n 10 go build "${flags[@]}" -o "../$t.tmp" "$pkg"
  mv "../$t.tmp" "../$t"
done
cd - >/dev/null
echo "$out"
