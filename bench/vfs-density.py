#!/usr/bin/env python3
"""RSS of one Python process that opens N small WAL databases through
walsync.register() (the VFS, bucket file://) beside the same without
walsync, in the same run (docs/BENCHMARKS.md, "The VFS: many databases in
one process"). Needs the walsync package installed (make pytest installs
it into ~/.cache/walsync-tools/venv):

    ~/.cache/walsync-tools/venv/bin/python bench/vfs-density.py 1 100 1000
"""
import os
import sqlite3
import subprocess
import sys
import tempfile
import time


def status():
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "Threads"):
                out[k] = int(v.split()[0])
    out["fds"] = len(os.listdir("/proc/self/fd"))
    return out


def child(mode, n, settle):
    d = tempfile.mkdtemp(prefix="vfs-density-")
    uri_extra = ""
    if mode == "walsync":
        import walsync

        walsync.register("file://" + os.path.join(d, "bucket"))
        os.makedirs(os.path.join(d, "bucket"), exist_ok=True)
        uri_extra = "&vfs=walsync"
    cons = []
    start = time.time()
    for i in range(n):
        p = os.path.join(d, "t%05d.db" % i)
        con = sqlite3.connect("file:%s?mode=rwc%s" % (p, uri_extra), uri=True, isolation_level=None)
        con.execute("PRAGMA journal_mode=wal")
        con.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        con.execute("INSERT INTO t (v) VALUES ('tenant row')")
        cons.append(con)
    opened = time.time() - start
    time.sleep(settle)
    s = status()
    print("%s %d %d %d %d %.2f" % (mode, n, s["VmRSS"], s["Threads"], s["fds"], opened), flush=True)
    for con in cons:
        con.close()


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
        return
    counts = [int(a) for a in sys.argv[1:]] or [1, 100, 1000]
    settle = float(os.environ.get("SETTLE", "15"))
    print("%-8s %6s %10s %8s %6s %8s" % ("mode", "N", "RSS KB", "threads", "fds", "open s"))
    for n in counts:
        rows = {}
        for mode in ("plain", "walsync"):
            out = subprocess.run([sys.executable, __file__, "--child", mode, str(n), str(settle)],
                                 check=True, capture_output=True, text=True).stdout.split()
            rows[mode] = out
            print("%-8s %6s %10s %8s %6s %8s" % tuple(out))
        p, w = rows["plain"], rows["walsync"]
        print("  N=%d: walsync less plain: RSS %.0f KB per database, threads %+d, fds %.1f per database"
              % (n, (int(w[2]) - int(p[2])) / n, int(w[3]) - int(p[3]), (int(w[4]) - int(p[4])) / n))


if __name__ == "__main__":
    main()
