"""Atomic outputs: write to a temporary name beside the target, then rename.

An interrupted job never leaves a half-written file under the final name.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside ``path``; rename it into place on success.

    Works for files and directories (e.g. Zarr stores). On error the temporary
    output is removed and ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.tmp-*"):  # left by a killed job
        remove(stale)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
    except BaseException:
        remove(tmp)
        raise
    remove(path)
    os.replace(tmp, path)


def remove(p: str | os.PathLike) -> None:
    """Remove a file or a directory tree (a Zarr store); nothing if absent."""
    p = Path(p)
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p)
    elif p.exists() or p.is_symlink():
        p.unlink()


def dumps_json(obj) -> str:
    """Deterministic JSON: sorted keys, fixed indentation, trailing newline."""
    return json.dumps(obj, sort_keys=True, indent=1, ensure_ascii=False) + "\n"


def write_json(path: str | os.PathLike, obj) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(dumps_json(obj))
