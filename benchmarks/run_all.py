"""`make bench`: the performance figures, side by side in one invocation.

Same machine, same cores, same data (the offline demo catalog, Banc d'Arguin,
2021-2022), all as ratios to a baseline measured in this same run:

1. the workflow, full demo run, ``tiles.batch: month`` (the laptop setting) and
   ``date`` (one job per date and stage);
2. the original package (sits 0.8.0, separate venv) on the same items served by a
   STAC API on 127.0.0.1 (benchmarks/original_sits.py): workflow / original;
3. the read bound (benchmarks/read_bound.py): workflow / bound;
4. per-stage cost from Snakemake's benchmark files (mean wall, max RSS) and the
   share of each job's wall spent importing the stage's modules;
5. incremental: a no-op rerun and a one-new-date rerun, as ratios to the full run.

    python benchmarks/run_all.py [--quick] [--json F]

``--quick`` skips the date-batch run and the original package.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DEMO = [str(ROOT / "config" / "demo.yaml")]
STAGE_IMPORTS = {
    "tile": "import s2ts.tile, odc.stac, pystac, rasterio",
    "offset_fix": "import s2ts.offset_fix, zarr",
    "mask": "import s2ts.mask, zarr",
    "gapfill": "import s2ts.gapfill, zarr",
    "netcdf": "import s2ts.netcdf, netCDF4, pyproj, zarr",
}


def machine() -> str:
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    mem = int(next(ln.split()[1] for ln in open("/proc/meminfo") if ln.startswith("MemTotal"))) // 1024**2
    return f"{os.cpu_count()} cores ({cpu}), {mem} GB RAM, Python {platform.python_version()}"


def snakemake(results: Path, overrides: dict, extra=()) -> float:
    cfg = results.parent / f"{results.name}-{len(list(results.parent.glob('*.yaml')))}.yaml"
    results.parent.mkdir(parents=True, exist_ok=True)
    cfg.write_text(yaml.safe_dump({"results": str(results), **overrides}))
    cmd = [str(BIN / "snakemake"), "--workflow-profile", str(ROOT / "workflow" / "profiles" / "default")]
    cmd += ["--cores", "2", "--configfile", *DEMO, str(cfg), *extra]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(p.stderr[-3000:])
    return time.perf_counter() - t0


def import_seconds(stmt: str, repeat: int = 3) -> float:
    code = f"import time; t = time.perf_counter(); {stmt}; print(time.perf_counter() - t)"
    runs = []
    for _ in range(repeat):
        out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
        runs.append(float(out.stdout.strip()))
    return statistics.median(runs)


def stage_costs(results: Path) -> dict:
    out = {}
    for stage, stmt in STAGE_IMPORTS.items():
        rows = []
        for f in (results / "benchmarks" / stage).rglob("*.tsv"):
            rows += list(csv.DictReader(open(f), delimiter="\t"))
        if not rows:
            continue
        wall = statistics.mean(float(r["s"]) for r in rows)
        rss = max(float(r["max_rss"]) for r in rows if r["max_rss"] not in ("-", "NA"))
        imp = import_seconds(stmt)
        out[stage] = {
            "jobs": len(rows),
            "mean_wall_s": round(wall, 2),
            "max_rss_mb": round(rss),
            "import_s": round(imp, 2),
            "import_share": round(imp / wall, 2),
        }
    return out


def child_json(script: str, args: list[str]) -> dict | None:
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        p = subprocess.run(
            [sys.executable, str(ROOT / "benchmarks" / script), *args, "--json", f.name],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        if p.returncode != 0:
            print(f"{script} failed:\n{p.stderr[-2000:]}", file=sys.stderr)
            return None
        return json.loads(Path(f.name).read_text())


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument(
        "--original-scale", action="store_true", help="also 2016-01-01..2025-01-01 (generates a 1.6 GB catalog)"
    )
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    fig: dict = {"machine": machine()}
    print(f"machine: {fig['machine']}")
    # the demo catalog is shared by every run: generate it first, outside the timings
    snakemake(Path(tempfile.mkdtemp()) / "warm", {"dates": {"start": "2021-01-01", "end": "2021-01-10"}})
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        month = tmp / "month"
        full = snakemake(month, {"tiles": {"batch": "month"}})
        fig["workflow_month_s"] = round(full, 1)
        noop = snakemake(month, {"tiles": {"batch": "month"}})
        fig["noop_ratio"] = round(noop / full, 3)
        # one new date: the same run stopped before the last acquisition, then extended
        inc = tmp / "inc"
        snakemake(inc, {"tiles": {"batch": "date"}, "dates": {"start": "2021-01-01", "end": "2022-12-31"}})
        one = snakemake(inc, {"tiles": {"batch": "date"}, "dates": {"start": "2021-01-01", "end": "2023-01-01"}})
        fig["one_new_date_s"] = round(one, 1)
        fig["one_new_date_ratio"] = round(one / full, 3)
        fig["stages"] = stage_costs(month)
        rb = child_json("read_bound.py", ["--results", str(month), "--aoi", "1"])
        if rb:
            fig["read_bound"] = rb
        if not a.quick:
            day = tmp / "date"
            fig["workflow_date_s"] = round(snakemake(day, {"tiles": {"batch": "date"}}), 1)
            nc = month / "1" / "1_2021-01-01_2023-01-01.nc"
            sits = child_json("original_sits.py", ["--ours", str(nc)])
            if sits:
                fig["original"] = sits
    if a.original_scale:
        big = Path(tempfile.mkdtemp(prefix="s2ts-full-"))
        over = {"demo": {"path": str(big / "catalog"), "start": "2016-01-01", "end": "2025-01-01", "seed": 0},
                "dates": {"start": "2016-01-01", "end": "2025-01-01"}, "tiles": {"batch": "month"}}  # fmt: skip
        snakemake(big / "warm", {**over, "dates": {"start": "2016-01-01", "end": "2016-01-10"}})
        wall = snakemake(big / "results", over)
        nc = big / "results" / "1" / "1_2016-01-01_2025-01-01.nc"
        fig["original_scale"] = {"workflow_s": round(wall, 1), "netcdf_mb": round(nc.stat().st_size / 1e6, 1)}
        sits = child_json(
            "original_sits.py",
            ["--start", "2016-01-01", "--end", "2025-01-01", "--catalog", str(big / "catalog"), "--ours", str(nc)],
        )
        if sits:
            fig["original_scale"]["original"] = sits
    print(json.dumps(fig, indent=1, default=str)[:6000])
    if a.json:
        Path(a.json).write_text(json.dumps(fig, indent=1, default=str))
    return fig


if __name__ == "__main__":
    main()
