#!/usr/bin/env bash
# Figures for docs/BENCHMARKS.md, "Restore throughput": `walsync restore`
# of a ~1 GiB database with ~1,000 WAL segments, beside the raw GET
# throughput of the same objects measured in the same run, against MinIO
# on loopback (scripts/minio.sh).
#
#   bench/restore.sh                                # 1024 MiB, 1,000 segments, --parallel 8
#   SIZE_MB=128 SEGMENTS=100 RUNS=1 bench/restore.sh
#   BASELINE=/path/to/other/walsync bench/restore.sh  # also time that binary's restore
#
# 1. A database of SIZE_MB MiB (rows of ~1 KiB: 400 random bytes + 600 hex
#    characters, 4096-byte pages), in WAL mode.
# 2. `walsync watch --sync-interval 0` replicates it (a snapshot starts the
#    generation) while a writer commits small transactions (one UPDATE of a
#    random row, one INSERT) spaced by SPACING_MS, until SEGMENTS segments
#    are stored; then SIGINT.
# 3. RUNS rounds, each: raw GET of every object of the name, one at a time
#    and PARALLEL at a time (bench/rawio getall: the AWS SDK's defaults,
#    bytes to /dev/null, nothing of walsync); `walsync restore --parallel
#    PARALLEL` and `--parallel 1` (and BASELINE's restore) under GNU time,
#    each output compared byte for byte with the source after
#    PRAGMA wal_checkpoint(TRUNCATE); and, to show what writing the output
#    costs on this machine, dd of as many bytes into a new file, through
#    the page cache and with O_DIRECT. The table shows the medians.
#    The CPU time of each raw GET (bench/rawio) and each restore, and
#    MinIO's CPU time meanwhile (/proc/PID/stat), show what share of the
#    machine each one needs: both share the same cores.
#
# Every write (restore, dd) starts SETTLE seconds after the last file was
# deleted: on the project's VM, memory freed a few seconds ago has been
# handed back to the host, and the first write into it costs the kernel
# ~2.4 s of CPU per GiB; memory freed just before is reused at no such
# cost. Without the pause, each write's cost would depend on the one
# before it.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MB=${SIZE_MB:-1024}
SEGMENTS=${SEGMENTS:-1000}
PARALLEL=${PARALLEL:-8}
RUNS=${RUNS:-3}
SPACING_MS=${SPACING_MS:-20}
SETTLE=${SETTLE:-6}
BASELINE=${BASELINE:-}

if [ -z "${WALSYNC_TEST_S3_ENDPOINT:-}" ]; then
	exec scripts/minio.sh run -- "$0" "$@"
fi

[ -x /usr/bin/time ] || { echo "bench needs GNU time (/usr/bin/time, Debian package 'time')" >&2; exit 1; }
command -v sqlite3 >/dev/null || { echo "bench needs the sqlite3 shell" >&2; exit 1; }
command -v python3 >/dev/null || { echo "bench needs python3 (the writer)" >&2; exit 1; }
make -s build >/dev/null
go build -o bin/rawio ./bench/rawio

work=$(mktemp -d /var/tmp/walsync-bench.XXXXXX)
watch_pid=
cleanup() {
	if [ -n "$watch_pid" ]; then kill "$watch_pid" 2>/dev/null || true; wait "$watch_pid" 2>/dev/null || true; fi
	rm -rf "$work"
}
trap cleanup EXIT
export AWS_ACCESS_KEY_ID=$WALSYNC_TEST_S3_ACCESS_KEY AWS_SECRET_ACCESS_KEY=$WALSYNC_TEST_S3_SECRET_KEY AWS_REGION=us-east-1
ep=$WALSYNC_TEST_S3_ENDPOINT
bucket=s3://bench/r
prefix=r/big/
bin/rawio -endpoint "$ep" -bucket bench mb
log() { echo "restore.sh: $*" >&2; }

rows=$((SIZE_MB * 1024))
log "creating a ${SIZE_MB} MiB database ($rows rows of ~1 KiB: 400 random bytes + 600 hex chars)"
sqlite3 "$work/big.db" "PRAGMA journal_mode=wal; CREATE TABLE t(id INTEGER PRIMARY KEY, b BLOB, s TEXT);
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < $rows)
INSERT INTO t SELECT x, randomblob(400), hex(randomblob(300)) FROM c; PRAGMA wal_checkpoint(TRUNCATE);" >/dev/null

# segments prints the number of WAL segments stored for big (snapshots with -s).
count() {
	bin/walsync list -b "$bucket" --endpoint "$ep" --json |
		python3 -c 'import json,sys; d=[x for x in json.load(sys.stdin) if x["name"]=="big"]; print(d[0][sys.argv[1]] if d else 0)' "$1"
}

log "walsync watch --sync-interval 0 (log: $work/watch.log)"
bin/walsync watch "$work/big.db" -b "$bucket" --endpoint "$ep" --sync-interval 0 2>"$work/watch.log" &
watch_pid=$!
for _ in $(seq 600); do
	[ "$(count snapshots)" -ge 1 ] && break
	kill -0 "$watch_pid" 2>/dev/null || { cat "$work/watch.log" >&2; exit 1; }
	sleep 0.5
