"""Clear what a killed Snakemake run leaves behind: a stale lock, stale backups.

Snakemake locks its working directory while it runs (``.snakemake/locks``); a run
killed with ``kill -9`` or by a power cut leaves the lock behind and the next run
refuses to start until ``snakemake --unlock``. This removes the lock when no
Snakemake process is running in that directory (checked through /proc), and
leaves it alone otherwise. ``make demo`` calls it before each run.

Before an ``update()`` job (the tile rule) Snakemake copies the job's output to
``.snakemake/backups/`` and removes the copy when the job ends; a run killed during
such a job leaves the copy, and the next run then fails with ``FileExistsError``
when it backs the same output up again (Snakemake 9.27). The output itself is
complete (every store in it was written atomically), so a backup found while no
job runs is stale: :func:`clear_stale_backups` removes it, from the Snakefile's
``onstart`` (the run holds the lock, so no other run is using it) and here.

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


def clear_stale_backups(snakemake_dir: str | os.PathLike = ".snakemake") -> list[Path]:
    """Remove Snakemake's output backups under ``snakemake_dir`` (``.snakemake``); call
    only when no Snakemake job runs there. Returns what was removed."""
    import shutil

    root = Path(snakemake_dir) / "backups"
    stale = [p for p in root.iterdir()] if root.is_dir() else []
    for p in stale:
        shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
    if stale:
        print(f"Removed stale output backups of an interrupted run in {root}.", file=sys.stderr)
    return stale


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
    clear_stale_backups(workdir / ".snakemake")
    return True


if __name__ == "__main__":
    clear_stale_lock(sys.argv[1] if len(sys.argv) > 1 else ".")
