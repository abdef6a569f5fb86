#!/usr/bin/env bash
# Figures for docs/BENCHMARKS.md, "Foundation": stripped binary size, peak
# RSS and throughput of `walsync snapshot` and `walsync restore` of a
# ~1 GiB database against MinIO on loopback, beside the raw PUT and GET
# throughput of the same bytes measured in the same run.
#
#   bench/foundation.sh            # 1024 MiB database
#   SIZE_MB=256 bench/foundation.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MB=${SIZE_MB:-1024}

if [ -z "${WALSYNC_TEST_S3_ENDPOINT:-}" ]; then
	exec scripts/minio.sh run -- "$0" "$@"
fi

make -s build >/dev/null
go build -o bin/rawio ./bench/rawio
[ -x /usr/bin/time ] || { echo "bench needs GNU time (/usr/bin/time, Debian package 'time')" >&2; exit 1; }

work=$(mktemp -d /var/tmp/walsync-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
export AWS_ACCESS_KEY_ID=$WALSYNC_TEST_S3_ACCESS_KEY AWS_SECRET_ACCESS_KEY=$WALSYNC_TEST_S3_SECRET_KEY AWS_REGION=us-east-1
ep=$WALSYNC_TEST_S3_ENDPOINT
bin/rawio -endpoint "$ep" -bucket bench mb

rows=$((SIZE_MB * 1024))
echo "creating a ${SIZE_MB} MiB database ($rows rows of ~1 KiB: 400 random bytes + 600 hex chars)" >&2
sqlite3 "$work/big.db" "PRAGMA journal_mode=wal; CREATE TABLE t(id INTEGER PRIMARY KEY, b BLOB, s TEXT);
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < $rows)
INSERT INTO t SELECT x, randomblob(400), hex(randomblob(300)) FROM c; PRAGMA wal_checkpoint(TRUNCATE);" >/dev/null
dbbytes=$(stat -c %s "$work/big.db")
sync

measure() { # label, command...: prints "seconds maxrss_kib"
	/usr/bin/time -f "%e %M" -o "$work/time" "${@:2}" >/dev/null
	cat "$work/time"
}
mibs() { awk -v b="$1" -v s="$2" 'BEGIN { printf "%.1f", b / s / 1048576 }'; }

read -r raw_put_n raw_put_s _ < <(bin/rawio -endpoint "$ep" -bucket bench put "$work/big.db" raw/big.db | cut -d' ' -f2-)
read -r raw_get_n raw_get_s _ < <(bin/rawio -endpoint "$ep" -bucket bench get raw/big.db | cut -d' ' -f2-)
read -r snap_s snap_rss < <(measure snapshot bin/walsync snapshot "$work/big.db" -b s3://bench/w --endpoint "$ep")
read -r rest_s rest_rss < <(measure restore bin/walsync restore big -o "$work/restored.db" -b s3://bench/w --endpoint "$ep")
cmp "$work/big.db" "$work/restored.db" || { echo "restore differs from the source" >&2; exit 1; }
stored=$(bin/walsync list -b s3://bench/w --endpoint "$ep" --json | awk -F': ' '/"size"/ { gsub(/[ ,]/, "", $2); print $2 }')

echo
echo "| figure | value |"
echo "|---|---|"
echo "| binary size (bin/walsync, stripped: -s -w -trimpath) | $(stat -c %s bin/walsync) bytes ($(awk -v b="$(stat -c %s bin/walsync)" 'BEGIN{printf "%.1f", b/1048576}') MiB) |"
echo "| database | $dbbytes bytes, snapshot object $stored bytes |"
echo "| snapshot: time, throughput, peak RSS | ${snap_s} s, $(mibs "$dbbytes" "$snap_s") MiB/s, $((snap_rss / 1024)) MiB |"
echo "| restore: time, throughput, peak RSS | ${rest_s} s, $(mibs "$dbbytes" "$rest_s") MiB/s, $((rest_rss / 1024)) MiB |"
echo "| raw PUT of the database file (AWS SDK defaults) | ${raw_put_s} s, $(mibs "$raw_put_n" "$raw_put_s") MiB/s |"
echo "| raw GET of the same object | ${raw_get_s} s, $(mibs "$raw_get_n" "$raw_get_s") MiB/s |"
echo "| snapshot / raw PUT | $(awk -v a="$raw_put_s" -v b="$snap_s" 'BEGIN{printf "%.2f", a/b}') |"
echo "| restore / raw GET | $(awk -v a="$raw_get_s" -v b="$rest_s" 'BEGIN{printf "%.2f", a/b}') |"
