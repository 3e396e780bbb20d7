"""The files the command writes (a counterexample trace, the SMT dump directory): their
destinations are checked before a long proof starts, and a file is written whole or not at all
(a temporary file in the same directory, then os.replace), so that a failed or interrupted write
leaves no partial file behind."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from formal.errors import Malformed


def file_problem(path: Path) -> str | None:
    """Why a file cannot be written at path (it is a directory, or its directory is missing or
    not writable), None if it can."""
    if path.is_dir():
        return "is a directory"
    parent = path.parent
    if not parent.is_dir():
        return f"no directory {parent}"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"directory {parent} is not writable"
    return None


def check_file(path: Path, option: str) -> None:
    """Raises Malformed, naming option, if a file cannot be written at path."""
    why = file_problem(path)
    if why is not None:
        raise Malformed(f"{option} {path}: {why}")


def prepare_dir(path: Path, option: str) -> bool:
    """Creates directory path (and its parents) if needed, saying whether it did; raises
    Malformed, naming option, if it is not a directory or not writable."""
    if path.exists() and not path.is_dir():
        raise Malformed(f"{option} {path}: exists and is not a directory")
    created = not path.exists()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise Malformed(f"{option} {path}: cannot create: {exc.strerror or exc}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise Malformed(f"{option} {path}: directory is not writable")
    return created


def write_atomic(path: Path, text: str) -> None:
    """text as the whole content of path, or path untouched (OSError says why)."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """data as the whole content of path, or path untouched (OSError says why); the file gets
    the mode a new file would (mkstemp's is owner-only)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
