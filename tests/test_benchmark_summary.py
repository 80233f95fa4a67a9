"""Benchmark summary stage: sums of Snakemake's per-job benchmark files per AOI and stage,
checked against hand-made TSVs and against the files of the demo run."""

from __future__ import annotations

import csv
import math
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from test_figures import short_demo_run  # noqa: E402

from s2ts.benchmark_summary import benchmark_summary_from_snakemake, parse_path, read_benchmark  # noqa: E402

HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def tsv(path: Path, s, rss, cpu) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + f"{s}\t0:00:01\t{rss}\t1\t1\t1\t0\t0\t50\t{cpu}\n")
    return path


def test_sums_per_aoi_and_stage(tmp_path):
    b = tmp_path / "benchmarks"
    files = [
        tsv(b / "tile" / "a" / "2022-01-03.tsv", 2.0, 100.0, 1.5),
        tsv(b / "tile" / "a" / "2022-01-08.tsv", 4.0, 150.0, 2.5),
        tsv(b / "netcdf" / "a.tsv", 1.0, 80.0, 0.5),
        tsv(b / "stac_manifest" / "a.tsv", 0.5, 50.0, 0.2),
        tsv(b / "tile" / "b" / "2022-01.tsv", 3.0, 120.0, "NA"),
        tsv(b / "figures" / "b.tsv", "NA", "NA", "NA"),
    ]
    out_csv, out_html = tmp_path / "benchmarks" / "summary.csv", tmp_path / "benchmarks" / "summary.html"
    smk = SimpleNamespace(
        input=SimpleNamespace(benchmarks=[str(f) for f in files]),
        output=SimpleNamespace(csv=str(out_csv), html=str(out_html)),
    )
    benchmark_summary_from_snakemake(smk)
    rows = list(csv.DictReader(open(out_csv)))
    got = [(r["aoi"], r["stage"], r["jobs"], r["total_s"], r["max_s"], r["max_rss_mb"], r["cpu_time_s"]) for r in rows]
    assert got == [
        ("a", "stac_manifest", "1", "0.50", "0.50", "50.00", "0.20"),  # workflow order, not alphabetical
        ("a", "tile", "2", "6.00", "4.00", "150.00", "4.00"),
        ("a", "netcdf", "1", "1.00", "1.00", "80.00", "0.50"),
        ("a", "all stages", "4", "7.50", "4.00", "150.00", "4.70"),
        ("b", "tile", "1", "3.00", "3.00", "120.00", ""),
        ("b", "figures", "1", "", "", "", ""),
        ("b", "all stages", "2", "3.00", "3.00", "120.00", ""),
    ]
    assert rows[1]["mean_s"] == "3.00"
    html = out_html.read_text()
    assert html.startswith("<!doctype html>") and html.count("<tr") == len(rows) + 1


def test_parse_and_read(tmp_path):
    b = tmp_path / "benchmarks"
    assert parse_path(b / "mask" / "x" / "2022-01.tsv", b) == ("mask", "x")
    assert parse_path(b / "gapfill" / "x.tsv", b) == ("gapfill", "x")
    rec = read_benchmark(tsv(b / "gapfill" / "x.tsv", 1.25, "NA", 1))
    assert rec["s"] == 1.25 and math.isnan(rec["max_rss"]) and "h:m:s" not in rec


def test_demo_run_summary_covers_every_stage(tmp_path_factory):
    results = short_demo_run(tmp_path_factory)
    rows = list(csv.DictReader(open(results / "benchmarks" / "summary.csv")))
    stages = [r["stage"] for r in rows if r["aoi"] == "1"]
    assert stages == [
        "stac_manifest", "tile", "offset_fix", "mask", "gapfill", "netcdf", "figures", "csv_export", "all stages"
    ]  # fmt: skip
    n_files = sum(1 for p in (results / "benchmarks").rglob("*.tsv"))
    total = next(r for r in rows if r["stage"] == "all stages")
    assert int(total["jobs"]) == n_files
    assert float(total["total_s"]) == pytest.approx(sum(float(r["total_s"]) for r in rows[:-1]), abs=0.05)
    assert (results / "benchmarks" / "summary.html").exists()
