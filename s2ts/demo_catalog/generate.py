"""The generator: plans the datatakes, renders them in worker processes, writes
their COGs, the STAC documents and the truth into a directory renamed into place."""

from __future__ import annotations

import datetime as dt
import json
import logging
import multiprocessing
import os
import shutil
import time
from pathlib import Path

import numpy as np

from s2ts.demo_catalog.cog import _write_cog
from s2ts.demo_catalog.common import RES, Grid, _iso, scene_extent
from s2ts.demo_catalog.pixels import SAT_MAX, _prepare_static, render_datatake
from s2ts.demo_catalog.plan import BOA_OFFSET, has_offset, plan_datatakes, sun_position
from s2ts.demo_catalog.scene import BANDS, build_scene
from s2ts.demo_catalog.stac import COLLECTION_ID, _catalog_doc, _collection_doc, _item_doc, _scl_stats
from s2ts.demo_catalog.state import acquisition_state
from s2ts.demo_catalog.truth import _truth_doc
from s2ts.errors import UserError
from s2ts.io import atomic_path, dumps_json

log = logging.getLogger(__name__)

_OWNED = {"catalog.json", COLLECTION_ID, "truth"}


def _parse_date(value, name: str) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value)[:10])
    except ValueError:
        raise UserError(f"demo catalog: {name}={value!r} is not an ISO date; use YYYY-MM-DD") from None


_STATIC: dict = {}


