"""Atomic file writes: a reader sees the old file or the new one, never a torn one."""

from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path

from kdforge.errors import UserError


class WriteError(UserError):
    """A file could not be written (full disk, no permission); what existed before is intact."""


def _write_error(path, exc: OSError) -> WriteError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return WriteError(f"no space left writing {path} ({exc.strerror}); the previous version is intact: "
                          "free space, then resume with --resume")
    return WriteError(f"cannot write {path}: {exc.strerror or exc}; choose a writable out= folder")


def write_temp(path, payload: bytes) -> str:
    """Write `payload` to a fsynced temporary file beside `path`; returns its name (removed on failure)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise _write_error(path, exc) from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise _write_error(path, exc) from None
        raise
    return tmp


def publish(tmp: str, path) -> None:
    """Atomically move a temporary file written by `write_temp` into place."""
    os.replace(tmp, path)
    _fsync_dir(Path(path).parent)


def atomic_write_bytes(path, payload: bytes) -> None:
    publish(write_temp(path, payload), path)


def atomic_write_text(path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def append_line(path, line: str) -> None:
    """Append one whole record (a line) with a single write, and flush it to disk.

    A reader skips a last line without its newline (a record cut by a crash or a full disk).
    """
    record = (line.rstrip("\n") + "\n").encode("utf-8")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError as exc:
        raise _write_error(path, exc) from None
    try:
        written = os.write(fd, record)
        if written != len(record):
            raise OSError(errno.ENOSPC, "short write")
        os.fsync(fd)
    except OSError as exc:
        raise _write_error(path, exc) from None
    finally:
        os.close(fd)


def read_records(path) -> list[str]:
    """The complete lines of an append-only record file (a torn last line is ignored)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    lines = text.split("\n")
    return [line for line in lines[:-1] if line]


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