done
[ "$(count snapshots)" -ge 1 ] || { echo "no snapshot after 300 s" >&2; exit 1; }

# The writer: n small transactions, SPACING_MS apart, so that each one is
# captured on its own (--sync-interval 0 ships every capture at once).
transactions() {
	python3 - "$work/big.db" "$1" "$rows" "$SPACING_MS" <<'EOF'
import random, sqlite3, sys, time
path, n, rows, spacing = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]) / 1000
db = sqlite3.connect(path, isolation_level=None, timeout=30)
for _ in range(n):
    db.execute("BEGIN IMMEDIATE")
    db.execute("UPDATE t SET b = randomblob(400) WHERE id = ?", (random.randint(1, rows),))
    db.execute("INSERT INTO t(b, s) VALUES (randomblob(400), hex(randomblob(300)))")
    db.execute("COMMIT")
    time.sleep(spacing)
db.close()
EOF
}
# settle waits until the number of segments stops growing and prints it.
settle() {
	local prev=-1 n
	n=$(count wal_segments)
	while [ "$n" != "$prev" ]; do
		sleep 2
		prev=$n
		n=$(count wal_segments)
	done
	echo "$n"
}
commits=0
segs=0
while [ "$segs" -lt "$SEGMENTS" ]; do
	want=$((SEGMENTS - segs))
	log "writing $want transactions ($segs segments stored)"
	transactions "$want"
	commits=$((commits + want))
	segs=$(settle)
done
kill -INT "$watch_pid"
wait "$watch_pid" || { echo "watch exited with $?" >&2; cat "$work/watch.log" >&2; exit 1; }
watch_pid=
segs=$(count wal_segments)
log "$commits transactions, $segs segments stored"
ck=$(sqlite3 "$work/big.db" "PRAGMA wal_checkpoint(TRUNCATE);")
case $ck in 0\|*) ;; *) echo "checkpoint of the source: $ck" >&2; exit 1 ;; esac
dbbytes=$(stat -c %s "$work/big.db")
sync

mibs() { awk -v b="$1" -v s="$2" 'BEGIN { printf "%.1f", b / s / 1048576 }'; }
median() { sort -g | awk '{ v[NR] = $0 } END { print v[int((NR + 1) / 2)] }'; }

# miniocpu prints MinIO's CPU time so far (user+sys, in clock ticks).
miniocpu() { awk '{ print $14 + $15 }' "/proc/$WALSYNC_TEST_MINIO_PID/stat"; }
ticks=$(getconf CLK_TCK)
# rawget LABEL PREFIX N: one raw GET of every object under PREFIX, N at a
# time; appends "seconds client_cpu_seconds minio_cpu_seconds" to
# $work/LABEL and prints "bytes objects".
rawget() {
	local out m0 m1
	m0=$(miniocpu)
	/usr/bin/time -f "%U %S" -o "$work/rawtime" bin/rawio -endpoint "$ep" -bucket bench getall "$2" -parallel "$3" >"$work/rawout"
	m1=$(miniocpu)
	out=$(cat "$work/rawout")
	echo "$out $(cat "$work/rawtime") $m0 $m1" | awk -v t="$ticks" '{ printf "%s %.2f %.2f\n", $3, $(NF-3) + $(NF-2), ($NF - $(NF-1)) / t }' >>"$work/$1"
	echo "$out" | awk '{ print $2, $5 }'
}
# restore LABEL BINARY ARGS...: one restore under GNU time, compared with
# the source; appends "seconds maxrss_kib cpu_seconds minio_cpu_seconds"
# to $work/LABEL.
restore() {
	local label=$1 bin=$2 m0 m1
	shift 2
	rm -f "$work/restored.db"
	sleep "$SETTLE"
	m0=$(miniocpu)
	/usr/bin/time -f "%e %M %U %S" -o "$work/time" "$bin" restore big -o "$work/restored.db" -b "$bucket" --endpoint "$ep" "$@" >/dev/null
	m1=$(miniocpu)
	cmp "$work/big.db" "$work/restored.db" || { echo "$label: the restore differs from the source" >&2; exit 1; }
	awk -v m="$(( m1 - m0 ))" -v t="$ticks" '{ printf "%s %s %.2f %.2f\n", $1, $2, $3 + $4, m / t }' "$work/time" >>"$work/$label"
	rm -f "$work/restored.db"
	sync
}
# ddwrite LABEL DD_FLAGS...: dd of the database's size into a new file.
ddwrite() {
	local label=$1
	shift
	sleep "$SETTLE"
	/usr/bin/time -f "%e %M %U %S" -o "$work/time" dd if=/dev/zero of="$work/dd.out" bs=1M count=$((dbbytes >> 20)) "$@" 2>/dev/null
	awk '{ printf "%s %s %.2f\n", $1, $2, $3 + $4 }' "$work/time" >>"$work/$label"
	rm -f "$work/dd.out"
	sync
}

