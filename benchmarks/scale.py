"""Scale benchmark: a large AOI over 100+ dates from the demo generator.

The demo generator renders a square scene of ``--extent-km`` (default 42 km)
around the Arcachon inlet (``s2ts.demo_catalog --extent-km``); the workflow runs
with its shipped defaults on square AOIs centred on it, on a UTM 30N grid at
``--resolution`` m (default 10: the 40 km AOI is 4000 x 4000 pixels, and over its
102 dates the int16 cube of 3 bands is 9.8 GB), with every item kept
(``max_cloud_cover: 100``) and no figures. Three runs give two points each for area
and for dates:

* ``large``: the large AOI (``--aoi-km``, default 40 km) over the whole period;
* ``large-half``: the same AOI over the first half of the dates;
* ``quarter``: an AOI of half the side (a quarter of the area), whole period;
* ``large-new-date`` (not run by default): the large AOI without its last acquisition
  date, then with it, in one results folder: the second run's wall as a share of
  ``large``'s (issue 12's one-new-date target, < 0.15) and its jobs per stage;

plus the small demo (tutorial polygon, 40 m, 2021-2022, no figures) in the same
invocation as the throughput baseline. Printed per run: wall, dates, grid,
pixel-dates per second, the peak RSS of the largest job and per stage (Snakemake
``benchmark:`` files). Targets: every job's peak RSS <= 4 GB; ``gapfill`` and
``netcdf`` <= 2 GB on the large run (a cube larger than a job's memory is read,
filled and written chunk by chunk); throughput within 2x of the small demo's.

    python benchmarks/scale.py [--extent-km 42 --aoi-km 40 --resolution 10
                                --start 2021-01-01 --end 2021-09-15
                                --runs small_demo,large,large-half,quarter --json F]

The catalog is kept in ``.bench/scale-catalog`` (git-ignored) and reused when its
parameters match.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from run_all import benchmark_files, machine, snakemake  # noqa: E402


def catalog(path: Path, extent_km: float, start: str, end: str) -> tuple[Path, float | None]:
    """The scale catalog (generated once per parameter set); returns (catalog.json, seconds or None)."""
    from s2ts.demo_catalog import generate_demo_catalog

    params = {"extent_km": extent_km, "start": start, "end": end, "seed": 0}
    stamp = path.parent / f"{path.name}.json"
    if (path / "catalog.json").exists() and stamp.exists() and json.loads(stamp.read_text()) == params:
        return path / "catalog.json", None
    t0 = time.perf_counter()
    out = generate_demo_catalog(path, start, end, seed=0, workers=2, extent_km=extent_km)
    stamp.write_text(json.dumps(params))
    return out, time.perf_counter() - t0


def square_aoi(path: Path, side_km: float, aoi_id: str) -> Path:
    """A GeoJSON square of ``side_km`` (in UTM 30N) centred on the demo scene."""
    from pyproj import Transformer

    from s2ts.demo_catalog.common import LONLAT_BOUNDS

    to_utm = Transformer.from_crs("EPSG:4326", "EPSG:32630", always_xy=True)
    to_ll = Transformer.from_crs("EPSG:32630", "EPSG:4326", always_xy=True)
    xmin, ymin, xmax, ymax = to_utm.transform_bounds(*LONLAT_BOUNDS)
    cx, cy, h = (xmin + xmax) / 2, (ymin + ymax) / 2, side_km * 500.0
    ring = [to_ll.transform(x, y) for x, y in ((cx - h, cy - h), (cx + h, cy - h), (cx + h, cy + h), (cx - h, cy + h))]
    ring.append(ring[0])
    fc = {
        "type": "FeatureCollection",
        "features": [
            {"type": "Feature", "properties": {"id": aoi_id}, "geometry": {"type": "Polygon", "coordinates": [ring]}}
        ],
    }
    path.write_text(json.dumps(fc))
    return path


def job_costs(results: Path, since: float = 0.0) -> dict:
    """Per stage: jobs, summed wall, max RSS (MB) from Snakemake's benchmark files
    (those written after ``since``, a time.time(): a rerun's own jobs)."""
    out = {}
    for stage, files in sorted(benchmark_files(results).items()):
        rows = []
        for f in files:
            if f.stat().st_mtime >= since:
                with open(f) as fh:
                    rows += list(csv.DictReader(fh, delimiter="\t"))
        rss = [float(r["max_rss"]) for r in rows if r["max_rss"] not in ("-", "NA")]
        if rows:
            out[stage] = {
                "jobs": len(rows),
                "wall_s": round(sum(float(r["s"]) for r in rows), 1),
                "max_rss_mb": round(max(rss)) if rss else None,
            }
    return out


def print_stages(stages: dict) -> None:
    """One line per stage of :func:`job_costs`."""
    for stage, c in stages.items():
        print(f"  {stage:<15} jobs {c['jobs']:>4}  wall {c['wall_s']:>8} s  max RSS {c['max_rss_mb']} MB")


def measure(results: Path, overrides: dict, aoi_id: str) -> dict:
    since = time.time()
    wall = snakemake(results, overrides)
    info = json.loads((results / aoi_id / "manifest.json").read_text())
    grid = json.loads((results / aoi_id / "aoi" / "grid.json").read_text())["grid"]
    n_dates = len(info["dates"])
    px = grid["height"] * grid["width"]
    costs = job_costs(results, since)
    return {
        "wall_s": round(wall, 1),
        "dates": n_dates,
        "dates_list": info["dates"],
        "grid": f"{grid['width']} x {grid['height']} at {grid['resolution']:g} m ({grid['crs']})",
        "area_km2": round(px * grid["resolution"] ** 2 / 1e6, 1),
        "pixel_dates": px * n_dates,
        "pixel_dates_per_s": round(px * n_dates / wall),
        "largest_job_rss_mb": max((c["max_rss_mb"] or 0) for c in costs.values()),
        "stages": costs,
    }


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--extent-km", type=float, default=42.0)
    ap.add_argument("--aoi-km", type=float, default=40.0)
    ap.add_argument("--resolution", type=float, default=10.0)
    ap.add_argument("--start", default="2021-01-01")
    ap.add_argument("--end", default="2021-09-15")
    ap.add_argument("--catalog", default=str(ROOT / ".bench" / "scale-catalog"))
    ap.add_argument(
        "--runs",
        default="small_demo,large,large-half,quarter",
        help="which runs (comma-separated); large-new-date (after large) adds the last date to a run without it",
    )
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    runs = a.runs.split(",")
    if "large-new-date" in runs and "large" not in runs:
        ap.error("large-new-date needs the large run (its last date and its wall): --runs large,large-new-date")
    fig: dict = {"machine": machine(), "params": vars(a)}
    print(f"machine: {fig['machine']}")
    cat, gen_s = catalog(Path(a.catalog), a.extent_km, a.start, a.end)
    fig["catalog_generation_s"] = None if gen_s is None else round(gen_s, 1)
    fig["catalog_mb"] = round(sum(f.stat().st_size for f in Path(a.catalog).rglob("*") if f.is_file()) / 1e6)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        base = {
            "stac": {"catalog": str(cat), "signing": "none", "max_cloud_cover": 100},
            "grid": {"crs": "EPSG:32630", "resolution": a.resolution},
            "figures": {"enabled": False},
            "aoi": {"id_field": "id"},
        }
        big = square_aoi(tmp / "large.geojson", a.aoi_km, "large")
        small = square_aoi(tmp / "quarter.geojson", a.aoi_km / 2, "quarter")
        if "small_demo" in runs:  # the throughput baseline
            fig["small_demo"] = measure(tmp / "demo", {"figures": {"enabled": False}}, "1")
        period = {"dates": {"start": a.start, "end": a.end}}
        if "large" in runs:
            fig["large"] = measure(
                tmp / "large", {**base, "aoi": {"path": str(big), "id_field": "id"}, **period}, "large"
            )
            shutil.rmtree(tmp / "large", ignore_errors=True)  # tens of GB: keep the disk for the next runs
        if "large-half" in runs:  # the first half of the dates: cut at the middle acquisition
            mid = fig["large"]["dates_list"][len(fig["large"]["dates_list"]) // 2]
            fig["large-half"] = measure(
                tmp / "large-half",
                {**base, "aoi": {"path": str(big), "id_field": "id"}, "dates": {"start": a.start, "end": mid}},
                "large",
            )
            shutil.rmtree(tmp / "large-half", ignore_errors=True)
        if "large-new-date" in runs:  # one new date: the large run without its last date, then with it
            last = fig["large"]["dates_list"][-1]  # dates.end is exclusive: this run stops before it
            aoi = {**base, "aoi": {"path": str(big), "id_field": "id"}}
            res = tmp / "large-new-date"
            fig["large-new-date-base"] = measure(res, {**aoi, "dates": {"start": a.start, "end": last}}, "large")
            fig["large-new-date"] = measure(res, {**aoi, **period}, "large")
            fig["large-new-date"]["share_of_full"] = round(fig["large-new-date"]["wall_s"] / fig["large"]["wall_s"], 3)
            shutil.rmtree(res, ignore_errors=True)
        if "quarter" in runs:
            fig["quarter"] = measure(
                tmp / "quarter", {**base, "aoi": {"path": str(small), "id_field": "id"}, **period}, "quarter"
            )
    demo_tp = fig.get("small_demo", {}).get("pixel_dates_per_s")
    print("\n| run | dates | grid | km2 | wall (s) | pixel-dates/s | vs small demo | largest job RSS (MB) |")
    print("|---|---:|---|---:|---:|---:|---:|---:|")
    for name in ("small_demo", "large", "large-half", "quarter"):
        if name not in fig:
            continue
        r = fig[name]
        r["throughput_vs_demo"] = round(r["pixel_dates_per_s"] / demo_tp, 2) if demo_tp else None
        print(
            f"| {name} | {r['dates']} | {r['grid']} | {r['area_km2']} | {r['wall_s']} | {r['pixel_dates_per_s']:,} "
            f"| {r['throughput_vs_demo']} | {r['largest_job_rss_mb']} |"
        )
    if "large-new-date" in fig:
        nd = fig["large-new-date"]
        print(
            f"\none new date ({fig['large']['dates_list'][-1]}) added to the large run without it: "
            f"{nd['wall_s']} s, {nd['share_of_full']} of the large run's wall (target < 0.15); its jobs:"
        )
        print_stages(nd["stages"])
    if all(k in fig for k in ("large", "large-half", "quarter")):
        lg, hf, qt = fig["large"], fig["large-half"], fig["quarter"]
        fig["growth"] = {
            "dates_x": round(lg["dates"] / hf["dates"], 2),
            "wall_x_for_dates": round(lg["wall_s"] / hf["wall_s"], 2),
            "area_x": round(lg["area_km2"] / qt["area_km2"], 2),
            "wall_x_for_area": round(lg["wall_s"] / qt["wall_s"], 2),
        }
        g = fig["growth"]
        print(
            f"\ndates x{g['dates_x']} -> wall x{g['wall_x_for_dates']}; area x{g['area_x']} -> wall x{g['wall_x_for_area']}"
        )
    print(f"catalog: {fig['catalog_mb']} MB, generated in {fig['catalog_generation_s']} s (None: reused)")
    if "large" in fig:
        lg = fig["large"]
        cube_gb = lg["pixel_dates"] * 3 * 2 / 1e9
        print(f"\nper stage (large; int16 cube of 3 bands: {cube_gb:.1f} GB):")
        print_stages(lg["stages"])
        tail = max((lg["stages"].get(s, {}).get("max_rss_mb") or 0) for s in ("gapfill", "netcdf"))
        print(
            f"gapfill/netcdf peak RSS {tail} MB (target <= 2048); largest job {lg['largest_job_rss_mb']} MB (target <= 4096)"
        )
    if a.json:
        Path(a.json).write_text(json.dumps(fig, indent=1, default=str))
    return fig


if __name__ == "__main__":
    main()
