#!/usr/bin/env bash
# The storage-fault soak (issue "storage faults"): 10 minutes of an
# application writing with TRUNCATE checkpoints, `walsync watch` killed
# with SIGKILL every 0.3-1.5 s, MinIO behind a proxy that cuts GET bodies,
# answers 500 and 503 SlowDown and adds latency, a restore every 20 s
# during the load (each checked with integrity_check), and, once the last
# watch has caught up (its spool empty), a final restore that must equal
# the source byte for byte. Prints the counts of kills,
# faults, generations and restores.
#
#   bench/soak.sh                  # 10 minutes
#   bench/soak.sh -duration 2m     # shorter
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${WALSYNC_TEST_S3_ENDPOINT:-}" ]; then
	go build -o bin/walsync ./cmd/walsync
	go build -o bin/killsoak ./bench/killsoak
	exec scripts/minio.sh run -- "$0" "$@"
fi
exec bin/killsoak -walsync bin/walsync -s3 -duration 10m "$@"
