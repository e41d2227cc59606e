"""Atomic file output: an interrupted run never leaves a half-written file behind.

Every writer goes to a temporary file in the destination folder, which then replaces the
destination in one ``os.replace`` (atomic on POSIX and Windows).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


class WriteError(OSError):
    """A file could not be written: the message names the destination (not the temporary
    file beside it) and the system's reason, without the raw errno."""

    def __str__(self) -> str:
        return f"cannot write {self.filename}: {self.strerror}"


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` on a temporary path beside ``path``, then move it into place.

    A file-system failure (no such folder, no permission, a full disk, a read-only or
    special file system) raises :class:`WriteError` naming ``path``."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            dir=path.parent, prefix=f".{path.stem}.", suffix=f"{path.suffix}.tmp"
        )
    except OSError as exc:
        raise WriteError(exc.errno, exc.strerror or type(exc).__name__, str(path)) from exc
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if (  # about this file
            isinstance(exc, OSError)
            and not isinstance(exc, WriteError)
            and exc.filename in (None, tmp, str(path))
            and exc.errno
        ):
            raise WriteError(exc.errno, exc.strerror or str(exc), str(path)) from exc
        raise
    return path


def atomic_write_bytes(path: str | Path, payload: bytes) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_bytes(payload))


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def save_figure(fig: Any, path: str | Path, dpi: int = 130) -> Path:
    """Save a matplotlib figure atomically as PNG, then close it."""
    import matplotlib.pyplot as plt

    try:
        return atomic_write(
            path, lambda tmp: fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png")
        )
    finally:
        plt.close(fig)
