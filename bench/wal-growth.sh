#!/usr/bin/env bash
# Figures for docs/BENCHMARKS.md, "A writer without pause": a tight loop of
# one-row commits (bench/tightwriter) for DURATION, first alone, then with
# `walsync watch` replicating the database to a file:// bucket; prints the
# commit rate and the largest WAL of each, and checks the restore against
# the checkpointed source.
#
#   bench/wal-growth.sh            # DURATION=8s
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-8s}
make -s build >/dev/null
go build -o bin/tightwriter ./bench/tightwriter
work=$(mktemp -d /var/tmp/walsync-walgrowth.XXXXXX)
trap 'pkill -INT -f "walsync watch $work" 2>/dev/null || true; rm -rf "$work"' EXIT

echo "alone:"
bin/tightwriter -db "$work/alone.db" -duration "$DURATION"

sqlite3 "$work/app.db" 'PRAGMA journal_mode=WAL; CREATE TABLE t (v BLOB);' >/dev/null
bin/walsync watch "$work/app.db" -b "file://$work/bucket" 2>"$work/watch.log" &
watch=$!
sleep 1
echo "with walsync watch:"
bin/tightwriter -db "$work/app.db" -duration "$DURATION"
kill -INT "$watch"
wait "$watch" || true
bin/walsync restore app -o "$work/restored.db" -b "file://$work/bucket" 2>&1 | tail -1
sqlite3 "$work/app.db" 'PRAGMA wal_checkpoint(TRUNCATE)' >/dev/null
if cmp -s "$work/restored.db" "$work/app.db"; then echo "restore: identical to the checkpointed source"; else echo "restore: DIFFERS"; exit 1; fi
