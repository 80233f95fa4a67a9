"""`make bench`: the performance figures, side by side in one invocation.

Same machine, same cores, same data (the offline demo catalog, Banc d'Arguin,
2021-2022), all as ratios to a baseline measured in this same run:

1. the workflow, full demo run: ``tiles.batch: month`` with figures (what
   ``make demo`` runs), ``year`` with the NetCDF only (the original's product:
   the peer of the original) and ``date`` (one job per date and stage);
2. the original package (sits 0.8.0, separate venv) on the same items served by a
   STAC API on 127.0.0.1 (benchmarks/original_sits.py): workflow / original;
3. the read bound (benchmarks/read_bound.py): workflow / bound;
4. per-stage cost from Snakemake's benchmark files (mean wall, max RSS) and the
   share of each job's wall spent importing the stage's modules;
5. incremental: a no-op rerun and a one-new-date rerun, as ratios to the full run
   (``make demo``'s month batches; the date-batch rerun against the date-batch run).

    python benchmarks/run_all.py [--quick] [--json F]

``--quick`` skips the date-batch run and the original package; ``--original-scale``
adds the 2016-2025 run (workflow and original, about 1.8 GB of catalog), ``--skip-demo``
runs only that.
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
    cmd = [str(BIN / "snakemake")]
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


def slurm_client_delay() -> float | None:
    """Seconds ``scontrol show config`` takes here (None: no SLURM client).

    snakemake-executor-plugin-slurm runs it whenever Snakemake starts (timeout
    10 s); with a slurm.conf and no controller it waits about 9 s, which every
    snakemake command below would pay (cluster/slurm/stop.sh puts our conf aside)."""
    import shutil

    if not shutil.which("scontrol"):
        return None
    t0 = time.perf_counter()
    subprocess.run(["scontrol", "show", "config"], capture_output=True, timeout=30)
    return time.perf_counter() - t0


def ratio(a, b):
    return round(a / b, 3) if a is not None and b else None


def table(fig: dict) -> str:
    """The figures as a Markdown table (what docs/performance.md records)."""
    orig = fig.get("original") or {}
    steps, sub = orig.get("steps_total_seconds"), orig.get("subprocess_wall_seconds")
    rb = (fig.get("read_bound") or {}).get("plans", {}).get("odc", {}).get("single_thread", {}).get("seconds")
    peer = fig.get("workflow_year_netcdf_s")
    rows = [
        ("workflow, full demo, tiles.batch month, NetCDF + figures (make demo)", fig.get("workflow_month_s"), ""),
        ("workflow, full demo, tiles.batch year, NetCDF only (the original's product)", peer, ""),
        ("workflow, full demo, tiles.batch date, NetCDF + figures", fig.get("workflow_date_s"), ""),
        (
            "original (sits 0.8.0), sum of the tutorial's steps",
            steps,
            f"workflow (year, NetCDF) / original = {ratio(peer, steps)} (target <= 1.0, stretch <= 0.5)",
        ),
        ("original (sits 0.8.0), whole subprocess", sub, f"workflow (year, NetCDF) / original = {ratio(peer, sub)}"),
        (
            "read bound (odc plan, 1 thread)",
            rb,
            f"workflow (year, NetCDF) / bound = {ratio(peer, rb)} (target <= 3)",
        ),
        ("no-op rerun", fig.get("noop_s"), f"{fig.get('noop_ratio')} of the month run (target < 0.05)"),
        (
            "one new date, month batches",
            fig.get("one_new_date_s"),
            f"{fig.get('one_new_date_ratio')} of the month run (target < 0.15)",
        ),
        (
            "one new date, date batches",
            fig.get("one_new_date_date_s"),
            f"{fig.get('one_new_date_date_ratio')} of the date-batch run",
        ),
    ]
    out = ["| run | seconds | ratio |", "|---|---:|---|"]
    out += [f"| {name} | {'' if s is None else round(s, 1)} | {note} |" for name, s, note in rows]
    out += [
        "",
        "| stage | jobs | mean wall (s) | max RSS (MB) | import (s) | import share |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for stage, c in fig.get("stages", {}).items():
        out.append(
            f"| {stage} | {c['jobs']} | {c['mean_wall_s']} | {c['max_rss_mb']} | {c['import_s']} | {c['import_share']} |"
        )
    return "\n".join(out)


def one_new_date(root: Path, batch: str) -> float:
    """Wall of a rerun after the period grew by the last acquisition (2022-12-31):
    the same run first stopped the day before, then extended."""
    snakemake(root, {"tiles": {"batch": batch}, "dates": {"start": "2021-01-01", "end": "2022-12-31"}})
    return snakemake(root, {"tiles": {"batch": batch}, "dates": {"start": "2021-01-01", "end": "2023-01-01"}})


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument(
        "--original-scale", action="store_true", help="also 2016-01-01..2025-01-01 (generates a 1.6 GB catalog)"
    )
    ap.add_argument("--skip-demo", action="store_true", help="only the original-scale run (with --original-scale)")
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    fig: dict = {"machine": machine(), "slurm_client_delay_s": slurm_client_delay()}
    print(f"machine: {fig['machine']}")
    if (fig["slurm_client_delay_s"] or 0) > 1:
        print(
            f"WARNING: 'scontrol show config' takes {fig['slurm_client_delay_s']:.1f} s (a slurm.conf without a "
            "controller): every snakemake command pays it (bash cluster/slurm/stop.sh puts the conf aside)",
            file=sys.stderr,
        )
    # the demo catalog is shared by every run: generate it first, outside the timings
    if not a.skip_demo:
        demo_runs(fig, a.quick)
    if a.original_scale:
        original_scale(fig)
    if not a.skip_demo:
        print(table(fig))
    if "original_scale" in fig:
        o = fig["original_scale"]
        print(f"\noriginal scale (2016-2025, year batches, NetCDF only): {o['workflow_s']} s, NetCDF {o['netcdf_mb']} MB, "
              f"{o['dates']} dates; original: {o.get('original_steps_s')} s (steps), {o.get('original_subprocess_s')} s "
              f"(subprocess); workflow / original = {o.get('ratio_steps')} (steps), {o.get('ratio_subprocess')} (subprocess)")  # fmt: skip
    if a.json:
        Path(a.json).write_text(json.dumps(fig, indent=1, default=str))
    return fig


def demo_runs(fig: dict, quick: bool) -> None:
    snakemake(Path(tempfile.mkdtemp()) / "warm", {"dates": {"start": "2021-01-01", "end": "2021-01-10"}})
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        month = tmp / "month"
        full = snakemake(month, {"tiles": {"batch": "month"}})
        fig["workflow_month_s"] = round(full, 1)
        fig["noop_s"] = round(snakemake(month, {"tiles": {"batch": "month"}}), 2)
        fig["noop_ratio"] = ratio(fig["noop_s"], full)
        fig["one_new_date_s"] = round(one_new_date(tmp / "inc-month", "month"), 1)
        fig["one_new_date_ratio"] = ratio(fig["one_new_date_s"], full)
        fig["stages"] = stage_costs(month)
        peer = tmp / "year"
        fig["workflow_year_netcdf_s"] = round(
            snakemake(peer, {"tiles": {"batch": "year"}, "figures": {"enabled": False}}), 1
        )
        rb = child_json("read_bound.py", ["--results", str(month), "--aoi", "1"])
        if rb:
            fig["read_bound"] = rb
        if not quick:
            day = tmp / "date"
            fig["workflow_date_s"] = round(snakemake(day, {"tiles": {"batch": "date"}}), 1)
            fig["one_new_date_date_s"] = round(one_new_date(tmp / "inc-date", "date"), 1)
            fig["one_new_date_date_ratio"] = ratio(fig["one_new_date_date_s"], fig["workflow_date_s"])
            nc = peer / "1" / "1_2021-01-01_2023-01-01.nc"
            sits = child_json("original_sits.py", ["--ours", str(nc)])
            if sits:
                fig["original"] = sits


def original_scale(fig: dict) -> None:
    """The tutorial's whole period, 2016-01-01..2025-01-01, generated offline: the
    workflow (year batches, NetCDF only) and the original on the same catalog."""
    big = Path(tempfile.mkdtemp(prefix="s2ts-full-"))
    over = {"demo": {"path": str(big / "catalog"), "start": "2016-01-01", "end": "2025-01-01", "seed": 0},
            "dates": {"start": "2016-01-01", "end": "2025-01-01"}, "tiles": {"batch": "year"},
            "figures": {"enabled": False}}  # fmt: skip
    t0 = time.perf_counter()
    snakemake(big / "warm", {**over, "dates": {"start": "2016-01-01", "end": "2016-01-10"}})
    gen = time.perf_counter() - t0
    wall = snakemake(big / "results", over)
    nc = big / "results" / "1" / "1_2016-01-01_2025-01-01.nc"
    info = json.loads((big / "results" / "1" / "manifest.json").read_text())
    cat_mb = sum(f.stat().st_size for f in (big / "catalog").rglob("*") if f.is_file()) / 1e6
    fig["original_scale"] = o = {
        "catalog_generation_s": round(gen, 1),
        "catalog_mb": round(cat_mb),
        "workflow_s": round(wall, 1),
        "dates": len(info["dates"]),
        "netcdf_mb": round(nc.stat().st_size / 1e6, 1),
    }
    sits = child_json(
        "original_sits.py",
        ["--start", "2016-01-01", "--end", "2025-01-01", "--catalog", str(big / "catalog"), "--ours", str(nc)],
    )
    if sits:
        o["original"] = sits
        o["original_steps_s"] = round(sits["steps_total_seconds"], 1)
        o["original_subprocess_s"] = round(sits["subprocess_wall_seconds"], 1)
        o["ratio_steps"] = ratio(wall, sits["steps_total_seconds"])
        o["ratio_subprocess"] = ratio(wall, sits["subprocess_wall_seconds"])


if __name__ == "__main__":
    main()
