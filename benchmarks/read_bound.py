"""The read bound: the time to only read the COG windows an AOI's cube needs.

For every item of an AOI's manifest (``<results>/<aoi>/manifest.csv``, columns
``href_<band>``) and the AOI's target grid (``<results>/<aoi>/aoi/grid.json``), the
grid's bounds are reprojected to the asset's CRS (``rasterio.warp.transform_bounds``,
densified edges), turned into a pixel window (rounded outwards, clipped to the image)
of the overview level a reader would use, and read with rasterio
(``rasterio.open(href, overview_level=...)``, ``src.read(1, window=...)``): no
resampling, no processing, no writing. This is what any loader must at least spend
on I/O and decompression.

Overview level, two plans (both measured by default, ``--plans``):

* ``odc``: what odc-stac / odc-loader (our loader, and sits's) picks: the read
  shrink factor from ``odc.geo.overlap.compute_reproject_roi`` (the smaller of the
  two axis scales, truncated to an integer unless within 1e-3 of the next one), then
  the largest overview factor not above it. SCL (mask band) at full resolution, as
  our loader reads it (``use_overviews=False``).
* ``nominal``: the nominal ratio, target resolution / native resolution, rounded
  (10 m bands at 40 m: the 4x overview); SCL at full resolution.

Each plan is read once single-threaded to warm the OS page cache (reported as the
first pass), then timed ``--repeat`` times (median reported) single-threaded and with
a thread pool (``--threads``, 2 by default: one task per asset, i.e. one open + one
windowed read).

    .venv/bin/python benchmarks/read_bound.py [--results results/demo --aoi 1] [--json F]
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MASK_BAND = "SCL"


def read_manifest(path: Path) -> tuple[list[dict], list[str]]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    bands = [c[len("href_") :] for c in (rows[0].keys() if rows else []) if c.startswith("href_")]
    return rows, bands


def pick_overview(read_shrink: int, factors: list[int]) -> int | None:
    """Index of the largest overview factor <= read_shrink (None: full resolution)."""
    best = None
    for i, f in enumerate(factors):
        if f <= read_shrink:
            best = i
    return best


_SHRINK: dict = {}
_BOUNDS: dict = {}


def odc_read_shrink(src, grid: dict) -> int:
    key = (src.crs.to_wkt(), tuple(src.transform)[:6], src.shape)
    if key not in _SHRINK:
        _SHRINK[key] = _odc_read_shrink(src, grid)
    return _SHRINK[key]


def grid_bounds_in(crs, grid: dict) -> tuple[float, float, float, float]:
    """The grid's bounds in ``crs`` (edges densified), cached per CRS."""
    from rasterio.warp import transform_bounds

    key = crs.to_wkt()
    if key not in _BOUNDS:
        _BOUNDS[key] = transform_bounds(grid["crs"], crs, *grid["bounds"], densify_pts=21)
    return _BOUNDS[key]


def _odc_read_shrink(src, grid: dict) -> int:
    from affine import Affine
    from odc.geo.geobox import GeoBox
    from odc.geo.overlap import compute_reproject_roi

    dst = GeoBox((grid["height"], grid["width"]), Affine(*grid["transform"][:6]), grid["crs"])
    srcbox = GeoBox(src.shape, src.transform, src.crs.to_wkt())
    return int(compute_reproject_roi(srcbox, dst).read_shrink)


