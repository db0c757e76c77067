"""Whole-file writes and strict YAML reads, the one way every part of the project handles a file (a leaf module).

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

import yaml

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


def folder_problem(folder: str | Path) -> str | None:
    """Why files cannot be written in ``folder`` (created if missing), or None: checked before any work starts."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        return f"{str(folder)!r} exists and is not a folder"
    existing = folder
    while not existing.exists():  # the nearest ancestor that exists decides whether the folder can be made
        existing = existing.parent
    if not existing.is_dir():
        return f"{str(existing)!r} is a file, so {str(folder)!r} cannot be a folder"
    try:  # the one honest test of writability (permissions, read-only mounts, root): write and remove a file
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".write-probe.", suffix=".tmp")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        return f"{str(existing)!r} is not writable ({err.strerror})"
    return None


def remove_stale(folder: str | Path) -> None:
    """Delete temporary files a killed :func:`write_atomic` left in ``folder``."""
    for stale in Path(folder).glob(".*.tmp*"):
        if stale.is_file():
            stale.unlink()


_YAML_BASE = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C parser reads the large preset ~10x faster


class _StrictLoader(_YAML_BASE):
    """PyYAML's safe loader (no tags that build objects), refusing a key given twice in one mapping."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (each key may appear once)", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _StrictLoader.construct_mapping)


def read_yaml(text: str):
    """Parse YAML as data: the safe loader, and a duplicated key is a ``yaml.YAMLError`` (YAML would keep the
    last value silently)."""
    return yaml.load(text, Loader=_StrictLoader)
