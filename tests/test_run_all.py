"""benchmarks/run_all.py's pairs of full runs (``--pairs``): which side runs first in
each pair, where each workflow run writes, the median ratio, and the verdict the
report gives on it. The runs are a recording stand-in for the Runner (the real
runs are `make bench`'s: minutes each); the expected order, folders, ratios and
verdicts are worked out by hand below."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
import run_all  # noqa: E402


class Recorder:
    """Stands for run_all.Runner: records each call, answers the given walls in turn."""

    def __init__(self, walls: dict[str, list[float]]):
        self.walls = {side: list(w) for side, w in walls.items()}
        self.calls: list[tuple] = []

    def workflow(self, name, stac_url, results, start, end, setting=None):
        self.calls.append(("workflow", name, Path(results)))
        return {"wall_s": self.walls["workflow"].pop(0)}

    def original(self, name, stac_url, catalog, start, end, ours):
        self.calls.append(("original", name, ours))
        return {"wall_s": self.walls["original"].pop(0)}


def local_figures(original_s: float, workflow_s: float, pairs: dict) -> dict:
    """The local transport's figures as measure() records them, for run_all.table."""
    local = {
        "original": {"wall_s": original_s, "steps_s": 9.0},
        "workflow": {"wall_s": workflow_s},
        "pairs": pairs,
        "noop": {"wall_s": 1.0, "share_of_full": 0.1},
    }
    return {"transports": {"local": local}}


def test_pairs_alternate_the_order_and_the_verdict_uses_their_median(tmp_path):
    rec = Recorder({"workflow": [9.0, 11.0, 9.9, 12.0], "original": [10.0, 10.0, 10.0, 10.0]})
    first = ({"wall_s": 10.8}, {"wall_s": 10.0})  # the pair measure() ran: 1.08
    got = run_all.more_pairs(
        "local", "http://stac", tmp_path / "cat", tmp_path, rec, [], *first, ("2021-01-01", "2023-01-01"), 5
    )
    # pairs 2 and 4 start with the original, pairs 3 and 5 with the workflow
    assert [c[0] for c in rec.calls] == [
        "original", "workflow",  # pair 2
        "workflow", "original",  # pair 3
        "original", "workflow",  # pair 4
        "workflow", "original",  # pair 5
    ]  # fmt: skip
    # every workflow run in a fresh folder, none in the first pair's; no comparison cube asked
    folders = [c[2] for c in rec.calls if c[0] == "workflow"]
    assert folders == [tmp_path / f"full-{k}" for k in (2, 3, 4, 5)]
    assert all(c[2] is None for c in rec.calls if c[0] == "original")
    # ratios 1.08, 0.90, 1.10, 0.99, 1.20: the median is 1.08
    assert [r["ratio"] for r in got["runs"]] == [1.08, 0.9, 1.1, 0.99, 1.2]
    assert got["median_ratio"] == 1.08

    fig = local_figures(10.0, 10.8, got)
    rows = {line.split(" | ")[1]: line for line in run_all.table(fig).splitlines() if line.startswith("| local")}
    assert "**not met**" in rows["5 pairs of full runs, the order alternating (workflow / original s)"]
    assert "median 1.08" in rows["5 pairs of full runs, the order alternating (workflow / original s)"]
    assert "not met" not in rows["workflow, shipped defaults"]  # the verdict moved to the pairs' row


def test_one_pair_keeps_the_verdict_on_the_full_run(tmp_path):
    rec = Recorder({"workflow": [], "original": []})
    got = run_all.more_pairs(
        "local", "u", tmp_path, tmp_path, rec, [], {"wall_s": 9.5}, {"wall_s": 10.0}, ("2021-01-01", "2021-02-01"), 1
    )
    assert rec.calls == [] and got["median_ratio"] == 0.95
    fig = local_figures(10.0, 9.5, got)
    lines = [line for line in run_all.table(fig).splitlines() if line.startswith("| local | workflow, shipped")]
    assert lines and lines[0].endswith("wall <= 1.0 (stretch 0.5): met |")
    assert "pairs of full runs" not in run_all.table(fig)


def one_new_date_rows(full_s: float, rerun: dict, marker: str) -> list[str]:
    """The local table's lines holding ``marker`` for a one-new-date ``rerun``."""
    fig = local_figures(full_s, full_s, {"runs": [], "median_ratio": 1.0})
    fig["transports"]["local"]["one_new_date"] = {"date": "2022-12-31", "items_of_date": 1, **rerun}
    return [line for line in run_all.table(fig).splitlines() if marker in line]


