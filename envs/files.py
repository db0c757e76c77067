"""Whole-file writes, the one way every part of the project writes a file (a leaf module, stdlib only).

A file is written to a temporary name in its own folder, flushed to disk and renamed over the
target (``os.replace`` is atomic on POSIX and Windows), so a crash or Ctrl-C leaves the old file
or the new one, never half of one. It lives in ``envs`` because that is the bottom layer: the
scenario, the MILP export, the hindsight cache, the evaluation rows and reports, agent
directories, training summaries and the benchmarks all use it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

UMASK = os.umask(0o22)  # the process umask (reading it means setting it) ...
os.umask(UMASK)  # ... and putting it back at once


def write_atomic(path: str | Path, data: bytes | str, *, if_changed: bool = False) -> bool:
    """Write ``data`` (``str`` is UTF-8 encoded) to ``path`` whole; returns whether the file was written.

    With ``if_changed``, an existing file with the same bytes is left alone (its mtime too), so a
    rerun that computes the same result touches nothing.
    """
    path = Path(path)
    data = data.encode() if isinstance(data, str) else data
    if if_changed and path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data:
        return False
    with atomic_target(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    return True


@contextlib.contextmanager
def atomic_target(path: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """A temporary path beside ``path`` for a writer that writes files itself (SB3's ``save``, HiGHS's
    ``writeModel``); renamed over ``path`` when the block ends without error, removed otherwise.

    The temporary name is hidden and ends in ``.tmp`` (no glob for the real files matches it), or in
    ``.tmp`` + ``suffix`` for writers that choose the format by the extension (HiGHS: ``".mps"``).
    """
    path = Path(path)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp" + (suffix or ""))
    os.close(fd)
    tmp = Path(name)
    try:
        os.chmod(tmp, 0o666 & ~UMASK)  # mkstemp makes 0600; give the file the usual permissions
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def remove_stale(folder: str | Path) -> None:
    """Delete temporary files a killed :func:`write_atomic` left in ``folder``."""
    for stale in Path(folder).glob(".*.tmp*"):
        if stale.is_file():
            stale.unlink()
