"""benchmarks/scale.py's per-stage costs: a rerun's own jobs only (``since``), their
walls summed and the largest peak RSS, checked against hand-computed arithmetic on
benchmark files of a base run and a rerun in one results folder."""

from __future__ import annotations

import os
import sys

from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
import scale  # noqa: E402


def test_job_costs_of_a_rerun_count_only_its_own_jobs(tmp_path):
    bench = tmp_path / "benchmarks"
    base_t, rerun_t = 1_000_000.0, 1_000_100.0
    written = {  # file: (mtime, wall s, max_rss MB)
        "tile/large/2021-08.tsv": (base_t, 6.0, 700.0),
        "tile/large/2021-09.tsv": (rerun_t + 1, 1.4, 217.0),
        "offset_fix/large/2021-09.tsv": (rerun_t + 2, 2.2, 430.0),
        "gapfill/large.tsv": (rerun_t + 3, 40.4, 870.0),
        "netcdf/large.tsv": (rerun_t + 4, 19.2, "NA"),  # a job without an RSS figure
        "mask/large/2021-08.tsv": (base_t, 3.0, 480.0),
    }
    for name, (mtime, wall, rss) in written.items():
        f = bench / name
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(f"s\th:m:s\tmax_rss\n{wall}\t0:00:01\t{rss}\n")
        os.utime(f, (mtime, mtime))

    assert scale.job_costs(tmp_path, rerun_t) == {
        "gapfill": {"jobs": 1, "wall_s": 40.4, "max_rss_mb": 870},
        "netcdf": {"jobs": 1, "wall_s": 19.2, "max_rss_mb": None},
        "offset_fix": {"jobs": 1, "wall_s": 2.2, "max_rss_mb": 430},
        "tile": {"jobs": 1, "wall_s": 1.4, "max_rss_mb": 217},
    }
    # the whole folder: both tile jobs (6.0 + 1.4 s, the larger peak) and the base run's mask
    every = scale.job_costs(tmp_path)
    assert every["tile"] == {"jobs": 2, "wall_s": 7.4, "max_rss_mb": 700}
    assert every["mask"] == {"jobs": 1, "wall_s": 3.0, "max_rss_mb": 480}
