"""WalSync, Watch and the result types: conversions around the Go library."""

from __future__ import annotations

import atexit
import json
import os
import re
import threading
import warnings
import weakref
from dataclasses import dataclass, fields
from datetime import datetime, timedelta, timezone
from types import TracebackType
from typing import Any, Dict, Iterable, List, Mapping, Optional, Type, TypeVar, Union

from . import _native
from ._errors import ConfigError, WalSyncError

__all__ = ["WalSync", "Watch", "Snapshot", "Database", "RestoreResult", "WatchStats", "SeparateSQLiteWarning"]

PathArg = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]
Seconds = Union[int, float, timedelta]

_T = TypeVar("_T")


# --- conversions ---------------------------------------------------------


def _text(value: object, what: str, *, empty_ok: bool = False) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, not {type(value).__name__}")
    if "\x00" in value:
        raise ConfigError(f"{what} {value!r} contains a NUL character")
    if not value and not empty_ok:
        raise ConfigError(f"{what} is empty")
    return value


def _path(value: object, what: str) -> bytes:
    """A path argument as the bytes the OS sees (os.fsencode)."""
    if not isinstance(value, (str, bytes, os.PathLike)):
        raise TypeError(f"{what} must be a path (str, bytes or os.PathLike), not {type(value).__name__}")
    raw = os.fsencode(value)
    if not raw:
        raise ConfigError(f"{what} is empty")
    if b"\x00" in raw:
        raise ConfigError(f"{what} {value!r} contains a NUL character")
    return raw


def _path_str(value: object, what: str) -> str:
    """A path argument for a JSON document."""
    raw = _path(value, what)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{what} {value!r} is not valid UTF-8; walsync needs UTF-8 paths here") from None


def _seconds(value: object, what: str, *, allow_none: bool = False) -> Optional[float]:
    if value is None and allow_none:
        return None
    if isinstance(value, timedelta):
        secs = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        secs = float(value)
    else:
        raise TypeError(f"{what} must be seconds (int or float) or a timedelta, not {type(value).__name__}")
    if not secs >= 0 or secs == float("inf"):
        raise ConfigError(f"{what} {value!r}: want seconds >= 0")
    return secs


_RFC3339 = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:?\d{2})$"
)


def _parse_time(value: Optional[str]) -> Optional[datetime]:
    """An RFC 3339 time from the library (any number of fraction digits, Z) as
    an aware datetime in UTC."""
    if value is None:
        return None
    m = _RFC3339.match(value)
    if not m:
        raise WalSyncError(f"the library returned an unreadable time {value!r}")
    frac = (m.group(3) or "")[:6].ljust(6, "0")
    tz = m.group(4)
    tz = "+00:00" if tz in ("Z", "z") else (tz if ":" in tz else tz[:3] + ":" + tz[3:])
    return datetime.fromisoformat(f"{m.group(1)}T{m.group(2)}.{frac}{tz}").astimezone(timezone.utc)


