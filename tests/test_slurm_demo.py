"""The multi-polygon demo on a real SLURM cluster (cluster/slurm/start.sh, started
by .ci/run) with profiles/slurm: same NetCDFs (values and coordinates) as
the local executor, and per-date jobs grouped into few SLURM submissions."""

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
    submitted = len(re.findall(r"submitted with SLURM jobid", slurm.stderr))
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