def _datatake_job(task: dict) -> list[dict]:
    """Render one datatake and write the COGs of all its items. Returns per-item stats."""
    from affine import Affine

    s = _STATIC
    grid: Grid = s["grid"]
    dn, scl = render_datatake(s, task)
    results = []
    written: dict[tuple, Path] = {}
    for item in task["items"]:
        r0, nrows = item["row0"], item["rows"]
        sl10 = slice(r0, r0 + nrows)
        sl20 = slice(r0 // 2, (r0 + nrows) // 2)
        valid10 = s["swath10"][sl10] if task["partial"] else None
        valid20 = s["swath20"][sl20] if task["partial"] else None
        offset = BOA_OFFSET if has_offset(item["baseline"]) else 0
        ytop = grid.y1 - r0 * RES
        idir = Path(task["out"]) / item["id"]
        idir.mkdir(parents=True, exist_ok=True)
        for k, band in enumerate(BANDS):
            cache_key = (band, r0, nrows, offset)
            if cache_key in written:
                shutil.copyfile(written[cache_key], idir / f"{band}.tif")
                continue
            a = dn[k, sl10] + np.float32(offset)
            a = np.clip(a, 1, SAT_MAX, out=a).astype(np.uint16)  # a valid pixel is never 0 (no data)
            if valid10 is not None:
                a[~valid10] = 0
            _write_cog(idir / f"{band}.tif", a, Affine(RES, 0.0, grid.x0, 0.0, -RES, ytop), "reflectance")
            written[cache_key] = idir / f"{band}.tif"
        sc = scl[sl20].copy()
        if valid20 is not None:
            sc[~valid20] = 0
        cache_key = ("SCL", r0, nrows)
        if cache_key in written:
            shutil.copyfile(written[cache_key], idir / "SCL.tif")
        else:
            _write_cog(idir / "SCL.tif", sc, Affine(2 * RES, 0.0, grid.x0, 0.0, -2 * RES, ytop), "classification")
            written[cache_key] = idir / "SCL.tif"
        results.append({"id": item["id"], "stats": _scl_stats(sc)})
    return results


def generate_demo_catalog(out_dir, start="2021-01-01", end="2023-01-01", seed=0, workers=2, extent_km=None) -> Path:
    """Write the synthetic demo catalog and its ground truth under ``out_dir``.

    ``extent_km`` (default: the Arcachon inlet box, about 10 x 14 km) generates a
    square scene of that size around it instead (benchmarks/scale.py).

    ``start`` is inclusive, ``end`` exclusive (ISO dates). The catalog is built in a
    temporary sibling directory and renamed into place, so an interrupted run never
    leaves a half catalog under ``out_dir``. Same arguments -> byte-identical JSON.
    Returns the path of ``catalog.json``.
    """
    out_dir = Path(out_dir)
    d0, d1 = _parse_date(start, "start"), _parse_date(end, "end")
    if d1 <= d0:
        raise UserError(f"demo catalog: end ({d1}) must be after start ({d0}); end is exclusive")
    try:
        seed = int(seed)
        workers = max(1, int(workers))
    except (TypeError, ValueError):
        raise UserError(f"demo catalog: seed ({seed!r}) and workers ({workers!r}) must be integers") from None
    if out_dir.exists() and (not out_dir.is_dir() or set(os.listdir(out_dir)) - _OWNED):
        raise UserError(
            f"demo catalog: {out_dir} exists and holds files that are not a demo catalog; "
            "it would be replaced as a whole: choose an empty or new directory"
        )
    with scene_extent(extent_km):
        return _generate(out_dir, d0, d1, seed, workers)


def _generate(out_dir: Path, d0: dt.date, d1: dt.date, seed: int, workers: int) -> Path:
    global _STATIC
    t0 = time.perf_counter()
    # render from exactly what truth.json will hold (JSON round trip), like Truth does
    scene = json.loads(json.dumps(build_scene()))
    datatakes = plan_datatakes(d0, d1, seed)
    for d in datatakes:
        d.sun = sun_position(d.sensing, -1.24, 44.60)
        d.state = acquisition_state(scene, d.sensing, seed, d.key)
    n_items = sum(len(d.items) for d in datatakes)
    log.info("demo catalog %s..%s: %d datatakes, %d items, seed %d", d0, d1, len(datatakes), n_items, seed)

    with atomic_path(out_dir) as tmp:
        coll_dir = tmp / COLLECTION_ID
        coll_dir.mkdir(parents=True)
        tasks = [
            {
                "key": list(d.key),
                "datetime": _iso(d.sensing),
                "sun": list(d.sun),
                "state": d.state,
                "partial": d.partial,
                "out": str(coll_dir),
                "items": [{"id": i.id, "baseline": i.baseline, "row0": i.row0, "rows": i.rows} for i in d.items],
            }
            for d in datatakes
        ]
        _STATIC = _prepare_static(scene, seed)
        results: dict[str, dict] = {}
        try:
            if workers > 1 and "fork" not in multiprocessing.get_all_start_methods():
                log.warning("no 'fork' start method on this platform: rendering in one process")
                workers = 1
            if workers == 1 or len(tasks) <= 1:
                for task in tasks:
                    for r in _datatake_job(task):
                        results[r["id"]] = r["stats"]
            else:
                ctx = multiprocessing.get_context("fork")
                with ctx.Pool(workers) as pool:
                    for i, res in enumerate(pool.imap(_datatake_job, tasks, chunksize=1)):
                        for r in res:
                            results[r["id"]] = r["stats"]
                        if (i + 1) % 50 == 0:
                            log.info("rendered %d/%d datatakes", i + 1, len(tasks))
        finally:
            _STATIC = {}

        item_ids = []
        for d in datatakes:
            for item in d.items:
                doc = _item_doc(d, item, results[item.id])
                (coll_dir / item.id / f"{item.id}.json").write_text(dumps_json(doc))
                item_ids.append(item.id)
        (coll_dir / "collection.json").write_text(dumps_json(_collection_doc(datatakes, item_ids, d0, d1)))
        (tmp / "catalog.json").write_text(dumps_json(_catalog_doc()))
        truth_dir = tmp / "truth"
        truth_dir.mkdir()
        (truth_dir / "truth.json").write_text(dumps_json(_truth_doc(scene, datatakes, seed, d0, d1)))
    log.info("demo catalog written to %s in %.1f s", out_dir, time.perf_counter() - t0)
    return out_dir / "catalog.json"


def demo_catalog_from_snakemake(smk) -> None:
    out = Path(smk.output.catalog)
    generate_demo_catalog(
        out.parent,
        start=str(smk.params.start),
        end=str(smk.params.end),
        seed=int(smk.params.seed),
        workers=int(smk.threads),
    )