def _point_in_time(value: object) -> Optional[str]:
    """point_in_time as the RFC 3339 UTC time the library takes."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        iso = text[:-1] + "+00:00" if text[-1:] in ("Z", "z") else text
        try:
            dt = datetime.fromisoformat(iso)
        except ValueError:
            raise ConfigError(
                f"point_in_time {value!r} is not an ISO 8601 time such as 2024-01-10T12:00:00Z"
            ) from None
        what = f"point_in_time {value!r}"
    elif isinstance(value, datetime):
        dt = value
        what = f"point_in_time {value.isoformat()}"
    else:
        raise TypeError(f"point_in_time must be a datetime or an ISO 8601 str, not {type(value).__name__}")
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ConfigError(
            f"{what} has no time zone: give one (2024-01-10T12:00:00Z, "
            "datetime.now(timezone.utc), dt.astimezone()); walsync does not guess"
        )
    utc = dt.astimezone(timezone.utc)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _from_dict(cls: Type[_T], data: Mapping[str, Any], **conv: Any) -> _T:
    kwargs: Dict[str, Any] = {}
    for f in fields(cls):  # type: ignore[arg-type]
        if not f.init:
            continue
        v = data.get(f.name)
        if f.name in conv:
            v = conv[f.name](v)
        kwargs[f.name] = v
    return cls(**kwargs)


def _duration(v: Any) -> timedelta:
    return timedelta(seconds=float(v or 0))


class SeparateSQLiteWarning(RuntimeWarning):
    """This walsync library carries its own SQLite, not the one of Python's
    sqlite3 module (README.md, "One SQLite per process")."""


_warned = False


def _warn_if_separate_sqlite() -> None:
    """Warn once when the library's SQLite is not Python's: two copies of
    SQLite in one process do not see each other's POSIX locks, so writing to
    a database through Python's sqlite3 while walsync reads it in this same
    process is unsafe."""
    global _warned
    if _warned:
        return
    _warned = True
    if not _native.build_info().get("sqlite_shared", False):
        warnings.warn(
            "this walsync library carries its own SQLite, not the one Python's sqlite3 module uses: "
            "while it snapshots or watches a database, do not write to that database through Python's "
            "sqlite3 in this process (two SQLite copies in one process do not see each other's locks; "
            "committed transactions can be lost). Write from another process, or reinstall walsync "
            "with WALSYNC_SQLITE=system (see its README, 'One SQLite per process').",
            SeparateSQLiteWarning,
            stacklevel=3,
        )


# --- results -------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    """A snapshot that was stored (``WalSync.snapshot``)."""

    name: str
    """The database's name in the bucket."""
    key: str
    """The object's key, relative to the bucket URL: ``app/snapshots/20240110120000.db.zst``."""
    url: str
    """The bucket URL and the key."""
    size: int
    """Bytes of the stored (compressed) object."""
    sha256: str
    """Hex SHA-256 of the stored object, as recorded beside it (x-amz-meta-sha256)."""
    db_size: int
    """Bytes of database content in the snapshot."""
    page_size: int
    page_count: int
    generation: str
    """The generation the snapshot starts (hex)."""
    wal_frame: int
    """The last WAL frame included, 0 when none."""
    duration: timedelta


@dataclass(frozen=True)
class Database:
    """One database name in a bucket (``WalSync.list``); the fields of
    ``walsync list --json``."""

    name: str
    snapshots: int
    """Number of snapshots stored."""
    latest_snapshot: Optional[datetime]
    """Time of the newest snapshot (UTC), None when there is none."""
    latest_wal: Optional[datetime]
    """Time of the newest WAL segment (UTC), None when there is none."""
    wal_segments: int
    """Number of WAL segments stored."""
    size: int
    """Bytes stored for the name, all objects together."""


@dataclass(frozen=True)
class RestoreResult:
    """A finished restore (``WalSync.restore``)."""

    name: str
    output: str
    """The absolute path written."""
    snapshot_key: str
    """The snapshot the restore started from."""
    generation: str
    db_size: int
    """Bytes of the restored database."""
    segments: int
    """WAL segments applied after the snapshot."""
    last_seq: int
    """Number of the last segment applied (meaningful when segments > 0)."""
    state_time: Optional[datetime]
    """When the restored state was captured (UTC): the last segment's or the snapshot's capture time."""
    duration: timedelta


@dataclass(frozen=True)
class WatchStats:
    """The counters of a watcher."""

    frames_captured: int = 0
    objects_uploaded: int = 0
    bytes_uploaded: int = 0
    upload_errors: int = 0


# --- the client ----------------------------------------------------------


