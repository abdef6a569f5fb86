"""walsync's Python package against a file:// bucket and a real MinIO."""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, List

import pytest

import walsync
from walsync import (
    ChecksumMismatch,
    ConfigError,
    NotFound,
    OutputExists,
    WalSync,
    WalSyncError,
)

MakeDB = Callable[..., sqlite3.Connection]

shared_sqlite = pytest.mark.skipif(
    not walsync.build_info()["sqlite_shared"],
    reason="this build carries its own SQLite: writing through Python's sqlite3 in the process "
    "that watches is unsafe (README, 'One SQLite per process'); the subprocess test covers watch",
)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def rows(path: Path) -> List[Any]:
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        return conn.execute("SELECT id, v FROM t ORDER BY id").fetchall()
    finally:
        conn.close()


def truncate_checkpoint(conn: sqlite3.Connection) -> None:
    busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    assert busy == 0, "checkpoint(TRUNCATE) was blocked"


def wait_captured(w: walsync.Watch, before: int, timeout: float = 20) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        n = w.stats().frames_captured
        if n > before:
            return n
        time.sleep(0.02)
    raise AssertionError(f"no frame captured within {timeout}s")


# --- the seed's example ----------------------------------------------------------


def test_seed_example(target: Any, tmp_path: Path, make_db: MakeDB) -> None:
    """snapshot, list, restore as the seed README shows them; the restore is
    byte-identical to the source after a TRUNCATE checkpoint."""
    ws: WalSync = target.ws
    src = tmp_path / "app.db"
    conn = make_db(src)

    snap = ws.snapshot(str(src))
    assert snap.name == "app"
    assert snap.key.startswith("app/snapshots/") and snap.key.endswith(".db.zst")
    assert snap.url == f"{ws.bucket.rstrip('/')}/{snap.key}" or snap.url.endswith("/" + snap.key)
    stored, recorded = target.read(snap.key)
    assert snap.size == len(stored)
    assert snap.sha256 == recorded == hashlib.sha256(stored).hexdigest()
    assert snap.db_size == snap.page_size * snap.page_count > 0
    assert snap.wal_frame > 0  # the rows were still in the WAL
    assert isinstance(snap.duration, timedelta)

    dbs = ws.list()
    assert [d.name for d in dbs] == ["app"]
    (db,) = dbs
    assert db.snapshots == 1 and db.wal_segments == 0 and db.latest_wal is None
    assert db.size == snap.size
    assert db.latest_snapshot is not None and db.latest_snapshot.tzinfo is not None
    assert abs(datetime.now(timezone.utc) - db.latest_snapshot) < timedelta(minutes=5)

    out = tmp_path / "restored.db"
    res = ws.restore("app", str(out))
    assert res.output == str(out) and res.snapshot_key == snap.key and res.segments == 0
    assert res.db_size == snap.db_size
    truncate_checkpoint(conn)
    assert sha(out) == sha(src)
    assert rows(out) == rows(src)


def test_paths_and_names(tmp_path: Path, make_db: MakeDB) -> None:
    """Path-like arguments, an explicit name, a relative file:// bucket pinned
    at construction."""
    src = tmp_path / "data.sqlite3"
    make_db(src, rows=10)
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        ws = WalSync("file://./backups")
    finally:
        os.chdir(cwd)
    assert ws.bucket == f"file://{tmp_path}/backups"
    assert ws.snapshot(src, name="tenants/romneys").name == "tenants/romneys"
    assert ws.snapshot(os.fsencode(src)).name == "data"
    assert [d.name for d in ws.list()] == ["data", "tenants/romneys"]
    ws.restore("tenants/romneys", tmp_path / "r.db")
    assert rows(tmp_path / "r.db") == rows(src)


def test_list_empty(target: Any) -> None:
    assert target.ws.list() == []


# --- watch ------------------------------------------------------------------------


