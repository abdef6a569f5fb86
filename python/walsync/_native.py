"""The binding to the Go library (cmd/libwalsync) through ctypes.

Every C function returns a JSON envelope in C memory ({"ok": ...} or
{"error": {"kind", "message"}}, plus "logs"); `call` frees it, forwards the
log records to the ``walsync`` logger and raises the matching exception.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import sqlite3  # noqa: F401  Python's SQLite is loaded first: a library built
# against the system libsqlite3 then binds to this same copy (one SQLite per
# process; see README.md, "One SQLite per process").
import threading
from pathlib import Path
from typing import Any, Dict, List, Optional

from ._errors import WalSyncError, error_for

logger = logging.getLogger("walsync")
# A library leaves output to the application (configure logging to see
# walsync's records); without this, warnings would go to stderr.
logger.addHandler(logging.NullHandler())

_HERE = Path(__file__).resolve().parent
_NAMES = ("_libwalsync.so", "_libwalsync.dylib", "_libwalsync.dll")


def _find_library() -> Path:
    override = os.environ.get("WALSYNC_LIBRARY")
    if override:
        return Path(override)
    for name in _NAMES:
        p = _HERE / name
        if p.exists():
            return p
    raise ImportError(
        f"walsync: the Go library ({_NAMES[0]}) is missing from {_HERE}: install the package with "
        "pip (pip install ./python, or pip install walsync with Go installed), which builds it"
    )


_path = _find_library()
try:
    lib = ctypes.CDLL(str(_path))
except OSError as e:  # pragma: no cover - broken installation
    raise ImportError(f"walsync: cannot load {_path}: {e}") from e

_c = ctypes.c_char_p
for _name, _args in {
    "walsync_version": [],
    "walsync_check": [_c],
    "walsync_snapshot": [_c, _c, _c],
    "walsync_list": [_c],
    "walsync_restore": [_c, _c, _c, _c],
    "walsync_watch_start": [_c, _c],
    "walsync_watch_poll": [ctypes.c_longlong, ctypes.c_int],
    "walsync_watch_stop": [ctypes.c_longlong],
    "walsync_vfs_register": [_c, _c],
    "walsync_vfs_logs": [ctypes.c_int],
}.items():
    _fn = getattr(lib, _name)
    _fn.argtypes = _args
    _fn.restype = ctypes.c_void_p  # freed with walsync_free, so not c_char_p
lib.walsync_free.argtypes = [ctypes.c_void_p]
lib.walsync_free.restype = None

# The Go runtime does not survive fork(): only the forking thread goes on in
# the child, and a call into Go there can hang. Calls in a forked child are
# refused instead.
_forked = False


def _after_fork_in_child() -> None:
    global _forked
    _forked = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)

_LEVELS = {"DEBUG": logging.DEBUG, "INFO": logging.INFO, "WARN": logging.WARNING, "ERROR": logging.ERROR}


def log_level() -> str:
    """The level of records worth collecting: the ``walsync`` logger's."""
    level = logger.getEffectiveLevel()
    if level <= logging.DEBUG:
        return "debug"
    if level <= logging.INFO:
        return "info"
    if level <= logging.WARNING:
        return "warn"
    return "error"


def _format_value(v: str) -> str:
    if v == "" or any(c in v for c in ' "=\t'):
        return json.dumps(v)
    return v


def emit(records: Optional[List[Dict[str, Any]]]) -> None:
    """Forward log records of the library to the ``walsync`` logger."""
    for rec in records or ():
        level = _LEVELS.get(str(rec.get("level", "")).upper(), logging.INFO)
        if not logger.isEnabledFor(level):
            continue
        attrs = rec.get("attrs") or []
        text = " ".join([str(rec.get("msg", ""))] + [f"{k}={_format_value(str(v))}" for k, v in attrs])
        logger.log(level, "%s", text, extra={"walsync_time": rec.get("time"), "walsync_attrs": dict(attrs)})


def call(fn_name: str, *args: Any) -> Any:
    """Call a C function, return its result, raise its error."""
    if _forked:
        raise WalSyncError(
            "walsync cannot be used in a process forked after it was imported (the Go runtime "
            "does not survive fork): import it in the child, or use multiprocessing's 'spawn'"
        )
    fn = getattr(lib, fn_name)
    ptr = fn(*args)
    if not ptr:
        raise WalSyncError(f"{fn_name} returned nothing (out of memory?)")
    try:
        raw = ctypes.string_at(ptr)
    finally:
        lib.walsync_free(ptr)
    env = json.loads(raw.decode("utf-8", errors="replace"))
    emit(env.get("logs"))
    err = env.get("error")
    if err is not None:
        raise error_for(str(err.get("kind", "other")), str(err.get("message", "unknown error")))
    return env.get("ok")


_info_lock = threading.Lock()
_info: Optional[Dict[str, Any]] = None


def build_info() -> Dict[str, Any]:
    """What the loaded library is: versions, SQLite mode, features."""
    global _info
    with _info_lock:
        if _info is None:
            info = dict(call("walsync_version"))
            info["library"] = str(_path)
            info["sqlite_shared"] = _shares_python_sqlite()
            _info = info
        return dict(_info)


def _shares_python_sqlite() -> bool:
    """Whether the library and Python's sqlite3 module use one SQLite."""
    try:
        import _sqlite3

        ours = ctypes.cast(lib.sqlite3_libversion, ctypes.c_void_p).value
        pys = ctypes.cast(ctypes.CDLL(_sqlite3.__file__).sqlite3_libversion, ctypes.c_void_p).value
        return ours is not None and ours == pys
    except (AttributeError, OSError, ImportError):
        return False