class WalSync:
    """A bucket that databases are replicated to and restored from.

    ``bucket`` is ``s3://bucket[/prefix]`` or ``file:///abs/path``
    (``file://./dir`` is relative to the working directory at construction).
    For S3, credentials, region and endpoint come from the environment as the
    AWS CLI reads them (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
    ``AWS_SESSION_TOKEN``, ``AWS_REGION``, ``AWS_ENDPOINT_URL_S3``,
    ``AWS_PROFILE``...), read from ``os.environ`` at each call; ``endpoint``
    and ``region`` win over it.

    Construction checks the URL (``ConfigError`` for a bad one) but makes no
    request. Methods block until done; they release the GIL, and may be
    called from several threads at once.
    """

    def __init__(self, bucket: str, endpoint: Optional[str] = None, region: Optional[str] = None) -> None:
        self._given = _text(bucket, "bucket")
        self.endpoint: Optional[str] = None if endpoint is None else _text(endpoint, "endpoint")
        self.region: Optional[str] = None if region is None else _text(region, "region")
        checked = _native.call("walsync_check", self._config(self._given))
        resolved = str(checked["bucket"])
        # A relative file:// bucket is pinned to the working directory of now.
        self.bucket: str = resolved if resolved.startswith("file://") else self._given
        """The bucket URL (file:// buckets with their absolute path)."""

    def __repr__(self) -> str:
        extra = "".join(f", {k}={v!r}" for k, v in (("endpoint", self.endpoint), ("region", self.region)) if v)
        return f"WalSync({self.bucket!r}{extra})"

    def _config(self, bucket: Optional[str] = None) -> bytes:
        env = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
        if "HOME" in os.environ:
            env["HOME"] = os.environ["HOME"]
        cfg: Dict[str, Any] = {"bucket": bucket or self.bucket, "log_level": _native.log_level(), "env": env}
        if self.endpoint:
            cfg["endpoint"] = self.endpoint
        if self.region:
            cfg["region"] = self.region
        return json.dumps(cfg).encode("utf-8")

    def snapshot(self, path: PathArg, name: Optional[str] = None) -> Snapshot:
        """Store one consistent snapshot of the database at ``path``, now.

        The database may be in use (WAL or rollback-journal mode). ``name``
        defaults to the file name without extension (``/data/app.db`` is
        ``app``). The snapshot starts a new generation; a restore uses the
        newest one. Raises ``NotFound`` for a missing file, ``ConfigError``
        for a bad name.
        """
        p = _path(path, "path")
        n = b"" if name is None else _text(name, "name").encode("utf-8")
        _warn_if_separate_sqlite()
        res = _native.call("walsync_snapshot", self._config(), p, n)
        return _from_dict(Snapshot, res, duration=_duration)

    def list(self) -> List[Database]:
        """Every database stored in the bucket, sorted by name."""
        res = _native.call("walsync_list", self._config())
        return [
            _from_dict(Database, d, latest_snapshot=_parse_time, latest_wal=_parse_time,
                       wal_segments=lambda v: int(v or 0))
            for d in res
        ]

    def restore(
        self,
        name: str,
        output: PathArg,
        point_in_time: Union[datetime, str, None] = None,
        force: bool = False,
    ) -> RestoreResult:
        """Restore database ``name`` into the file ``output``.

        Every object is verified (SHA-256 of its stored bytes, the WAL
        checksum chain) before the output is renamed into place: on any error
        ``output`` is left as it was. ``point_in_time`` (an aware ``datetime``
        or an ISO 8601 string with a zone; naive times are refused with
        ``ConfigError``) restores the last transaction captured at or before
        it; None restores the newest state. An existing ``output`` is
        replaced only with ``force=True`` (``OutputExists`` otherwise).
        Raises ``ChecksumMismatch`` for a corrupted object, ``NotFound`` when
        nothing is stored under ``name``.
        """
        n = _text(name, "name").encode("utf-8")
        out = _path(output, "output")
        if not isinstance(force, bool):
            raise TypeError(f"force must be a bool, not {type(force).__name__}")
        opts: Dict[str, Any] = {"force": force}
        pit = _point_in_time(point_in_time)
        if pit is not None:
            opts["point_in_time"] = pit
        res = _native.call("walsync_restore", self._config(), n, out, json.dumps(opts).encode("utf-8"))
        return _from_dict(RestoreResult, res, duration=_duration, state_time=_parse_time)

    def watch(
        self,
        paths: Union[PathArg, Iterable[PathArg]],
        snapshot_interval: Seconds = 3600,
        *,
        name: Optional[str] = None,
        shutdown_timeout: Seconds = 30,
        sync_interval: Seconds = 1,
        retention: Optional[Seconds] = None,
        uploads: Optional[int] = None,
        takeover: bool = False,
    ) -> "Watch":
        """Replicate databases continuously while a ``with`` block runs.

        ::

            with ws.watch(["/data/app.db"]):
                ...   # write to the database; every commit is shipped

        ``paths`` is one path or several; names are given as ``walsync
        watch`` gives them (file name without extension, or the shortest
        unique trailing path), or by ``name`` for a single database.
        ``snapshot_interval`` (seconds or timedelta; 0: only the snapshot
        that starts a generation), ``shutdown_timeout``, ``sync_interval``
        (commits within it of the previous capture go out together as one
        segment; 0: every commit at once), ``retention``
        (keep every restore point of that window, delete what none needs),
        ``uploads`` (concurrent uploads) and ``takeover`` are the flags of
        ``walsync watch``. Databases must be in WAL mode.

        Entering the block returns once every database is replicating (and
        raises if one cannot be: missing file, not WAL, bucket refused...).
        Leaving it captures what was committed, ships it (bounded by
        ``shutdown_timeout``) and raises, if the block itself did not, the
        error the watcher ended with. ``start()`` and ``stop()`` do the same
        without a ``with``.
        """
        if isinstance(paths, (str, bytes, os.PathLike)):
            items: List[Any] = [paths]
        else:
            try:
                items = [p for p in paths]  # noqa: C416
            except TypeError:
                raise TypeError(f"paths must be a path or an iterable of paths, not {type(paths).__name__}") from None
        opts: Dict[str, Any] = {
            "paths": [_path_str(p, "path") for p in items],
            "snapshot_interval": _seconds(snapshot_interval, "snapshot_interval"),
            "shutdown_timeout": _seconds(shutdown_timeout, "shutdown_timeout"),
            "sync_interval": _seconds(sync_interval, "sync_interval"),
        }
        if not opts["paths"]:
            raise ConfigError("no database to watch")
        if name is not None:
            opts["name"] = _text(name, "name")
        ret = _seconds(retention, "retention", allow_none=True)
        if ret:
            opts["retention"] = ret
        if uploads is not None:
            if not isinstance(uploads, int) or isinstance(uploads, bool):
                raise TypeError(f"uploads must be an int, not {type(uploads).__name__}")
            if uploads < 1:
                raise ConfigError(f"uploads {uploads}: want >= 1")
            opts["uploads"] = uploads
        if not isinstance(takeover, bool):
            raise TypeError(f"takeover must be a bool, not {type(takeover).__name__}")
        opts["takeover"] = takeover
        _warn_if_separate_sqlite()
        return Watch(self, opts)