@shared_sqlite
def test_watch_in_process(target: Any, tmp_path: Path, make_db: MakeDB) -> None:
    """Write through Python's sqlite3 while the watcher runs in this process
    (connections closed and reopened, a TRUNCATE checkpoint between), leave the
    block, restore: byte-identical."""
    ws: WalSync = target.ws
    src = tmp_path / "app.db"
    conn = make_db(src)
    with ws.watch([src], snapshot_interval=0) as w:
        assert w.running
        assert w.databases == {str(src): "app"}
        for i in range(100):
            conn.execute("INSERT INTO t(v) VALUES (?)", (f"a{i}",))
        conn.close()  # not the last connection: walsync's stay open
        assert os.path.exists(f"{src}-wal")
        conn = sqlite3.connect(src, isolation_level=None)
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO t(v) VALUES (?)", [(os.urandom(200).hex(),) for _ in range(300)])
        conn.execute("COMMIT")
        truncate_checkpoint(conn)
        conn.execute("UPDATE t SET v = 'changed' WHERE id % 7 = 0")
        conn.execute("DELETE FROM t WHERE id % 11 = 0")
    stats = w.stats()
    assert not w.running
    assert stats.frames_captured > 0 and stats.objects_uploaded > 0 and stats.upload_errors == 0

    out = tmp_path / "restored.db"
    res = ws.restore("app", out)
    assert res.segments > 0
    truncate_checkpoint(conn)
    conn.close()
    assert sha(out) == sha(src)
    assert (ws.list()[0].wal_segments, ws.list()[0].latest_wal is not None) == (res.segments, True)


def test_watch_writer_in_another_process(tmp_path: Path, make_db: MakeDB) -> None:
    """The watcher follows a database another process writes (any SQLite build)."""
    ws = WalSync(f"file://{tmp_path}/backups")
    src = tmp_path / "app.db"
    make_db(src).close()
    writer = textwrap.dedent(
        f"""
        import sqlite3
        c = sqlite3.connect({str(src)!r}, isolation_level=None)
        for i in range(200):
            c.execute("INSERT INTO t(v) VALUES (?)", (str(i) * 20,))
        c.close()
        """
    )
    with ws.watch(src, snapshot_interval=0):
        subprocess.run([sys.executable, "-c", writer], check=True)
    out = tmp_path / "restored.db"
    ws.restore("app", out)
    conn = sqlite3.connect(src)
    truncate_checkpoint(conn)
    conn.close()
    assert sha(out) == sha(src)


@shared_sqlite
def test_point_in_time(target: Any, tmp_path: Path, make_db: MakeDB) -> None:
    if not walsync.build_info()["point_in_time"]:
        pytest.skip("this build of walsync has no point-in-time restore")
    ws: WalSync = target.ws
    src = tmp_path / "app.db"
    conn = make_db(src, rows=5)
    before_any = datetime.now(timezone.utc) - timedelta(hours=1)
    with ws.watch([src], snapshot_interval=0) as w:
        # One transaction per batch: its capture is one step of frames_captured.
        n = w.stats().frames_captured
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO t(v) VALUES (?)", [(f"first {i}",) for i in range(20)])
        conn.execute("COMMIT")
        n = wait_captured(w, n)
        time.sleep(0.05)
        t1 = datetime.now(timezone.utc)
        first = rows(src)
        time.sleep(0.05)
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO t(v) VALUES (?)", [(f"second {i}",) for i in range(20)])
        conn.execute("COMMIT")
        wait_captured(w, n)

    out = tmp_path / "pit.db"
    res = ws.restore("app", out, point_in_time=t1)
    assert rows(out) == first
    assert res.state_time is not None and res.state_time <= t1
    # The same point as an ISO 8601 string, in another zone.
    iso = t1.astimezone(timezone(timedelta(hours=2))).isoformat()
    ws.restore("app", out, point_in_time=iso, force=True)
    assert rows(out) == first
    ws.restore("app", out, point_in_time=t1.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), force=True)
    assert rows(out) == first

    with pytest.raises(NotFound, match="before"):
        ws.restore("app", tmp_path / "early.db", point_in_time=before_any)
    assert not (tmp_path / "early.db").exists()
    with pytest.raises(ConfigError, match="no time zone"):
        ws.restore("app", tmp_path / "naive.db", point_in_time=datetime.now())
    with pytest.raises(ConfigError, match="no time zone"):
        ws.restore("app", tmp_path / "naive.db", point_in_time="2024-01-10T12:00:00")
    with pytest.raises(ConfigError, match="ISO 8601"):
        ws.restore("app", tmp_path / "bad.db", point_in_time="yesterday")

    latest = tmp_path / "latest.db"
    ws.restore("app", latest, point_in_time=None)
    truncate_checkpoint(conn)
    assert sha(latest) == sha(src)


