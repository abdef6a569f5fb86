"""The exceptions of walsync, one class per kind of failure the library reports."""

from __future__ import annotations

__all__ = [
    "WalSyncError",
    "IntegrityError",
    "ChecksumMismatch",
    "NotFound",
    "OutputExists",
    "ConfigError",
]


class WalSyncError(Exception):
    """Base class of every error walsync raises.

    ``str(err)`` is the one line the ``walsync`` command would print after
    ``walsync:``: what failed (file, object key, bucket) and why. ``kind`` is
    the library's classification (``"checksum"``, ``"integrity"``,
    ``"not_found"``, ``"exists"``, ``"config"`` or ``"other"``).
    """

    kind: str = "other"


class IntegrityError(WalSyncError):
    """Stored objects cannot be proven right: a gap in the WAL sequence, an
    object that is not in walsync's format. The restore stopped and left its
    output path as it was."""

    kind = "integrity"


class ChecksumMismatch(IntegrityError):
    """An object's bytes do not hash to the SHA-256 recorded for them (or no
    SHA-256 is recorded). The message names the object."""

    kind = "checksum"


class NotFound(WalSyncError):
    """No such database file, stored database name, object or bucket."""

    kind = "not_found"


class OutputExists(WalSyncError):
    """A restore would replace an existing file: pass ``force=True``."""

    kind = "exists"


class ConfigError(WalSyncError, ValueError):
    """A bad argument: bucket URL or scheme, database name, option value,
    point in time, or credentials the storage refused. Also a ValueError."""

    kind = "config"


_BY_KIND: dict[str, type[WalSyncError]] = {
    cls.kind: cls for cls in (IntegrityError, ChecksumMismatch, NotFound, OutputExists, ConfigError)
}


def error_for(kind: str, message: str) -> WalSyncError:
    """The exception for an error the library reported."""
    cls = _BY_KIND.get(kind, WalSyncError)
    err = cls(message)
    if cls is WalSyncError and kind:
        err.kind = kind
    return err