# --- watch ---------------------------------------------------------------

_running: "weakref.WeakSet[Watch]" = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    """At interpreter exit, running watchers ship what they captured."""
    for w in list(_running):
        try:
            w.stop()
        except Exception as e:  # noqa: BLE001 - exit goes on
            _native.logger.error("stopping a watcher at exit: %s", e)


class Watch:
    """A running (or not yet started) replication of databases: a
    ``replicate.Watcher`` in goroutines of the Go runtime inside this
    process. Made by ``WalSync.watch``; use it as a context manager, or call
    ``start()`` and ``stop()``. Log records go to the ``walsync`` logger.
    """

    _POLL_MS = 250

    def __init__(self, ws: WalSync, options: Mapping[str, Any]) -> None:
        self._ws = ws
        self._options = dict(options)
        self._lock = threading.Lock()
        self._handle: Optional[int] = None
        self._stopped = threading.Event()
        self._poller: Optional[threading.Thread] = None
        self._stats = WatchStats()
        self.databases: Dict[str, str] = {}
        """Path -> name of each database, once started."""

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<walsync.Watch {state} {self.databases or self._options['paths']!r} -> {self._ws.bucket}>"

    @property
    def running(self) -> bool:
        """True between start() and stop()."""
        return self._handle is not None

    def start(self) -> "Watch":
        """Start replicating; return once every database is followed."""
        with self._lock:
            if self._handle is not None:
                raise WalSyncError("this watch is already running")
            res = _native.call(
                "walsync_watch_start", self._ws._config(), json.dumps(self._options).encode("utf-8")
            )
            self._handle = int(res["handle"])
            self.databases = {str(d["path"]): str(d["name"]) for d in res.get("databases") or []}
            self._stopped.clear()
            self._poller = threading.Thread(target=self._poll, name="walsync-watch-log", daemon=True)
            self._poller.start()
            _running.add(self)
        return self

    def _poll(self) -> None:
        while not self._stopped.is_set():
            handle = self._handle
            if handle is None:
                return
            try:
                res = _native.call("walsync_watch_poll", handle, self._POLL_MS)
            except WalSyncError:
                return
            self._stats = _from_dict(WatchStats, res.get("stats") or {})
            if not res.get("running", False):
                return

    def stats(self) -> WatchStats:
        """The watcher's counters (frames captured, objects and bytes uploaded, upload errors)."""
        handle = self._handle
        if handle is not None:
            try:
                res = _native.call("walsync_watch_poll", handle, 0)
                self._stats = _from_dict(WatchStats, res.get("stats") or {})
            except WalSyncError:
                pass
        return self._stats

    def stop(self) -> WatchStats:
        """Stop: capture what is committed, ship it, release the watcher.

        Raises the error the watcher ended with (e.g. objects that could not
        be uploaded within shutdown_timeout: they stay in the spool beside
        the database and the next watch uploads them). Stopping a stopped
        watch does nothing.
        """
        with self._lock:
            handle = self._handle
            if handle is None:
                return self._stats
            self._stopped.set()
            if self._poller is not None and self._poller is not threading.current_thread():
                self._poller.join()
            self._poller = None
            self._handle = None
            _running.discard(self)
            res = _native.call("walsync_watch_stop", handle)
            self._stats = _from_dict(WatchStats, res.get("stats") or {})
            return self._stats

    def __enter__(self) -> "Watch":
        return self.start()

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        try:
            self.stop()
        except WalSyncError as err:
            if exc is None:
                raise
            # The block's own exception goes on; this one is logged.
            _native.logger.error("stopping the watcher after an exception: %s", err)


