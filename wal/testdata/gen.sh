#!/bin/sh
# Regenerates the SQLite-written fixtures in this directory with the sqlite3
# shell (tested with 3.40.1). Each case directory holds "wal" (the -wal file
# copied while the writing connection was still open, so it was never
# checkpointed away) and, for the small page sizes, "db" (the database file
# copied at the same moment). Salts are random, so the bytes change on every
# run but the expectations in fixtures_test.go do not.
#
# Crafted fixtures (bigendian-512, empty) are written by
#   go test ./wal -run TestCraftedFixtures -update
set -eu
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# gen CASE: runs the SQL on stdin against a fresh database; the SQL copies
# the files with: .shell cp t.db-wal OUT/wal; cp t.db OUT/db
gen() {
	rm -rf "$1" "$tmp"/*
	mkdir -p "$1"
	out=$(pwd)/$1
	(cd "$tmp" && sed "s|OUT|$out|g" | sqlite3 -bail t.db >/dev/null)
}

# Five transactions, the third spanning several frames.
gen commits-1024 <<'SQL'
PRAGMA page_size=1024;
PRAGMA journal_mode=WAL;
PRAGMA wal_autocheckpoint=0;
CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
INSERT INTO t(v) VALUES('one');
INSERT INTO t(v) SELECT printf('%.*c', 300, 'x') FROM generate_series(1,8);
UPDATE t SET v='two' WHERE id=1;
INSERT INTO t(v) VALUES('three');
.shell cp t.db-wal OUT/wal; cp t.db OUT/db
SQL

# Same as commits-1024 but a last transaction of several frames whose commit
# frame is torn: the file ends in the middle of the last frame.
gen torn-1024 <<'SQL'
PRAGMA page_size=1024;
PRAGMA journal_mode=WAL;
PRAGMA wal_autocheckpoint=0;
CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
INSERT INTO t(v) VALUES('one');
INSERT INTO t(v) SELECT printf('%.*c', 300, 'x') FROM generate_series(1,8);
.shell cp t.db-wal OUT/wal; cp t.db OUT/db
SQL
size=$(wc -c < torn-1024/wal)
head -c $((size - 500)) torn-1024/wal > "$tmp/torn" && mv "$tmp/torn" torn-1024/wal

# A table and an index, then three transactions.
gen commits-4096 <<'SQL'
PRAGMA page_size=4096;
PRAGMA journal_mode=WAL;
PRAGMA wal_autocheckpoint=0;
CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
CREATE INDEX t_v ON t(v);
INSERT INTO t(v) VALUES('a'),('b');
INSERT INTO t(v) VALUES('c');
DELETE FROM t WHERE v='a';
.shell cp t.db-wal OUT/wal; cp t.db OUT/db
SQL

# Committed transactions followed by frames spilled from the page cache by a
# transaction still in progress when the WAL was copied.
gen uncommitted-1024 <<'SQL'
PRAGMA page_size=1024;
PRAGMA journal_mode=WAL;
PRAGMA wal_autocheckpoint=0;
PRAGMA cache_size=10;
CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
INSERT INTO t(v) VALUES('one');
INSERT INTO t(v) VALUES('two');
BEGIN;
INSERT INTO t(v) SELECT printf('%.*c', 500, 'y') FROM generate_series(1,30);
.shell cp t.db-wal OUT/wal; cp t.db OUT/db
ROLLBACK;
SQL

# A WAL reset by a checkpoint and then rewritten from the start: one new
# commit frame followed by stale frames carrying the previous salts.
gen restarted-1024 <<'SQL'
PRAGMA page_size=1024;
PRAGMA journal_mode=WAL;
PRAGMA wal_autocheckpoint=0;
CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
INSERT INTO t(v) SELECT printf('%.*c', 300, 'z') FROM generate_series(1,20);
PRAGMA wal_checkpoint;
INSERT INTO t(v) VALUES('after restart');
.shell cp t.db-wal OUT/wal; cp t.db OUT/db
SQL

# The largest page size: one transaction of two frames (no db copy, to keep
# the fixtures small).
gen pagesize-65536 <<'SQL'
PRAGMA page_size=65536;
PRAGMA journal_mode=WAL;
PRAGMA wal_autocheckpoint=0;
CREATE TABLE t(x);
.shell cp t.db-wal OUT/wal
SQL

ls -l */
