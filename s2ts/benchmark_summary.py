"""Benchmark summary stage: one table of the run's per-job benchmarks.

Snakemake writes one TSV per job under ``<results>/benchmarks/<stage>/`` (``<aoi>.tsv``
for per-AOI stages, ``<aoi>/<date>.tsv`` for per-date ones) with the wall time
``s``, peak memory ``max_rss`` (MB), ``cpu_time`` (s), ... Its HTML report shows
its own run times per rule but not these files, so this stage sums them per AOI
and stage into ``summary.csv`` and the same table as ``summary.html`` (shown in
the report):

    aoi,stage,jobs,total_s,mean_s,max_s,max_rss_mb,cpu_time_s

plus one ``all stages`` row per AOI. Stages keep the workflow's order. A file
whose values are missing (``NA``) counts as a job without figures.
"""

from __future__ import annotations

import csv
import html
import logging
import math
from pathlib import Path

log = logging.getLogger("benchmark_summary")

STAGE_ORDER = [
    "demo_catalog",
    "aoi_grid",
    "stac_manifest",
    "tile",
    "offset_fix",
    "mask",
    "gapfill",
    "netcdf",
    "regular",
    "figures",
    "csv_export",
]
COLUMNS = ["aoi", "stage", "jobs", "total_s", "mean_s", "max_s", "max_rss_mb", "cpu_time_s"]


def _num(text) -> float:
    try:
        v = float(text)
    except (TypeError, ValueError):
        return math.nan
    return v


def read_benchmark(path) -> dict:
    """The first data row of a Snakemake benchmark TSV as floats (NaN for NA)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    if not rows:
        return {}
    return {k: _num(v) for k, v in rows[0].items() if k != "h:m:s"}


def parse_path(path, benchmarks_dir) -> tuple[str, str]:
    """(stage, aoi) of ``<benchmarks_dir>/<stage>/<aoi>.tsv`` or ``.../<stage>/<aoi>/<date>.tsv``."""
    rel = Path(path).resolve().relative_to(Path(benchmarks_dir).resolve())
    parts = rel.parts
    if len(parts) == 2:
        return parts[0], Path(parts[1]).stem
    if len(parts) >= 3:
        return parts[0], parts[1]
    return "other", Path(parts[0]).stem


def _stage_key(stage: str) -> tuple[int, str]:
    return (STAGE_ORDER.index(stage) if stage in STAGE_ORDER else len(STAGE_ORDER), stage)


def _agg(records: list[dict]) -> dict:
    def vals(key):
        return [r[key] for r in records if key in r and not math.isnan(r[key])]

    s, rss, cpu = vals("s"), vals("max_rss"), vals("cpu_time")
    return {
        "jobs": len(records),
        "total_s": sum(s) if s else math.nan,
        "mean_s": sum(s) / len(s) if s else math.nan,
        "max_s": max(s) if s else math.nan,
        "max_rss_mb": max(rss) if rss else math.nan,
        "cpu_time_s": sum(cpu) if cpu else math.nan,
    }


def summarise(paths, benchmarks_dir) -> list[dict]:
    groups: dict[tuple[str, str], list[dict]] = {}
    for p in paths:
        stage, aoi = parse_path(p, benchmarks_dir)
        groups.setdefault((aoi, stage), []).append(read_benchmark(p))
    rows = []
    for aoi in sorted({a for a, _ in groups}):
        stages = sorted((s for a, s in groups if a == aoi), key=_stage_key)
        for stage in stages:
            rows.append({"aoi": aoi, "stage": stage, **_agg(groups[(aoi, stage)])})
        rows.append({"aoi": aoi, "stage": "all stages", **_agg([r for s in stages for r in groups[(aoi, s)]])})
    return rows


def _fmt(v) -> str:
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.2f}"
    return str(v)


def write_csv(rows: list[dict], out_csv) -> None:
    with open(out_csv, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        for r in rows:
            w.writerow({k: _fmt(r[k]) for k in COLUMNS})


def write_html(rows: list[dict], out_html, title: str = "Benchmarks per AOI and stage") -> None:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in COLUMNS)
    body = []
    for r in rows:
        cls = ' class="total"' if r["stage"] == "all stages" else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{html.escape(_fmt(r[c]))}</td>" for c in COLUMNS) + "</tr>")
    Path(out_html).write_text(
        "<!doctype html>\n<html><head><meta charset='utf-8'><title>"
        + html.escape(title)
        + "</title><style>body{font-family:sans-serif;margin:1em}table{border-collapse:collapse}"
        "th,td{border:1px solid #bbb;padding:3px 8px;text-align:right}th{background:#eee}"
        "td:nth-child(-n+2){text-align:left}tr.total{font-weight:bold;background:#f6f6f6}</style></head><body>"
        f"<h3>{html.escape(title)}</h3><p>Sums of Snakemake's per-job benchmark files: wall time (s), "
        "peak resident memory (MB), CPU time (s).</p>"
        f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></body></html>\n"
    )


def benchmark_summary(paths, benchmarks_dir, out_csv, out_html) -> list[dict]:
    rows = summarise(paths, benchmarks_dir)
    Path(out_csv).parent.mkdir(parents=True, exist_ok=True)
    write_csv(rows, out_csv)
    write_html(rows, out_html)
    log.info("summarised %d benchmark files into %d rows: %s", len(list(paths)), len(rows), out_csv)
    return rows


def benchmark_summary_from_snakemake(smk) -> None:
    # summary.csv is written in the benchmarks folder itself (<results>/benchmarks/summary.csv)
    out_csv = Path(smk.output.csv)
    benchmark_summary(list(smk.input.benchmarks), out_csv.parent, out_csv, smk.output.html)