read -r stored objects < <(rawget warm "$prefix" "$PARALLEL") # warm-up, not counted
read -r snapbytes _ < <(rawget warm "${prefix}snapshots/" 1)
read -r segbytes _ < <(rawget warm "${prefix}wal/" "$PARALLEL")
for run in $(seq "$RUNS"); do
	log "round $run of $RUNS"
	rawget rawseq "$prefix" 1 >/dev/null
	rawget rawpar "$prefix" "$PARALLEL" >/dev/null
	rawget rawsnap "${prefix}snapshots/" 1 >/dev/null
	rawget rawsegseq "${prefix}wal/" 1 >/dev/null
	rawget rawsegpar "${prefix}wal/" "$PARALLEL" >/dev/null
	ddwrite ddbuf conv=fsync
	ddwrite dddirect oflag=direct conv=fsync
	restore par bin/walsync --parallel "$PARALLEL"
	restore seq bin/walsync --parallel 1
	if [ -n "$BASELINE" ]; then restore base "$BASELINE"; fi
done

med() { awk -v c="$2" '{ print $c }' "$work/$1" | median; }
rawrow() { # label file bytes
	local s
	s=$(med "$2" 1)
	echo "| $1 | $s s | $(mibs "$3" "$s") MiB/s | $(med "$2" 2) s | $(med "$2" 3) s |"
}
restrow() { # label file
	local s rss cpu
	s=$(med "$2" 1)
	rss=$(med "$2" 2)
	cpu=$(med "$2" 3)
	echo "| $1 | $s s | $(mibs "$stored" "$s") MiB/s stored, $(mibs "$dbbytes" "$s") MiB/s of database | $((rss / 1024)) MiB | $cpu s | $(med "$2" 4) s |"
}
# cpurow LABEL FILE CLIENT_COLUMN MINIO_COLUMN: the CPU time of client and
# MinIO together, and the shortest time those would take on every core.
cpurow() {
	awk -v c="$(med "$2" "$3")" -v m="$(med "$2" "$4")" -v n="$(nproc)" \
		'BEGIN { printf "| %s | %.2f s | %.2f s |\n", "'"$1"'", c + m, (c + m) / n }'
}
ddrow() { # label file
	echo "| $1 | $(med "$2" 1) s | $(mibs "$dbbytes" "$(med "$2" 1)") MiB/s | $(med "$2" 3) s |"
}
ratio() { awk -v a="$(med "$1" 1)" -v b="$(med "$2" 1)" 'BEGIN { printf "%.2f", a / b }'; }

echo
echo "$(date -u +%Y-%m-%d): $SIZE_MB MiB database, $commits transactions, PARALLEL=$PARALLEL, medians of $RUNS rounds"
echo
echo "| objects | stored bytes | database |"
echo "|---|---|---|"
echo "| $objects (1 snapshot, $segs segments) | $stored (snapshot $snapbytes, segments $segbytes) | $dbbytes bytes |"
echo
echo "| raw GET (bench/rawio getall) | time | throughput | client CPU (user+sys) | MinIO CPU |"
echo "|---|---|---|---|---|"
rawrow "all objects, one at a time" rawseq "$stored"
rawrow "all objects, $PARALLEL at a time" rawpar "$stored"
rawrow "the snapshot alone" rawsnap "$snapbytes"
rawrow "the segments alone, one at a time" rawsegseq "$segbytes"
rawrow "the segments alone, $PARALLEL at a time" rawsegpar "$segbytes"
echo
echo "| writing $dbbytes bytes to a new file | time | throughput | CPU (user+sys) |"
echo "|---|---|---|---|"
ddrow "dd, through the page cache, then fsync" ddbuf
ddrow "dd, O_DIRECT" dddirect
echo
echo "| walsync restore | time | throughput | peak RSS | CPU (user+sys) | MinIO CPU |"
echo "|---|---|---|---|---|---|"
restrow "--parallel $PARALLEL" par
restrow "--parallel 1" seq
if [ -n "$BASELINE" ]; then restrow "baseline ($BASELINE)" base; fi
echo
echo "| CPU of client and MinIO together | CPU | that CPU spread over $(nproc) cores |"
echo "|---|---|---|"
cpurow "raw GET, $PARALLEL at a time" rawpar 2 3
cpurow "restore --parallel $PARALLEL" par 3 4
echo
echo "| ratio | value |"
echo "|---|---|"
echo "| restore --parallel $PARALLEL / raw GET $PARALLEL at a time | $(ratio rawpar par) |"
echo "| restore --parallel $PARALLEL / raw GET one at a time | $(ratio rawseq par) |"
echo "| restore --parallel 1 / raw GET one at a time | $(ratio rawseq seq) |"
if [ -n "$BASELINE" ]; then echo "| baseline restore / raw GET one at a time | $(ratio rawseq base) |"; fi