def register(
    bucket: Optional[str] = None,
    *,
    endpoint: Optional[str] = None,
    region: Optional[str] = None,
    sync: bool = False,
    sync_interval: Optional[float] = None,
    sync_timeout: Optional[float] = None,
    close_timeout: Optional[float] = None,
) -> None:
    """Make the ``walsync`` SQLite VFS available to Python's ``sqlite3``.

    Afterwards ``sqlite3.connect("file:app.db?vfs=walsync", uri=True)``
    replicates ``app.db`` while connections to it are open, into the bucket
    given here (or the URI's ``walsync_bucket``, or ``WALSYNC_BUCKET``); the
    URI may also carry ``walsync_endpoint``, ``walsync_sync=1``,
    ``walsync_sync_timeout`` and ``walsync_name``. walsync replicates the
    WAL: a database not in WAL mode is switched to it (at the open, or
    after the first write of a new database), and ``PRAGMA journal_mode``
    with another mode is refused. ``sync=True`` makes every commit wait
    until it is durable in the bucket, at most ``sync_timeout`` seconds
    (default 10): a commit that cannot be made durable in time raises
    ``sqlite3.OperationalError`` ("disk I/O error"), and stays committed
    locally, to be shipped when the bucket can be reached. Otherwise
    commits within ``sync_interval`` seconds (default 1) ship together;
    :func:`flush` makes what is committed so far durable, and
    :func:`vfs_status` tells where replication stands. Closing the last
    connection ships what is pending (at most ``close_timeout`` seconds,
    default 10).

    The VFS is registered straight into the SQLite library that Python's
    ``sqlite3`` module uses, so ``enable_load_extension`` is not needed.
    That requires walsync's library to be linked with that same shared
    libsqlite3 (``build_info()["sqlite_shared"]``); when it is not, there
    is no way to add a VFS to Python's SQLite from walsync and
    ``WalSyncError`` says so. Calling ``register`` again changes the
    defaults for databases opened afterwards.
    """
    info = _native.build_info()
    if not info.get("sqlite_shared", False):
        raise WalSyncError(
            "walsync.register: this walsync library carries its own SQLite "
            f"({info.get('sqlite')}, {info.get('sqlite_version')}), not the shared libsqlite3 Python's "
            "sqlite3 module uses, so the VFS cannot be added to Python's SQLite (loading it as an "
            "extension needs the same shared library too). Reinstall walsync with WALSYNC_SQLITE=system "
            "on an interpreter whose sqlite3 module links a shared libsqlite3 (Linux distributions' "
            "and pyenv's do)"
        )
    env = {k: v for k, v in os.environ.items() if k.startswith("AWS_") or k.startswith("WALSYNC_")}
    if "HOME" in os.environ:
        env["HOME"] = os.environ["HOME"]
    cfg: Dict[str, Any] = {"bucket": "" if bucket is None else _text(bucket, "bucket"), "env": env}
    if endpoint is not None:
        cfg["endpoint"] = _text(endpoint, "endpoint")
    if region is not None:
        cfg["region"] = _text(region, "region")
    opts: Dict[str, Any] = {"sync": bool(sync)}
    for key, value in (("sync_interval", sync_interval), ("sync_timeout", sync_timeout),
                       ("close_timeout", close_timeout)):
        if value is not None:
            opts[key] = _seconds(value, key)
    cfg["log_level"] = _native.log_level()
    _native.call("walsync_vfs_register", json.dumps(cfg).encode("utf-8"), json.dumps(opts).encode("utf-8"))
    _start_vfs_logs()