def test_one_new_date_floor_counts_the_rerun_jobs_imports_and_snakemakes_own(tmp_path):
    # benchmark files of a base run (written before the rerun started) and of a rerun
    bench = tmp_path / "benchmarks"
    base_t, rerun_t = 1_000_000.0, 1_000_100.0
    written = {
        "stac_manifest/1.tsv": rerun_t + 1,
        "tile/1/2021.tsv": base_t,
        "tile/1/2022.tsv": rerun_t + 2,
        "offset_fix/1/2021.tsv": base_t,
        "offset_fix/1/2022.tsv": rerun_t + 3,
        "mask/1/2022.tsv": rerun_t + 4,
        "gapfill/1.tsv": rerun_t + 5,
        "netcdf/1.tsv": rerun_t + 6,
    }
    for name, mtime in written.items():
        f = bench / name
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text("s\n1.0\n")
        os.utime(f, (mtime, mtime))
    jobs = run_all.jobs_since(tmp_path, rerun_t)
    assert jobs == {"gapfill": 1, "mask": 1, "netcdf": 1, "offset_fix": 1, "stac_manifest": 1, "tile": 1}

    stages = {
        "tile": {"import_s": 0.85},
        "offset_fix": {"import_s": 0.67},
        "mask": {"import_s": 0.63},
        "gapfill": {"import_s": 0.62},
        "netcdf": {"import_s": 0.69},
        "stac_manifest": {"import_s": None},
    }
    floor = run_all.rerun_floor(1.3, {**jobs, "tile": 2}, stages, 10.0)
    # 1.3 + 2 x 0.85 + 0.67 + 0.63 + 0.62 + 0.69 = 5.61 s; stac_manifest has no figure and counts 0
    assert floor["seconds"] == 5.61
    assert floor["share_of_full"] == 0.561
    assert floor["without_import_figure"] == ["stac_manifest"]

    rows = one_new_date_rows(10.0, {"wall_s": 8.0, "share_of_full": 0.8, "floor": floor}, "its floor")
    assert len(rows) == 1
    assert "| 5.6 |" in rows[0] and "0.561 of the full run" in rows[0] and "7 jobs" in rows[0]
    assert "no import figure for stac_manifest" in rows[0]


def test_the_process_start_runs_this_snakemakes_script_preamble():
    # None when the preamble's imports fail (a Snakemake that moved them); a new
    # interpreter takes some milliseconds, and not seconds
    s = run_all.process_start_seconds(repeat=1)
    assert s is not None and 0.005 < s < 2.0


def test_one_new_date_series_bound_counts_snakemakes_own_and_the_per_aoi_jobs_work(tmp_path):
    # a base run's files (before the rerun) and a rerun's: per-AOI jobs sit at
    # benchmarks/<stage>/<aoi>.tsv, batch jobs one folder deeper
    bench = tmp_path / "benchmarks"
    base_t, rerun_t = 1_000_000.0, 1_000_100.0
    written = {
        "stac_manifest/1.tsv": (rerun_t + 1, 0.50),
        "tile/1/2022.tsv": (rerun_t + 2, 3.00),
        "offset_fix/1/2022.tsv": (rerun_t + 3, 1.40),
        "gapfill/1.tsv": (rerun_t + 5, 2.20),
        "gapfill/2.tsv": (base_t, 9.00),  # another AOI's, not rerun
        "netcdf/1.tsv": (rerun_t + 6, 1.85),
        "figures/1.tsv": (rerun_t + 7, 4.00),  # a stage with no import figure
    }
    for name, (mtime, wall) in written.items():
        f = bench / name
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(f"s\th:m:s\n{wall}\t0:00:01\n")
        os.utime(f, (mtime, mtime))
    walls = run_all.per_aoi_walls_since(tmp_path, rerun_t)
    assert walls == {"figures": [4.0], "gapfill": [2.2], "netcdf": [1.85], "stac_manifest": [0.5]}

    stages = {
        "stac_manifest": {"import_s": 0.15},
        "gapfill": {"import_s": 0.73},
        "netcdf": {"import_s": 0.77},
        "tile": {"import_s": 0.89},
    }
    bound = run_all.rerun_series_bound(1.4, walls, stages, 15.4, process_s=0.1)
    # 1.4 + (0.5 - 0.15 - 0.1) + (2.2 - 0.73 - 0.1) + (1.85 - 0.77 - 0.1) = 1.4 + 0.25 + 1.37 + 0.98 = 4.00 s
    assert bound["seconds"] == 4.0
    assert bound["share_of_full"] == round(4.0 / 15.4, 3)
    assert bound["work_s"] == {"gapfill": 1.37, "netcdf": 0.98, "stac_manifest": 0.25}
    assert bound["without_import_figure"] == ["figures"]

    rows = one_new_date_rows(15.4, {"wall_s": 8.4, "share_of_full": 0.545, "series_bound": bound}, "per-AOI stages")
    assert len(rows) == 1
    assert "| 4.0 |" in rows[0] and f"{round(4.0 / 15.4, 3):.3f} of the full run" in rows[0]
    assert "gapfill 1.37 s, netcdf 0.98 s, stac_manifest 0.25 s" in rows[0] and "0.10 s of process start" in rows[0]
    assert "no import figure for figures" in rows[0]