def test_interpreter_exit_stops_the_watch(tmp_path: Path, make_db: MakeDB) -> None:
    """A watch still running when Python exits ships what it captured."""
    src = tmp_path / "app.db"
    make_db(src, rows=3).close()
    script = textwrap.dedent(
        f"""
        import sqlite3, walsync
        ws = walsync.WalSync("file://{tmp_path}/backups")
        ws.watch({str(src)!r}, snapshot_interval=0).start()
        c = sqlite3.connect({str(src)!r}, isolation_level=None)
        for i in range(50):
            c.execute("INSERT INTO t(v) VALUES (?)", (str(i),))
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    out = tmp_path / "out.db"
    WalSync(f"file://{tmp_path}/backups").restore("app", out)
    assert rows(out) == rows(src)


def test_watch_names_like_the_cli(tmp_path: Path, make_db: MakeDB) -> None:
    ws = WalSync(f"file://{tmp_path}/backups")
    a, b = tmp_path / "romneys" / "app.db", tmp_path / "smiths" / "app.db"
    for p in (a, b):
        p.parent.mkdir()
        make_db(p, rows=3).close()
    with ws.watch([a, b], snapshot_interval=0) as w:
        assert w.databases == {str(a): "romneys/app", str(b): "smiths/app"}
    assert [d.name for d in ws.list()] == ["romneys/app", "smiths/app"]
    with ws.watch(a, name="tenant-a", snapshot_interval=timedelta(hours=1)) as w:
        assert w.databases == {str(a): "tenant-a"}
    with pytest.raises(ConfigError, match="one database"):
        ws.watch([a, b], name="x").start()


def test_watch_start_errors(tmp_path: Path, make_db: MakeDB) -> None:
    ws = WalSync(f"file://{tmp_path}/backups")
    with pytest.raises(NotFound, match="no such file"):
        with ws.watch([tmp_path / "missing.db"]):
            pytest.fail("the block must not run")
    rollback = tmp_path / "rollback.db"
    sqlite3.connect(rollback).execute("CREATE TABLE t(x)").connection.close()
    with pytest.raises(WalSyncError, match="journal_mode=delete"):
        with ws.watch([rollback]):
            pytest.fail("the block must not run")
    for bad in (None, 42, [None]):
        with pytest.raises(TypeError):
            ws.watch(bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        ws.watch([])
    with pytest.raises(ConfigError, match="seconds >= 0"):
        ws.watch([rollback], snapshot_interval=-1)
    with pytest.raises(TypeError):
        ws.watch([rollback], snapshot_interval="1h")  # type: ignore[arg-type]


def test_watch_stop_error_is_raised(tmp_path: Path, make_db: MakeDB, caplog: pytest.LogCaptureFixture) -> None:
    """Objects that cannot be shipped before shutdown_timeout: the error
    reaches __exit__ (and does not hide the block's own exception)."""
    backups = tmp_path / "backups"
    ws = WalSync(f"file://{backups}")
    src = tmp_path / "app.db"
    conn = make_db(src, rows=3)

    def break_bucket(w: walsync.Watch, uploads: int) -> None:
        # Once the watch uploaded what it had (the snapshot that starts a
        # generation), nothing is in flight: the directory can be swapped
        # for a file.
        deadline = time.monotonic() + 20
        while w.stats().objects_uploaded < uploads:
            assert time.monotonic() < deadline, "the first snapshot was not uploaded"
            time.sleep(0.02)
        os.rename(backups, tmp_path / "moved")
        backups.write_text("not a directory")

    with pytest.raises(WalSyncError, match="not yet uploaded"):
        with ws.watch(src, snapshot_interval=0, shutdown_timeout=1) as w:
            break_bucket(w, 1)
            conn.execute("INSERT INTO t(v) VALUES ('lost?')")
    # The objects stay in the spool; the next watch ships them.
    backups.unlink()
    os.rename(tmp_path / "moved", backups)
    with ws.watch(src, snapshot_interval=0):
        pass
    ws.restore("app", tmp_path / "out.db")
    assert rows(tmp_path / "out.db") == rows(src)

    with pytest.raises(KeyError):
        with ws.watch(src, snapshot_interval=0, shutdown_timeout=1) as w:
            break_bucket(w, 0)  # the generation goes on: nothing to upload at start
            conn.execute("INSERT INTO t(v) VALUES ('again')")
            raise KeyError("the block's own error")
    assert any("not yet uploaded" in r.getMessage() for r in caplog.records if r.name == "walsync")


def test_watch_start_stop_without_with(tmp_path: Path, make_db: MakeDB) -> None:
    ws = WalSync(f"file://{tmp_path}/backups")
    src = tmp_path / "app.db"
    make_db(src, rows=3).close()
    w = ws.watch(src)
    assert not w.running
    assert w.start() is w
    with pytest.raises(WalSyncError, match="already running"):
        w.start()
    stats = w.stop()
    assert stats.objects_uploaded >= 1  # the snapshot that starts the generation
    assert w.stop() == stats  # stopping twice does nothing


# --- integrity --------------------------------------------------------------------


def test_corrupted_object_raises_checksum_mismatch(target: Any, tmp_path: Path, make_db: MakeDB) -> None:
    ws: WalSync = target.ws
    src = tmp_path / "app.db"
    make_db(src)
    snap = ws.snapshot(src)
    body, recorded = target.read(snap.key)
    flipped = bytearray(body)
    flipped[len(flipped) // 2] ^= 0x01
    target.overwrite_keeping_sha256(snap.key, bytes(flipped))
    assert target.read(snap.key)[1] == recorded

    out = tmp_path / "restored.db"
    with pytest.raises(ChecksumMismatch) as err:
        ws.restore("app", out)
    assert snap.key in str(err.value) and "checksum mismatch" in str(err.value)
    assert isinstance(err.value, walsync.IntegrityError) and isinstance(err.value, WalSyncError)
    assert err.value.kind == "checksum"
    assert not out.exists(), "a failed restore must leave the output path as it was"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".restored")] == []


# --- bad input --------------------------------------------------------------------


def test_bad_buckets() -> None:
    with pytest.raises(TypeError, match="bucket must be a str"):
        WalSync(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        WalSync(b"file:///tmp")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="unknown bucket scheme"):
        WalSync("ftp://host/dir")
    with pytest.raises(ConfigError, match="no scheme"):
        WalSync("my-bucket")
    with pytest.raises(ConfigError, match="must not carry credentials"):
        WalSync("s3://key:secret@bucket")
    with pytest.raises(ConfigError, match="endpoint goes in"):
        WalSync("s3://127.0.0.1:9000/bucket")
    with pytest.raises(ConfigError, match="empty"):
        WalSync("")
    with pytest.raises(ConfigError, match="NUL"):
        WalSync("file:///tmp/a\x00b")
    with pytest.raises(TypeError, match="endpoint"):
        WalSync("s3://b", endpoint=9000)  # type: ignore[arg-type]
    assert isinstance(ConfigError("x"), ValueError)


def test_bad_arguments(tmp_path: Path, make_db: MakeDB) -> None:
    ws = WalSync(f"file://{tmp_path}/backups")
    src = tmp_path / "app.db"
    make_db(src, rows=3)
    with pytest.raises(NotFound, match="no such file"):
        ws.snapshot(tmp_path / "missing.db")
    with pytest.raises(TypeError, match="path"):
        ws.snapshot(None)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="empty"):
        ws.snapshot("")
    with pytest.raises(ConfigError, match="invalid database name"):
        ws.snapshot(src, name="../escape")
    with pytest.raises(TypeError, match="name"):
        ws.snapshot(src, name=3)  # type: ignore[arg-type]
    not_sqlite = tmp_path / "notes.txt"
    not_sqlite.write_text("hello" * 100)
    with pytest.raises(WalSyncError, match="not a SQLite database"):
        ws.snapshot(not_sqlite)

    with pytest.raises(NotFound, match="does not exist"):
        ws.restore("app", tmp_path / "out.db")  # no backup directory at all
    (tmp_path / "backups").mkdir()
    with pytest.raises(NotFound, match="no snapshots"):
        ws.restore("app", tmp_path / "out.db")
    ws.snapshot(src)
    with pytest.raises(ConfigError, match="invalid database name"):
        ws.restore("/abs", tmp_path / "out.db")
    with pytest.raises(TypeError):
        ws.restore(None, tmp_path / "out.db")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        ws.restore("app", None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="force"):
        ws.restore("app", tmp_path / "out.db", force="yes")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="point_in_time"):
        ws.restore("app", tmp_path / "out.db", point_in_time=12)  # type: ignore[arg-type]
    with pytest.raises(WalSyncError, match="does not exist"):
        ws.restore("app", tmp_path / "no" / "dir" / "out.db")

    existing = tmp_path / "existing.db"
    existing.write_bytes(b"precious")
    with pytest.raises(OutputExists, match="force"):
        ws.restore("app", existing)
    assert existing.read_bytes() == b"precious"
    ws.restore("app", existing, force=True)
    assert rows(existing) == rows(src)


