#!/usr/bin/env bash
# Descriptors, RSS and threads of one `walsync watch` following N idle
# databases, with --idle-close (IDLE_CLOSE, default 5s) and with 0 (every
# database's files kept open), side by side, on the file:// backend.
#
#   bench/idle-fds.sh                 # N = 100 1000
#   COUNTS="1000 5000" bench/idle-fds.sh
#   COUNTS=10000 CLOSES=5s bench/idle-fds.sh   # only with --idle-close
#
# Each run: N small WAL databases (one table, one row), walsync watch on
# all of them, wait until each has its first snapshot spooled (start_s:
# seconds from the start of walsync), then IDLE_CLOSE + 5 s idle, then
# /proc figures of the walsync process.
set -euo pipefail
cd "$(dirname "$0")/.."
COUNTS=${COUNTS:-100 1000}
IDLE_CLOSE=${IDLE_CLOSE:-5s}
CLOSES=${CLOSES:-$IDLE_CLOSE 0}
[[ -n ${WALSYNC_BIN:-} ]] || make -s build >/dev/null
bin=${WALSYNC_BIN:-bin/walsync}
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
work=$(mktemp -d /var/tmp/walsync-idle.XXXXXX)
trap 'pkill -P $$ 2>/dev/null || true; rm -rf "$work"' EXIT

printf '%-6s %-10s %10s %8s %10s %8s %12s\n' N idle-close start_s fds rss_MB threads fds_per_db
for n in $COUNTS; do
	for ic in $CLOSES; do
		dir=$work/n$n-$ic
		mkdir -p "$dir/dbs"
		python3 - "$dir/dbs" "$n" <<'EOF'
import sqlite3, sys
d, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    c = sqlite3.connect(f"{d}/db{i:05d}.db")
    c.execute("PRAGMA journal_mode=WAL")
    c.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)")
    c.execute("INSERT INTO t (v) VALUES (randomblob(100))")
    c.commit()
    c.close()
EOF
		"$bin" watch --dir "$dir/dbs" -b "file://$dir/bucket" --idle-close "$ic" 2>"$dir/log" &
		pid=$!
		began=$(date +%s.%N)
		for _ in $(seq 6000); do
			(($(grep -c 'snapshot spooled' "$dir/log" || true) >= n)) && break
			sleep 0.1
		done
		start=$(awk -v a="$began" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b-a}')
		secs=${IDLE_CLOSE%s}
		sleep $((secs + 5))
		fds=$(ls /proc/$pid/fd | wc -l)
		rss=$(awk '/VmRSS/ {printf "%.1f", $2/1024}' /proc/$pid/status)
		threads=$(awk '/Threads/ {print $2}' /proc/$pid/status)
		printf '%-6s %-10s %10s %8s %10s %8s %12s\n' "$n" "$ic" "$start" "$fds" "$rss" "$threads" "$(awk -v f="$fds" -v n="$n" 'BEGIN {printf "%.2f", f/n}')"
		kill -INT $pid
		wait $pid || true
		rm -rf "$dir"
	done
done
