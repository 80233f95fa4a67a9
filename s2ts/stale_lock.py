"""Clear a stale Snakemake lock left by a killed run, and only a stale one.

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
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ")
            cwd = Path(os.readlink(proc / "cwd")).resolve()
        except OSError:
            continue
        if b"snakemake" in cmd and b"stale_lock" not in cmd and (cwd == workdir or str(workdir).encode() in cmd):
            pids.append(int(proc.name))
    return pids


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
