#!/usr/bin/env bash
# Regenerates core/plugin/proto from tools/proto/*.proto.
#
# Needs protoc (apt: protobuf-compiler). The two Go generators are installed
# into a temporary GOBIN at the versions pinned here so they never enter
# go.mod; protoc-gen-go matches the google.golang.org/protobuf in go.mod.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
command -v protoc >/dev/null || { echo "gen.sh: protoc not found (apt-get install protobuf-compiler)" >&2; exit 1; }
if [ -n "${PROTOC_GOBIN:-}" ]; then
  gobin="$PROTOC_GOBIN"
else
  gobin="$(mktemp -d)"
  trap 'rm -rf "$gobin"' EXIT
fi
GOBIN="$gobin" GOFLAGS= go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
GOBIN="$gobin" GOFLAGS= go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.5.1
cd "$root/tools/proto"
PATH="$gobin:$PATH" protoc -I . \
  --go_out="$root/core/plugin/proto" --go_opt=paths=source_relative \
  --go-grpc_out="$root/core/plugin/proto" --go-grpc_opt=paths=source_relative \
  plugin.proto
echo "gen.sh: wrote $root/core/plugin/proto"