def plan_asset(href: str, band: str, grid: dict, plan: str) -> dict:
    """Overview level and window of one asset for one plan."""
    import rasterio
    from rasterio.windows import Window

    with rasterio.open(href) as src:
        factors = src.overviews(1)
        native = abs(src.transform.a)
        if band == MASK_BAND:
            level, shrink = None, 1
        elif plan == "odc":
            shrink = odc_read_shrink(src, grid)
            level = pick_overview(shrink, factors)
        else:
            shrink = max(1, round(grid["resolution"] / native))
            level = pick_overview(shrink, factors)
        bounds = grid_bounds_in(src.crs, grid)
    kw = {} if level is None else {"overview_level": level}
    with rasterio.open(href, **kw) as src:
        w = src.window(*bounds)
        col0, row0 = math.floor(w.col_off), math.floor(w.row_off)
        col1, row1 = math.ceil(w.col_off + w.width), math.ceil(w.row_off + w.height)
        col0, row0 = max(col0, 0), max(row0, 0)
        col1, row1 = min(col1, src.width), min(row1, src.height)
        bh, bw = src.block_shapes[0]
        rows_b = range(row0 // bh, math.ceil(row1 / bh))
        cols_b = range(col0 // bw, math.ceil(col1 / bw))
        compressed = sum(src.block_size(1, i, j) for i in rows_b for j in cols_b)
        return {
            "href": href,
            "band": band,
            "level": level,
            "factor": 1 if level is None else factors[level],
            "read_shrink": shrink,
            "window": Window(col0, row0, col1 - col0, row1 - row0),
            "blocks": len(rows_b) * len(cols_b),
            "compressed_bytes": compressed,
            "file_bytes": os.path.getsize(href) if os.path.exists(href) else None,
        }


def read_one(task: dict) -> tuple[int, int]:
    """(pixels, bytes) read."""
    import rasterio

    kw = {} if task["level"] is None else {"overview_level": task["level"]}
    with rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR"):
        with rasterio.open(task["href"], **kw) as src:
            a = src.read(1, window=task["window"])
    return int(a.size), int(a.nbytes)


def run(tasks: list[dict], threads: int, repeat: int = 1) -> dict:
    """Median (and min, all) wall seconds of ``repeat`` reads of every task."""
    walls = []
    for _ in range(max(1, repeat)):
        t0 = time.perf_counter()
        if threads <= 1:
            res = [read_one(t) for t in tasks]
        else:
            with ThreadPoolExecutor(threads) as ex:
                res = list(ex.map(read_one, tasks))
        walls.append(time.perf_counter() - t0)
    return {
        "seconds": statistics.median(walls),
        "min_seconds": min(walls),
        "runs": walls,
        "pixels": sum(r[0] for r in res),
        "bytes": sum(r[1] for r in res),
    }


def machine() -> dict:
    cpu = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    kb = int(Path("/proc/meminfo").read_text().split()[1])
    return {
        "nproc": os.cpu_count(),
        "ram": f"{kb / 1024**2:.1f} GiB",
        "cpu": cpu,
        "python": platform.python_version(),
        "loadavg": ", ".join(f"{v:.2f}" for v in os.getloadavg()),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--results", default=str(ROOT / "results" / "demo"))
    p.add_argument("--aoi", default="1")
    p.add_argument("--threads", type=int, default=2, help="thread pool size of the parallel run")
    p.add_argument("--plans", default="odc,nominal", help="comma-separated: odc, nominal")
    p.add_argument("--repeat", type=int, default=3, help="timed runs per mode (the median is reported)")
    p.add_argument("--json", help="write the figures here")
    args = p.parse_args()

    base = Path(args.results) / args.aoi
    rows, bands = read_manifest(base / "manifest.csv")
    grid = json.loads((base / "aoi" / "grid.json").read_text())["grid"]
    if not rows:
        raise SystemExit(f"{base / 'manifest.csv'} lists no item")
    out: dict = {
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "machine": machine(),
        "results": str(base),
        "items": len(rows),
        "bands": bands,
        "grid": {k: grid[k] for k in ("crs", "resolution", "width", "height", "bounds")},
        "plans": {},
    }
    mc = out["machine"]
    print(
        f"machine: {mc['nproc']} CPUs ({mc['cpu']}), {mc['ram']}, Python {mc['python']}, load average {mc['loadavg']}"
    )
    print(f"{len(rows)} items x {len(bands)} assets ({', '.join(bands)}) from {base / 'manifest.csv'}")
    print(f"grid {grid['crs']} {grid['resolution']:g} m, {grid['height']} x {grid['width']}")
    for plan in [s.strip() for s in args.plans.split(",") if s.strip()]:
        t0 = time.perf_counter()
        tasks = [plan_asset(r[f"href_{b}"], b, grid, plan) for r in rows for b in bands]
        t_plan = time.perf_counter() - t0
        levels = {}
        for t in tasks:
            where = "full resolution" if t["level"] is None else f"overview {t['factor']}x"
            key = f"{t['band']}: {where}"
            levels.setdefault(key, {"assets": 0, "window": f"{t['window'].height} x {t['window'].width}"})
            levels[key]["assets"] += 1
        first = run(tasks, 1)
        single = run(tasks, 1, args.repeat)
        pool = run(tasks, args.threads, args.repeat)
        rec = {
            "levels": levels,
            "read_shrink": sorted({t["read_shrink"] for t in tasks}),
            "blocks_decoded": sum(t["blocks"] for t in tasks),
            "compressed_bytes": sum(t["compressed_bytes"] for t in tasks),
            "planning_seconds": t_plan,
            "first_pass_seconds": first["seconds"],
            "single_thread": single,
            f"pool_{args.threads}": pool,
            "pixels": single["pixels"],
            "bytes": single["bytes"],
        }
        out["plans"][plan] = rec
        n = len(rows)
        print(
            f"\nplan {plan}: "
            + "; ".join(f"{k} ({v['assets']} assets, window {v['window']})" for k, v in levels.items())
        )
        print(
            f"  read shrink {rec['read_shrink']}; {rec['blocks_decoded']} blocks decoded, "
            f"{rec['compressed_bytes'] / 1e6:.1f} MB compressed (the least an HTTP reader would fetch)"
        )
        print(f"  pixels read {single['pixels'] / 1e6:.1f} M, {single['bytes'] / 1e6:.1f} MB decoded")
        print(f"  {'run':<22} {'seconds':>8} {'min':>6} {'s/item':>8} {'Mpx/s':>7}")
        for name, r in (("first pass (1 thread)", first), ("1 thread", single), (f"pool of {args.threads}", pool)):
            print(
                f"  {name:<22} {r['seconds']:8.2f} {r.get('min_seconds', r['seconds']):6.2f} "
                f"{r['seconds'] / n:8.4f} {r['pixels'] / r['seconds'] / 1e6:7.1f}"
            )
        print(f"  (median of {args.repeat} runs after the first pass; the OS page cache is warm)")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, default=str))
        print(f"\nwritten {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
