#!/usr/bin/env bash
# Figures for docs/BENCHMARKS.md, "The VFS": insert throughput through
# ?vfs=walsync beside the default VFS, commit latency with walsync_sync=1,
# and commit-to-durable lag in async mode beside `walsync watch`, all in one
# run against MinIO on loopback (scripts/minio.sh). See bench/vfs/main.go.
#
#   bench/vfs.sh                          # defaults
#   bench/vfs.sh -commits 2000 -batch 10  # flags of bench/vfs
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${WALSYNC_TEST_S3_ENDPOINT:-}" ]; then
	make -s build >/dev/null
	go build -o bin/bench-vfs ./bench/vfs
	exec scripts/minio.sh run -- "$0" "$@"
fi
exec bin/bench-vfs -walsync bin/walsync "$@"
