"""Clear what a killed Snakemake run leaves behind: a stale lock.

Snakemake locks its working directory while it runs (``.snakemake/locks``); a run
killed with ``kill -9`` or by a power cut leaves the lock behind and the next run
refuses to start until ``snakemake --unlock``. This removes the lock when no
Snakemake process is running in that directory (checked through /proc), and
leaves it alone otherwise. ``make demo`` calls it before each run.

    python -m s2ts.stale_lock [WORKDIR]
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def snakemake_running_in(workdir: Path) -> list[int]:
    """PIDs of Snakemake processes whose working directory is ``workdir``."""
    workdir = workdir.resolve()
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            args = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
            cwd = Path(os.readlink(proc / "cwd")).resolve()
        except OSError:
            continue
        if not any(Path(a).name == "snakemake" for a in args[:2]) or any("stale_lock" in a for a in args):
            continue
        if cwd == workdir or _directory_arg(args, cwd) == workdir:
            pids.append(int(proc.name))
    return pids


def _directory_arg(args: list[str], cwd: Path) -> Path | None:
    """The working directory given with ``--directory``/``-d`` (relative to ``cwd``)."""
    for i, a in enumerate(args):
        if a in ("--directory", "-d") and i + 1 < len(args):
            return (cwd / args[i + 1]).resolve()
        if a.startswith("--directory="):
            return (cwd / a.split("=", 1)[1]).resolve()
    return None


def clear_stale_lock(workdir: str | os.PathLike = ".") -> bool:
    """Remove the lock files if stale; True when something was removed."""
    workdir = Path(workdir)
    locks = workdir / ".snakemake" / "locks"
    files = [p for p in locks.glob("*")] if locks.exists() else []
    if not files:
        return False
    running = snakemake_running_in(workdir)
    if running:
        print(f"Snakemake is running in {workdir} (pid {', '.join(map(str, running))}): lock kept.", file=sys.stderr)
        return False
    for p in files:
        p.unlink()
    print(f"Removed a stale Snakemake lock in {workdir} (a previous run was interrupted).", file=sys.stderr)
    return True


if __name__ == "__main__":
    clear_stale_lock(sys.argv[1] if len(sys.argv) > 1 else ".")
