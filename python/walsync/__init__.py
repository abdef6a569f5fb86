"""walsync: continuous, verified replication of SQLite databases.

Copies of SQLite databases in S3-compatible storage (AWS S3, Tigris, MinIO,
R2) or a local directory, restorable byte for byte; every object carries the
SHA-256 of its bytes, checked on restore. This package binds walsync's Go
library; it is the same code the ``walsync`` command runs::

    from walsync import WalSync
    ws = WalSync("s3://my-bucket", endpoint="https://fly.storage.tigris.dev")
    ws.snapshot("/path/to/app.db")
    dbs = ws.list()
    ws.restore("app", "/path/to/restored.db", point_in_time=None)
    with ws.watch(["/path/to/app.db"]):
        ...

    walsync.register("s3://my-bucket")      # the VFS, for Python's sqlite3
    con = sqlite3.connect("file:app.db?vfs=walsync", uri=True)

Errors are ``WalSyncError`` and its subclasses. Log records of the library
go to the ``logging`` logger ``walsync``.
"""

from __future__ import annotations

from typing import Any, Dict

from . import _native
from ._client import (
    Database,
    RestoreResult,
    SeparateSQLiteWarning,
    Snapshot,
    WalSync,
    Watch,
    WatchStats,
    flush,
    register,
    vfs_status,
)
from ._errors import (
    ChecksumMismatch,
    ConfigError,
    IntegrityError,
    NotFound,
    OutputExists,
    WalSyncError,
)

__version__ = "0.1.0"

__all__ = [
    "WalSync",
    "Watch",
    "Snapshot",
    "Database",
    "RestoreResult",
    "WatchStats",
    "SeparateSQLiteWarning",
    "WalSyncError",
    "IntegrityError",
    "ChecksumMismatch",
    "NotFound",
    "OutputExists",
    "ConfigError",
    "register",
    "flush",
    "vfs_status",
    "build_info",
    "__version__",
]


def build_info() -> Dict[str, Any]:
    """What the loaded Go library is.

    Keys: ``version``, ``go`` (toolchain), ``sqlite`` (``"system"``: linked
    with the system libsqlite3; ``"bundled"``: its own copy),
    ``sqlite_version``, ``sqlite_shared`` (True when the library and Python's
    sqlite3 module use one and the same SQLite), ``point_in_time`` (whether
    ``restore(point_in_time=...)`` is supported), ``library`` (its path).
    """
    return _native.build_info()
