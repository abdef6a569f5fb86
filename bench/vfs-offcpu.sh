#!/usr/bin/env bash
# Where the committing thread of bench/vfs spends its time off a CPU,
# round by round, under both VFSes (docs/BENCHMARKS.md, "The VFS"): runs
# bench/vfs -detail under `perf record -a -k mono -e sched:sched_switch -g`
# (every context switch on the machine, with its kernel and user stack),
# then pairs each switch-out of the committing thread with its next
# switch-in, inside the round's first and last commit, and sums the gaps
# by reason: fsync/fdatasync, a futex (Go's scheduler or locks), preempted
# (runnable, waiting for a CPU), a page fault, any other wait.
#
#   bench/vfs-offcpu.sh                       # 8 rounds of 10,000 commits
#   bench/vfs-offcpu.sh -rounds 16            # further flags go to bench/vfs
#
# Needs perf (Debian's linux-perf) and root or kernel.perf_event_paranoid
# at most 1 for tracepoints on all CPUs. Prints the per-round table, each
# VFS's mean per round, and the user stacks of the longest futex waits.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v perf >/dev/null || { echo "vfs-offcpu: perf is not installed (apt-get install linux-perf)" >&2; exit 2; }
flags=("$@")
[ ${#flags[@]} -gt 0 ] || flags=(-rounds 8 -commits 10000)
work=$(mktemp -d "${TMPDIR:-/tmp}/walsync-vfs-offcpu.XXXXXX")
trap 'rm -rf "$work"' EXIT
go build -tags libsqlite3 -o "$work/bench-vfs" ./bench/vfs
go build -o "$work/walsync" ./cmd/walsync
scripts/minio.sh run -- perf record -q -a -k mono -m 256M -e sched:sched_switch -g -o "$work/perf.data" \
	"$work/bench-vfs" -walsync "$work/walsync" -detail -sync-commits 2 -lag-commits 1 -spacing 10ms "${flags[@]}" \
	>"$work/bench.txt" 2>&1 || { tail -20 "$work/bench.txt" >&2; exit 1; }
grep -E '^\| median|round-by-round' "$work/bench.txt"
perf script -i "$work/perf.data" -F tid,time,event,trace,ip,sym 2>/dev/null >"$work/perf.txt"
python3 - "$work/perf.txt" "$work/bench.txt" <<'EOF'
import collections, re, sys

rounds = []  # (tid, start, end, vfs)
for line in open(sys.argv[2]):
    m = re.search(r'round (\w+) .* thread (\d+), ([\d.]+)-([\d.]+) s$', line)
    if m:
        rounds.append((int(m[2]), float(m[3]), float(m[4]), m[1]))
tids = {r[0] for r in rounds}

# Switches into or out of a committing thread: [time, prev, state, next, stack].
events, cur = [], None
for line in open(sys.argv[1]):
    if 'sched:sched_switch' in line:
        m = re.search(r'(\d+\.\d+): sched', line)
        prev = int(re.search(r'prev_pid=(\d+)', line)[1])
        nxt = int(re.search(r'next_pid=(\d+)', line)[1])
        cur = None
        if prev in tids or nxt in tids:
            cur = [float(m[1]), prev, re.search(r'prev_state=(\S+)', line)[1], nxt, []]
            events.append(cur)
    elif cur is not None and line.strip():
        parts = line.split()
        if len(parts) >= 2:
            cur[4].append(parts[1].split('+')[0])

def reason(state, stack):
    if state.startswith('R'):
        return 'preempted'
    s = ' '.join(stack)
    if 'fsync' in s or 'fdatasync' in s:
        return 'fsync'
    if 'futex' in s:
        return 'futex'
    if 'exc_page_fault' in s:
        return 'page fault'
    return 'other'

kinds = ['fsync', 'futex', 'preempted', 'page fault', 'other']
kernel = re.compile(r'^(0x)?[0-9a-f]+$|^(__|schedule|do_|asm_|entry_|x64_|ret_|syscall|futex|io_|exc_|handle_|rwsem|down_|folio|filemap|ext4|jbd2|vfs_|ksys|irqentry|exit_to|arch_|\[unknown\])')
total = {v: collections.Counter() for v in ('default', 'walsync')}
stacks = {v: collections.Counter() for v in ('default', 'walsync')}
n = collections.Counter()
print('\n| round | VFS | wall ms | ' + ' | '.join(k + ' ms' for k in kinds) + ' |')
print('|---|---|---|' + '---|' * len(kinds))
for i, (tid, a, b, vfs) in enumerate(rounds, 1):
    got, out = collections.Counter(), None
    for e in events:
        if e[0] < a or e[0] > b:
            continue
        if e[1] == tid:
            out = e
        elif e[3] == tid and out is not None:
            k = reason(out[2], out[4])
            got[k] += e[0] - out[0]
            if k == 'futex':
                user = [f for f in out[4] if not kernel.match(f)]
                stacks[vfs][' < '.join(user[:6])] += e[0] - out[0]
            out = None
    n[vfs] += 1
    total[vfs].update(got)
    print(f'| {i} | {vfs} | {(b - a) * 1000:.0f} | ' + ' | '.join(f'{got[k] * 1000:.1f}' for k in kinds) + ' |')
print('\n| mean per round | ' + ' | '.join(kinds) + ' |')
print('|---|' + '---|' * len(kinds))
for vfs in total:
    if n[vfs]:
        print(f'| {vfs} | ' + ' | '.join(f'{total[vfs][k] * 1000 / n[vfs]:.1f} ms' for k in kinds) + ' |')
for vfs in stacks:
    print(f'\nlongest futex waits, {vfs}, ms per round:')
    for s, t in stacks[vfs].most_common(5):
        print(f'  {t * 1000 / max(n[vfs], 1):6.2f}  {s}')
EOF
