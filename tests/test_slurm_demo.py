"""The multi-polygon demo on a real SLURM cluster (cluster/slurm/start.sh, started
by .ci/run) with profiles/slurm: same NetCDFs (values and coordinates) as
the local executor, every non-local job ran inside a SLURM job Snakemake submitted
(each job log names its SLURM job: s2ts.runner), and per-date jobs grouped into
few SLURM submissions."""

import math
import re

import numpy as np
import pytest
import xarray as xr
from conftest import ROOT, run_workflow, service_missing
from test_slurm_cluster import _slurm_answers

SITES = ("banc_arguin", "cap_ferret", "dune_du_pilat")
PERIOD = {"dates": {"start": "2022-01-01", "end": "2022-02-01"}, "tiles": {"batch": "date"}}
CONFIGS = (ROOT / "config" / "demo.yaml", ROOT / "config" / "demo-sites.yaml")
LOCAL_RULES = {"aoi_grid", "stac_manifest", "benchmark_summary"}  # the Snakefile's localrules with a log
SUBMITTED = re.compile(r"has been submitted with SLURM jobid (\d+)")
STARTED = re.compile(r" INFO runner: rule (\w+)(?: \(.*?\))? on \S+, (?:SLURM job (\d+)|not under SLURM)$", re.M)


def jobs_in_logs(results) -> dict[str, tuple[str, str | None]]:
    """{job log: (rule, SLURM job id or None)}, from the line s2ts.runner starts each log with."""
    out = {}
    for log in (results / "logs").rglob("*.log"):
        m = STARTED.search(log.read_text())
        assert m, f"{log} does not say where its job ran"
        out[str(log.relative_to(results))] = (m.group(1), m.group(2))
    return out


@pytest.fixture(scope="module")
def cluster():
    reason = _slurm_answers()
    if reason:
        service_missing(reason)


def test_sites_on_slurm_equal_local(tmp_path, cluster):
    local = run_workflow(tmp_path / "local", *CONFIGS, overrides=PERIOD)
    slurm = run_workflow(
        tmp_path / "slurm",
        *CONFIGS,
        overrides=PERIOD,
        extra=["--workflow-profile", str(ROOT / "profiles" / "slurm"), "--jobs", "4"],
    )
    assert local.returncode == slurm.returncode == 0
    ids = SUBMITTED.findall(slurm.stderr)
    submitted = len(ids)
    # ran under SLURM: every job of a non-local rule logs the SLURM job it ran in, one Snakemake
    # submitted (a retried job's log names its last submission); the local run's jobs ran outside SLURM
    ran = jobs_in_logs(tmp_path / "slurm")
    assert {rule for rule, _ in ran.values()} >= {"tile", "offset_fix", "mask", "gapfill", "netcdf", "figures"}
    for log, (rule, job) in ran.items():
        assert (job is None) if rule in LOCAL_RULES else (job in ids), (log, rule, job, ids)
    in_logs = {job for _, job in ran.values() if job}
    assert submitted > 0 and len(set(ids)) == submitted and in_logs and in_logs <= set(ids)
    assert all(job is None for _, job in jobs_in_logs(tmp_path / "local").values())
    n_dates = 0
    for aoi in SITES:
        nc = f"{aoi}/{aoi}_2022-01-01_2022-02-01.nc"
        a, b = xr.open_dataset(tmp_path / "local" / nc), xr.open_dataset(tmp_path / "slurm" / nc)
        for v in ("B03", "B04", "B08", "flag", "valid_fraction", "x", "y", "time"):
            np.testing.assert_array_equal(a[v].values, b[v].values)
        assert a.rio.crs == b.rio.crs
        n_dates += a.sizes["time"]
    # per AOI: ceil(dates / 20) grouped per-date jobs + gapfill + netcdf (+ figures);
    # ungrouped it would be 3 jobs per date
    per_aoi_extra = 4
    assert submitted <= sum(math.ceil(n / 20) for n in [n_dates]) + len(SITES) * per_aoi_extra
    assert submitted < 3 * n_dates
    # and at least: one per AOI for each of gapfill, netcdf and figures, plus the grouped per-date jobs
    assert submitted >= 3 * len(SITES) + 1
