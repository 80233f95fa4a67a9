"""kill -9 of the Snakemake process, and of a single job, in the middle of a demo
run: the next run with the default profile's settings (rerun-incomplete)
completes, keeps every per-date tile that was complete, and gives the same
NetCDF as an uninterrupted run."""

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from conftest import VENV_BIN
from test_reruns import config, make_workdir, run

from s2ts.stale_lock import clear_stale_lock

VARS = ["B03", "B04", "B08", "flag", "valid_fraction"]


def same_netcdf(a, b):
    da, db = xr.open_dataset(a), xr.open_dataset(b)
    for v in VARS + ["x", "y", "time"]:
        np.testing.assert_array_equal(da[v].values, db[v].values)


def start(wd, cfg):
    import yaml

    (wd / "run.yaml").write_text(yaml.safe_dump(cfg))
    cmd = [
        str(VENV_BIN / "snakemake"),
        "--cores", "2", "--configfile", str(wd / "run.yaml"), "--directory", str(wd), "-s", str(wd / "Snakefile"),
    ]  # fmt: skip
    env = {**os.environ, "PATH": f"{VENV_BIN}:{os.environ['PATH']}"}
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, env=env)


def wait_for(pred, timeout=300):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if pred():
            return True
        time.sleep(0.2)
    raise TimeoutError


def complete_tiles(wd):
    """Per-date tile stores on disk under their final name: complete, since every store
    is written under a temporary name and renamed into place (also inside a batch whose
    job was still running)."""
    out = {}
    for p in (wd / "results").glob("*/tile/*/*.zarr"):
        if (p / "zarr.json").exists():
            out[p] = max(f.stat().st_mtime_ns for f in p.rglob("*"))
    return out


def process_state(pid: int) -> str:
    """R, S, T (stopped), Z (exited, not yet reaped)... from /proc; "" when gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return ""


def wildcards(text: str) -> dict:
    """'aoi=a, batch=2022-01-21' (a job's wildcards as Snakemake logs them) -> dict."""
    return dict(kv.split("=", 1) for kv in text.split(", "))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    wd = make_workdir(tmp_path_factory.mktemp("ref") / "wd")
    run(wd, config(wd))
    return wd


@pytest.mark.parametrize("when", [3, 12])
def test_kill_snakemake_then_resume(tmp_path, reference, when):
    wd = make_workdir(tmp_path / "wd")
    proc = start(wd, config(wd))
    wait_for(lambda: len(complete_tiles(wd)) >= when)
    os.killpg(proc.pid, signal.SIGKILL)  # snakemake and its running jobs
    proc.wait()
    done = complete_tiles(wd)
    assert done
    assert clear_stale_lock(wd)  # the killed run's lock (make demo does this itself)
    _, jobs = run(wd, config(wd))  # the next run, as the README recommends
    after = complete_tiles(wd)
    assert all(after[p] == m for p, m in done.items())  # completed tiles kept, not rewritten
    for wc in (wildcards(w) for r, w in jobs if r == "tile"):  # a tile job that reran read only the missing dates
        batch = wd / "results" / wc["aoi"] / "tile" / wc["batch"]
        kept = sum(p.parent == batch for p in done)
        n = len(list(batch.glob("*.zarr")))
        log = (wd / "results" / "logs" / "tile" / wc["aoi"] / f"{wc['batch']}.log").read_text()
        assert f"{n} date(s), {kept} kept from an earlier run, {n - kept} to read" in log
    for aoi in ("banc_arguin", "cap_ferret", "dune_du_pilat"):
        nc = f"{aoi}/{aoi}_2022-01-20_2022-02-15.nc"
        same_netcdf(wd / "results" / nc, reference / "results" / nc)
    assert not list((wd / "results").rglob(".*.tmp-*"))  # no temporary leftovers


def test_kill_one_job_then_resume(tmp_path, reference):
    wd = make_workdir(tmp_path / "wd")
    proc = start(wd, config(wd))

    def a_tile_job():
        out = subprocess.run(["pgrep", "-f", f"{wd}/.snakemake/scripts/.*tile.py"], capture_output=True, text=True)
        return [int(p) for p in out.stdout.split()]

    def kill_a_running_tile_job() -> bool:
        """SIGKILL a tile job caught before its end. A job can end between pgrep and
        the kill (a stage ends its process as soon as it succeeds), and a kill that
        reaches an exited process changes nothing: each process found is stopped
        first, and killed only if it stopped (state T), not if it had exited (Z)."""
        pids = a_tile_job()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
        time.sleep(0.05)
        if not any(process_state(pid) == "T" for pid in pids):
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
            return False
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return True

    wait_for(lambda: len(complete_tiles(wd)) >= 2 and kill_a_running_tile_job())
    proc.wait(600)
    assert proc.returncode != 0  # the killed job failed the run
    assert not clear_stale_lock(wd)  # Snakemake itself ended cleanly: no stale lock
    _, jobs = run(wd, config(wd))
    for aoi in ("banc_arguin", "cap_ferret", "dune_du_pilat"):
        nc = f"{aoi}/{aoi}_2022-01-20_2022-02-15.nc"
        same_netcdf(wd / "results" / nc, reference / "results" / nc)
