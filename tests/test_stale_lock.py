"""A stale lock (its Snakemake was killed) is cleared; a live run's lock is kept."""

import subprocess
import time

from s2ts.stale_lock import clear_stale_lock


def make_lock(wd):
    locks = wd / ".snakemake" / "locks"
    locks.mkdir(parents=True)
    (locks / "0.input.lock").write_text("x")
    return locks


def test_stale_lock_is_cleared(tmp_path):
    locks = make_lock(tmp_path)
    assert clear_stale_lock(tmp_path)
    assert not list(locks.iterdir())
    assert not clear_stale_lock(tmp_path)  # nothing left to do


def test_live_run_keeps_its_lock(tmp_path):
    locks = make_lock(tmp_path)
    proc = subprocess.Popen(["bash", "-c", "exec -a snakemake sleep 30"], cwd=tmp_path)
    try:
        time.sleep(0.3)
        assert not clear_stale_lock(tmp_path)
        assert list(locks.iterdir())
    finally:
        proc.kill()
        proc.wait()
