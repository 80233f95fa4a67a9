"""DAG build time of `snakemake -n` for N polygons x M dates (default 10 x 600).

Builds a results tree whose AOI and manifest stages are already done (grid.json,
inside.npy, manifest.csv/json and one item file per date, written by the real
stage code on synthetic items), then times `snakemake -n` planning every
tile/offset_fix/mask/gapfill/netcdf job. Prints seconds and jobs planned, for
the shipped defaults (tile, offset_fix and mask jobs per year of dates), for a tile
job per date with the light stages per month, and for one job per date and stage.

    python benchmarks/dag_build.py [--polygons 10] [--dates 600]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def build(work: Path, n_poly: int, n_dates: int) -> Path:
    from s2ts.aoi_grid import aoi_grid, read_aois
    from s2ts.stac_manifest import MANIFEST_COLUMNS

    feats = []
    for i in range(n_poly):
        x0, y0 = -1.28 + 0.01 * i, 44.55
        ring = [[x0, y0], [x0 + 0.008, y0], [x0 + 0.008, y0 + 0.008], [x0, y0 + 0.008], [x0, y0]]
        feats.append(
            {
                "type": "Feature",
                "properties": {"id": f"site{i:02d}"},
                "geometry": {"type": "Polygon", "coordinates": [ring]},
            }
        )
    vec = work / "sites.geojson"
    vec.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    results = work / "results"
    days = [dt.date(2016, 1, 1) + dt.timedelta(days=5 * k) for k in range(n_dates)]
    for aoi in read_aois(vec, "id"):
        d = results / aoi.id
        aoi_grid(aoi.id, aoi.geojson, "EPSG:3035", 40, d / "aoi" / "grid.json", d / "aoi" / "inside.npy")
        (d / "items").mkdir(parents=True)
        for day in days:
            (d / "items" / f"{day}.json").write_text('{"type": "FeatureCollection", "features": []}\n')
        (d / "manifest.csv").write_text(",".join(MANIFEST_COLUMNS) + "\n")
        n = len(days)  # as stac_manifest writes it: one item per date
        counts = {"returned": n, "matching": n, "duplicates_removed": 0, "items": n, "dates": n}
        (d / "manifest.json").write_text(json.dumps({"aoi": aoi.id, "dates": [str(x) for x in days], "counts": counts}))
        for kind, suffix in (("benchmarks", "tsv"), ("logs", "log")):  # a finished job's files
            (results / kind / "stac_manifest").mkdir(parents=True, exist_ok=True)
            (results / kind / "stac_manifest" / f"{aoi.id}.{suffix}").write_text("")
    cfg = work / "cfg.yaml"
    cfg.write_text(
        f"aoi: {{path: {vec}}}\nstac: {{catalog: {work}/catalog.json}}\n"
        f"dates: {{start: '2016-01-01', end: '2025-01-01'}}\nresults: {results}\n"
    )
    (work / "catalog.json").write_text("{}")
    return cfg


def time_dry_run(cfg: Path, batch: str | None = None, light: str = "month") -> tuple[float, int]:
    """Seconds and jobs of ``snakemake -n``; ``batch`` None: the shipped defaults."""
    over = [] if batch is None else ["--config", f"tiles={{'batch': '{batch}', 'light_batch': '{light}'}}"]
    t0 = time.perf_counter()
    out = subprocess.run(
        [str(Path(sys.executable).parent / "snakemake"), "-n", "--quiet", "rules", "--cores", "2",
         "--configfile", str(cfg), *over],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    dt_s = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(out.stderr[-3000:])
    total = re.search(r"^total\s+(\d+)", out.stdout + out.stderr, re.M)
    return dt_s, int(total.group(1)) if total else -1


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--polygons", type=int, default=10)
    ap.add_argument("--dates", type=int, default=600)
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = build(Path(tmp), a.polygons, a.dates)
        res = {}
        for batch, light in ((None, None), ("date", "month"), ("date", "tile")):
            secs, jobs = time_dry_run(cfg, batch, light)
            name = "defaults" if batch is None else f"tiles.batch={batch}, tiles.light_batch={light}"
            res[name] = {"seconds": round(secs, 2), "jobs": jobs}
            print(f"snakemake -n, {a.polygons} polygons x {a.dates} dates, {name}: {secs:.1f} s, {jobs} jobs planned")
    return res


if __name__ == "__main__":
    main()