_vfs_logs_lock = threading.Lock()
_vfs_logs_thread: Optional[threading.Thread] = None


def _start_vfs_logs() -> None:
    """Forward what the VFS logs (its warnings and errors: a commit that
    could not be made durable, a bucket that cannot be reached) to the
    ``walsync`` logger, from a daemon thread that waits for records."""
    global _vfs_logs_thread
    with _vfs_logs_lock:
        if _vfs_logs_thread is not None and _vfs_logs_thread.is_alive():
            return

        def run() -> None:
            while True:
                try:
                    _native.call("walsync_vfs_logs", 1000)
                except WalSyncError:
                    return  # forked, or the library is going away

        _vfs_logs_thread = threading.Thread(target=run, name="walsync-vfs-logs", daemon=True)
        _vfs_logs_thread.start()


def vfs_status(con: Any) -> Dict[str, Any]:
    """The replication status of the main database of ``con``, a
    ``sqlite3.Connection`` opened through the walsync VFS (``PRAGMA
    walsync_status``): a dict with ``name``, ``replicating``, ``wal``,
    ``generation``, ``wal_salt1``, ``wal_frame``, ``last_durable``,
    ``lag_seconds``, ``pending_objects``, ``pending_bytes`` and
    ``last_error``."""
    return _pragma_status(con, "PRAGMA walsync_status")


def flush(con: Any, timeout: Optional[float] = None) -> Dict[str, Any]:
    """Wait until everything committed so far to the main database of
    ``con`` (opened through the walsync VFS) is durable in the bucket
    (``PRAGMA walsync_flush``), at most ``timeout`` seconds (default: the
    database's sync timeout). Raises ``WalSyncError`` when it cannot be;
    returns the status after it (:func:`vfs_status`)."""
    q = "PRAGMA walsync_flush"
    secs = _seconds(timeout, "timeout", allow_none=True)
    if secs is not None:
        q += "='%dms'" % max(1, int(secs * 1000))
    return _pragma_status(con, q)


def _pragma_status(con: Any, q: str) -> Dict[str, Any]:
    import sqlite3

    try:
        row = con.execute(q).fetchone()
    except sqlite3.Error as e:
        raise WalSyncError(str(e)) from e
    if row is None:
        raise WalSyncError("walsync: the database is not open through the walsync VFS")
    out: Dict[str, Any] = json.loads(row[0])
    return out
