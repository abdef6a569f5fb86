#!/usr/bin/env bash
# Figures for docs/BENCHMARKS.md, "Density: many databases in one process":
# memory, storage requests (under load and idle) and commit-to-durable lag
# of one `walsync watch` process replicating N databases, beside Litestream
# v0.5.18 replicating the same databases under the same load in the same
# run, against MinIO on loopback behind a counting proxy (bench/density).
#
#   bench/density.sh                                  # N = 1 10 100 1000, both tools
#   COUNTS="1 10 100" DURATION=20s bench/density.sh
#   TOOLS=walsync IDLE=30s bench/density.sh
#
# DURATION: write-load phase of each run (default 30s). IDLE: idle phase
# (default 30s for N <= 10, 60s above). Each run: start-up, load, drain (15 s
# for walsync, 95 s for Litestream),
# idle, stop; about DURATION + IDLE + 15 s. RESULTS=FILE keeps the JSON
# lines (default: a temporary file, printed as tables at the end).
# WALSYNC_BIN=PATH measures that binary instead of building bin/walsync.
set -euo pipefail
cd "$(dirname "$0")/.."
COUNTS=${COUNTS:-1 10 100 1000}
DURATION=${DURATION:-30s}
IDLE=${IDLE:-}
TOOLS=${TOOLS:-walsync litestream}
TOOLS_DIR=${WALSYNC_TOOLS:-$HOME/.cache/walsync-tools}
LITESTREAM_VERSION=v0.5.18
LITESTREAM_DIR=$TOOLS_DIR/litestream-$LITESTREAM_VERSION
LITESTREAM=$LITESTREAM_DIR/litestream

if [ -z "${WALSYNC_TEST_S3_ENDPOINT:-}" ]; then
	[[ -n ${WALSYNC_BIN:-} ]] || make -s build >/dev/null
	go build -o bin/density ./bench/density
	if [[ " $TOOLS " == *" litestream "* && ! -x $LITESTREAM ]]; then
		echo "installing Litestream $LITESTREAM_VERSION into $LITESTREAM_DIR (once; a few minutes)" >&2
		mkdir -p "$LITESTREAM_DIR"
		(cd "$LITESTREAM_DIR" && GOBIN=$LITESTREAM_DIR GOFLAGS=-buildvcs=false GOWORK=off \
			go install "github.com/benbjohnson/litestream/cmd/litestream@$LITESTREAM_VERSION")
	fi
	exec scripts/minio.sh run -- "$0" "$@"
fi

# walsync holds ~4 descriptors per database, the load generator 3 more.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
need=$((8 * $(tr ' ' '\n' <<<"$COUNTS" | sort -n | tail -1) + 256))
if (($(ulimit -n) < need)); then
	echo "density.sh: ulimit -n is $(ulimit -n), want at least $need for the largest N" >&2
	exit 1
fi

export AWS_ACCESS_KEY_ID=$WALSYNC_TEST_S3_ACCESS_KEY AWS_SECRET_ACCESS_KEY=$WALSYNC_TEST_S3_SECRET_KEY AWS_REGION=us-east-1
work=$(mktemp -d /var/tmp/walsync-density.XXXXXX)
trap 'rm -rf "$work"' EXIT
results=${RESULTS:-$work/results.jsonl}

echo "density: $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) cores, COUNTS=\"$COUNTS\" DURATION=$DURATION TOOLS=\"$TOOLS\"" >&2
for n in $COUNTS; do
	idle=$IDLE
	[[ -n $idle ]] || { if ((n <= 10)); then idle=30s; else idle=60s; fi; }
	for tool in $TOOLS; do
		bin=${WALSYNC_BIN:-bin/walsync}
		[[ $tool == litestream ]] && bin=$LITESTREAM
		bin/density -tool "$tool" -bin "$bin" -n "$n" -duration "$DURATION" -idle "$idle" \
			-work "$work" -out "$results" >/dev/null
	done
done
echo
bin/density -report "$results"
