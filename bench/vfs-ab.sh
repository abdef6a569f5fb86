#!/usr/bin/env bash
# Compares the VFS insert throughput of two commits (docs/BENCHMARKS.md,
# "The VFS"): builds bench/vfs and walsync at each in a worktree, then runs
# them alternately, RUNS times each, each run in a fresh MinIO
# (scripts/minio.sh), and prints each run's ratio lines. One run's ratio
# varies by about ±0.04 between runs of one build on these machines, so
# compare several runs per build, never one.
#
#   bench/vfs-ab.sh 7454cda HEAD            # 3 runs each, 16 rounds a run
#   RUNS=5 bench/vfs-ab.sh A B -rounds 8    # further flags go to bench/vfs
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 2 ]; then
	echo "usage: bench/vfs-ab.sh COMMIT-A COMMIT-B [bench/vfs flags]" >&2
	exit 2
fi
a=$1 b=$2
shift 2
flags=("$@")
[ ${#flags[@]} -gt 0 ] || flags=(-rounds 16 -commits 10000 -sync-commits 100 -lag-commits 2 -spacing 100ms)
work=$(mktemp -d "${TMPDIR:-/tmp}/walsync-vfs-ab.XXXXXX")
trap 'git worktree remove --force "$work/src" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
# build COMMIT: bench/vfs and walsync of COMMIT into $work/<sha>; prints that directory.
build() {
	local rev
	rev=$(git rev-parse --verify --quiet "$1^{commit}") || { echo "vfs-ab: $1 is not a commit" >&2; return 2; }
	if [ ! -x "$work/$rev/walsync" ]; then
		git worktree add --quiet --detach "$work/src" "$rev"
		(cd "$work/src" && go build -tags libsqlite3 -o "$work/$rev/bench-vfs" ./bench/vfs && go build -o "$work/$rev/walsync" ./cmd/walsync)
		git worktree remove --force "$work/src"
	fi
	echo "$work/$rev"
}
dir_a=$(build "$a")
dir_b=$(build "$b")
for i in $(seq 1 "${RUNS:-3}"); do
	for side in "$a:$dir_a" "$b:$dir_b"; do
		dir=${side#*:}
		echo "== ${side%%:*}, run $i"
		scripts/minio.sh run -- "$dir/bench-vfs" -walsync "$dir/walsync" "${flags[@]}" 2>&1 |
			grep -E 'median of|round-by-round' || { echo "vfs-ab: the run failed" >&2; exit 1; }
	done
done
