"""Real file systems for the audit's fault tests: a small tmpfs, mounted as root, skipped where impossible."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(command), capture_output=True, text=True, timeout=30)


def mounting_possible() -> str | None:
    """None when tmpfs mounts work here, else why not (the tests that need them skip with it)."""
    if shutil.which("mount") is None or shutil.which("umount") is None:
        return "no mount/umount commands here"
    if not hasattr(os, "getuid") or os.getuid() != 0:
        return "mounting a tmpfs needs root"
    return None


@contextmanager
def tmpfs(where: Path, size: str) -> Iterator[Path]:
    why = mounting_possible()
    if why:
        pytest.skip(why)
    where.mkdir(parents=True, exist_ok=True)
    done = run("mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(where))
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or done.returncode})")
    try:
        yield where
    finally:
        run("umount", "-l", str(where))