def test_null_pointers_are_errors() -> None:
    """The C functions refuse NULL instead of crashing."""
    from walsync import _native

    with pytest.raises(ConfigError, match="config is NULL"):
        _native.call("walsync_snapshot", None, None, None)
    with pytest.raises(ConfigError, match="NULL"):
        _native.call("walsync_restore", b'{"bucket":"file:///tmp/x"}', None, None, None)
    with pytest.raises(ConfigError, match="invalid JSON"):
        _native.call("walsync_list", b"{not json")
    with pytest.raises(ConfigError, match="no running watcher"):
        _native.call("walsync_watch_stop", 123456789)


def test_s3_errors(s3: Any, s3_bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = WalSync(f"s3://{s3_bucket}-missing", endpoint=s3.endpoint)
    with pytest.raises(NotFound, match="does not exist"):
        missing.list()

    ws = WalSync(f"s3://{s3_bucket}", endpoint=s3.endpoint)
    assert ws.list() == []
    wrong = "wrong-" + s3.secret_key[::-1]
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", wrong)  # seen although set after import
    with pytest.raises(ConfigError, match="access denied") as err:
        ws.list()
    assert wrong not in str(err.value) and s3.secret_key not in str(err.value)
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    with pytest.raises(ConfigError, match="credentials"):
        ws.list()


def _checkpointed_sha(src: Path) -> str:
    """The source's bytes after wal_checkpoint(TRUNCATE), through a plain
    connection (not the VFS): the independent truth."""
    plain = sqlite3.connect(src, isolation_level=None)
    busy, _, _ = plain.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    plain.close()
    assert busy == 0
    return sha(src)


def test_register_stdlib_sqlite3(target: Any, tmp_path: Path) -> None:
    """register() makes Python's own sqlite3 replicate through ?vfs=walsync;
    closing the connection ships everything; the restore is byte-exact."""
    if not walsync.build_info()["sqlite_shared"]:
        with pytest.raises(WalSyncError, match="cannot be added to Python's SQLite"):
            walsync.register(target.ws.bucket)
        return
    ws: WalSync = target.ws
    walsync.register(ws.bucket, endpoint=ws.endpoint)
    src = tmp_path / "app.db"
    con = sqlite3.connect(f"file:{src}?vfs=walsync", uri=True, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    for _ in range(20):
        con.execute("BEGIN")
        con.executemany("INSERT INTO t(v) VALUES (?)", [(os.urandom(64).hex(),) for _ in range(25)])
        con.execute("COMMIT")
    con.execute("DELETE FROM t WHERE id % 3 = 0")
    con.close()
    want = _checkpointed_sha(src)
    out = tmp_path / "restored.db"
    ws.restore("app", str(out))
    assert sha(out) == want
    assert rows(out) == rows(src)


def test_register_sync_commit_is_durable(tmp_path: Path) -> None:
    """walsync_sync=1: every commit that returned is in a restore made right
    after it, with the connection still open."""
    if not walsync.build_info()["sqlite_shared"]:
        pytest.skip("needs a walsync library sharing Python's SQLite")
    root = tmp_path / "backups"
    ws = WalSync(f"file://{root}")
    walsync.register()  # the URI names the bucket
    src = tmp_path / "app.db"
    plain = sqlite3.connect(src)
    plain.execute("PRAGMA journal_mode=WAL")
    plain.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    plain.close()
    con = sqlite3.connect(f"file:{src}?vfs=walsync&walsync_sync=1&walsync_bucket=file://{root}", uri=True,
                          isolation_level=None)
    for i in range(1, 4):
        con.execute("INSERT INTO t(v) VALUES (?)", (f"row {i}",))
        out = tmp_path / f"r{i}.db"
        ws.restore("app", str(out))
        assert len(rows(out)) == i
    con.close()


def test_register_bad_arguments() -> None:
    if not walsync.build_info()["sqlite_shared"]:
        pytest.skip("needs a walsync library sharing Python's SQLite")
    with pytest.raises(ConfigError):
        walsync.register("ftp://nowhere")
    with pytest.raises(ConfigError):
        walsync.register(sync_timeout=0)
    with pytest.raises(TypeError):
        walsync.register(sync_interval="1s")  # type: ignore[arg-type]


def test_forked_child_is_refused(tmp_path: Path) -> None:
    if not hasattr(os, "fork"):
        pytest.skip("no fork on this platform")
    script = textwrap.dedent(
        f"""
        import os, walsync
        ws = walsync.WalSync("file://{tmp_path}")
        pid = os.fork()
        if pid == 0:
            try:
                ws.list()
            except walsync.WalSyncError as e:
                os._exit(0 if "fork" in str(e) else 2)
            os._exit(1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, status
        assert ws.list() == []
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)


def test_build_info_and_logging(tmp_path: Path, make_db: MakeDB, caplog: pytest.LogCaptureFixture) -> None:
    info = walsync.build_info()
    assert info["version"] == walsync.__version__
    assert info["sqlite"] in ("system", "bundled")
    if info["sqlite"] == "system":
        assert info["sqlite_shared"], "a system-SQLite build must share Python's SQLite"
        assert info["sqlite_version"] == sqlite3.sqlite_version
    src = tmp_path / "app.db"
    make_db(src, rows=3).close()
    ws = WalSync(f"file://{tmp_path}/backups")
    caplog.set_level("INFO", logger="walsync")
    with ws.watch(src, snapshot_interval=0):
        pass
    messages = [r.getMessage() for r in caplog.records if r.name == "walsync"]
    assert any(m.startswith("watching databases=1") for m in messages), messages


def _needs_shared_sqlite() -> None:
    if not walsync.build_info()["sqlite_shared"]:
        pytest.skip("needs a walsync library sharing Python's SQLite")


def test_register_switches_to_wal(tmp_path: Path) -> None:
    """A database in rollback-journal mode opened through the VFS is put in
    WAL mode and replicated; leaving WAL mode is refused with a message."""
    _needs_shared_sqlite()
    root = tmp_path / "backups"
    ws = WalSync(f"file://{root}")
    walsync.register(f"file://{root}")
    src = tmp_path / "app.db"
    plain = sqlite3.connect(src)
    plain.execute("PRAGMA journal_mode=DELETE")
    plain.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    plain.execute("INSERT INTO t(v) VALUES ('before')")
    plain.commit()
    plain.close()
    con = sqlite3.connect(f"file:{src}?vfs=walsync", uri=True, isolation_level=None)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.execute("INSERT INTO t(v) VALUES ('after')")
    with pytest.raises(sqlite3.OperationalError, match="journal_mode=DELETE"):
        con.execute("PRAGMA journal_mode=DELETE")
    con.close()
    want = _checkpointed_sha(src)
    out = tmp_path / "restored.db"
    ws.restore("app", str(out))
    assert sha(out) == want


def test_vfs_status_and_flush(tmp_path: Path) -> None:
    """flush() makes an async commit durable at once; vfs_status() says so."""
    _needs_shared_sqlite()
    root = tmp_path / "backups"
    ws = WalSync(f"file://{root}")
    walsync.register(f"file://{root}", sync_interval=3600)
    try:
        src = tmp_path / "app.db"
        con = sqlite3.connect(f"file:{src}?vfs=walsync", uri=True, isolation_level=None)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
        con.execute("INSERT INTO t(v) VALUES ('x')")
        st = walsync.flush(con, timeout=20)
        assert st["replicating"] and st["wal"] and st["pending_objects"] == 0 and st["lag_seconds"] == 0
        out = tmp_path / "r.db"
        ws.restore("app", str(out))
        assert len(rows(out)) == 1
        st = walsync.vfs_status(con)
        assert st["name"] == "app" and st["last_durable"]
        con.close()
        plain = sqlite3.connect(tmp_path / "plain.db")
        with pytest.raises(WalSyncError, match="not open through the walsync VFS"):
            walsync.vfs_status(plain)
        plain.close()
    finally:
        walsync.register()


def test_sync_commit_fails_when_bucket_unreachable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """walsync_sync=1 with a bucket nobody answers for: the database opens,
    the commit raises (never succeeds), the row is committed locally, and
    the reason reaches the ``walsync`` logger (not stderr)."""
    _needs_shared_sqlite()
    caplog.set_level(logging.WARNING, logger="walsync")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "walsync-test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "walsync-test-secret")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    import socket

    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    walsync.register(close_timeout=1)
    try:
        src = tmp_path / "app.db"
        plain = sqlite3.connect(src)
        plain.execute("PRAGMA journal_mode=WAL")
        plain.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
        plain.close()
        con = sqlite3.connect(
            f"file:{src}?vfs=walsync&walsync_bucket=s3://nowhere/p&walsync_endpoint=http://127.0.0.1:{port}"
            "&walsync_sync=1&walsync_sync_timeout=1",
            uri=True, isolation_level=None)
        with pytest.raises(sqlite3.OperationalError, match="disk I/O error"):
            con.execute("INSERT INTO t(v) VALUES ('not durable')")
        assert con.execute("SELECT count(*) FROM t").fetchone()[0] == 1  # committed locally
        st = walsync.vfs_status(con)
        assert not st["replicating"] and st["last_error"]
        deadline = time.time() + 10
        while not any("commit failed" in r.getMessage() for r in caplog.records) and time.time() < deadline:
            time.sleep(0.05)
        failed = [r for r in caplog.records if "commit failed" in r.getMessage()]
        assert failed and failed[0].levelno == logging.ERROR and failed[0].name == "walsync"
        con.close()
    finally:
        walsync.register()
