"""Test helper shared by the run-directory tests (agents' and peers')."""

from __future__ import annotations

from pathlib import Path


def copy_run(src: Path, dst: Path) -> Path:
    """A copy of the run directory ``src`` (its plain files) at ``dst``, to alter in a test."""
    dst.mkdir(parents=True)
    for f in src.iterdir():
        if f.is_file():
            (dst / f.name).write_bytes(f.read_bytes())
    return dst
