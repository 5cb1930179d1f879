"""The errors imgsim reports to users as a clear message rather than a traceback."""

from __future__ import annotations

import contextlib
import errno
import sqlite3
from collections.abc import Iterator


class ImgsimError(Exception):
    """Base of every error whose message tells the user what is wrong and how to fix it."""


class DatasetError(ImgsimError, ValueError):
    """The folder cannot be used as a training set; the message says why and how to fix it."""


class UnreadableImageError(ImgsimError, ValueError):
    """A file that is not a decodable image (corrupt, truncated, unsupported or too large)."""


class ConfigError(ImgsimError, ValueError):
    """A config file or value that cannot be used."""


class ModelNotLoadedError(ImgsimError, RuntimeError):
    """No usable model file."""


class EmbeddingsNotLoadedError(ImgsimError, RuntimeError):
    """No usable embeddings on disk."""


class NotReadyError(ImgsimError, RuntimeError):
    """The searcher has no model or no embeddings; the message is the original's advice."""


class UnsafePathError(ImgsimError, ValueError):
    """A name that leads outside the data folder (absolute, '..', or through a symlink)."""


class TrashError(ImgsimError, ValueError):
    """A trash operation that cannot be done (nothing by that name, the target exists)."""


class OnnxError(ImgsimError, RuntimeError):
    """ONNX export or onnxruntime cannot be used (package missing, foreign or stale file)."""


class DeviceError(ImgsimError, RuntimeError):
    """A requested device (cuda, mps) that this machine or this torch build does not have."""


class CheckpointError(ImgsimError, RuntimeError):
    """A run that cannot be resumed as asked; the message names what differs."""


class RenameError(ImgsimError):
    """A rename that cannot go ahead, or went wrong and was rolled back; printed as it is."""


class DiskFullError(ImgsimError, RuntimeError):
    """A change that did not fit on the disk; nothing of it was written (the web app: 507)."""


class ReadOnlyError(ImgsimError, RuntimeError):
    """A change in a folder that cannot be written; reading still works (the web app: 503)."""


# Errors that mean "no room" or "may not write", from the OS and from SQLite (which says
# SQLITE_FULL / SQLITE_READONLY; a test's plain OperationalError has only the message).
_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
_READ_ONLY_ERRNOS = frozenset({errno.EROFS, errno.EACCES, errno.EPERM})
_SQLITE_FULL, _SQLITE_READONLY = 13, 8


def storage_error(exc: BaseException, outcome: str) -> ImgsimError | None:
    """DiskFullError or ReadOnlyError for `exc` if it means so, else None.

    `outcome` says what the caller left as it was ("nothing was added"); the message never
    advises moving or rebuilding anything: the index on disk is intact.
    """
    code = getattr(exc, "sqlite_errorcode", None)
    code = code & 0xFF if isinstance(code, int) else None  # SQLITE_READONLY_DIRECTORY is 8 too
    text = str(exc).lower()
    errno_ = exc.errno if isinstance(exc, OSError) else None
    if errno_ in _FULL_ERRNOS or code == _SQLITE_FULL or "database or disk is full" in text:
        full = True
    elif errno_ in _READ_ONLY_ERRNOS or code == _SQLITE_READONLY or "readonly database" in text:
        full = False
    else:
        return None
    if full:
        return DiskFullError(f"the disk is full: {outcome}; free some space and try again")
    where = getattr(exc, "filename", None)
    place = f" ({where})" if where else ""
    return ReadOnlyError(
        f"the work folder cannot be written{place}: {outcome}; searching still works "
        "(changes need write access to the work and data folders)"
    )


@contextlib.contextmanager
def storage_errors(outcome: str) -> Iterator[None]:
    """Turn a full disk or a read-only folder met inside into DiskFullError/ReadOnlyError."""
    try:
        yield
    except (OSError, sqlite3.Error) as exc:
        problem = storage_error(exc, outcome)
        if problem is None:
            raise
        raise problem from exc
