"""The original tutorial's steps with the ``sits`` package, timed step by step.

Runs ONLY inside the separate sits virtualenv that ``benchmarks/original_sits.py``
creates (``.bench/sits-venv``, ``pip install sits==0.8.0``); our own venv does not
have sits. It uses sits as installed, unpatched. Two things are redirected, both
from the outside, after construction:

* the STAC API: ``StacAttack`` keeps its provider's root URL in ``self.stac["stac"]``
  and opens the client lazily in ``searchItems`` (``self.catalog`` is ``None`` until
  then), so setting ``ts.stac["stac"]`` to the local server's URL is enough;
* Planetary Computer signing: sits signs with ``planetary_computer.sign_inplace``
  (search) and ``planetary_computer.sign`` (odc-stac ``patch_url``). Both return
  non-Azure-blob hrefs unchanged (our hrefs are ``file://``), so they stay in
  place; ``planetary_computer.sas.get_token`` is replaced by a function that raises,
  so any attempt to fetch a SAS token over the network fails loudly.

Writes a JSON report (``--report``): per-step wall times (``time.perf_counter``),
the cube's shape and dtypes after each step, the items found, the output file,
and this process's peak RSS when the export finished. After the timed steps it
saves, untimed, sits's per-pixel mask (packed bits, ``<report>_mask.npy``) for the
comparison with our cube.

    <sits-venv>/bin/python benchmarks/sits_driver.py --url http://127.0.0.1:P \
        --aoi resources/banc_arguin.geojson --start 2021-01-01 --end 2023-01-01 \
        --outdir OUT --report report.json [--query]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from datetime import datetime

T_START = time.perf_counter()


def _cube_info(cube) -> dict:
    return {
        "sizes": {k: int(v) for k, v in cube.sizes.items()},
        "dtypes": {k: str(v.dtype) for k, v in cube.data_vars.items()},
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True, help="STAC API root on 127.0.0.1")
    ap.add_argument("--aoi", required=True)
    ap.add_argument("--start", required=True)
    ap.add_argument("--end", required=True)
    ap.add_argument("--outdir", required=True)
    ap.add_argument("--report", required=True)
    ap.add_argument("--query", action="store_true", help="send the tutorial's eo:cloud_cover query")
    args = ap.parse_args()

    steps: list[dict] = []
    info: dict = {"steps": steps}

    def timed(name, fn, *a, **kw):
        t0 = time.perf_counter()
        out = fn(*a, **kw)
        dt = time.perf_counter() - t0
        steps.append({"step": name, "seconds": dt})
        print(f"[sits] {name:<12} {dt:8.2f} s", file=sys.stderr, flush=True)
        return out

    def _imports():
        import planetary_computer.sas
        from sits import sits

        def no_token(*_a, **_k):
            raise RuntimeError("offline benchmark: planetary_computer tried to fetch a SAS token")

        planetary_computer.sas.get_token = no_token
        return sits

    sits = timed("import sits", _imports)
    import sits as sits_pkg

    info["sits_version"] = sits_pkg.__version__
    info["python"] = sys.version.split()[0]
    info["cpu_count"] = os.cpu_count()

    # 2.1 / 2.2 / 2.3: the polygon, its bounding box, in EPSG:4326 and EPSG:3035
    v_arguin = timed("Vec2gdf", sits.Vec2gdf, args.aoi)
    timed("set_bbox", v_arguin.set_bbox, "gdf")

    def _bboxes():
        b4326 = list(v_arguin.bbox.iloc[0]["geometry"].bounds)
        b3035 = list(v_arguin.bbox.to_crs(3035).iloc[0]["geometry"].bounds)
        return b4326, b3035

    bbox_4326, bbox_3035 = timed("bbox", _bboxes)
    info["bbox_4326"], info["bbox_3035"] = bbox_4326, bbox_3035

    # 3.1: search and lazy cube
    def _stac_attack():
        ts = sits.StacAttack(provider="mpc", collection="sentinel-2-l2a", bands=["B03", "B04", "B08", "SCL"])
        info["provider_url"] = ts.stac["stac"]
        ts.stac["stac"] = args.url  # the local STAC API instead of the Planetary Computer
        ts.catalog = None  # opened lazily by searchItems from ts.stac["stac"]
        return ts

    ts = timed("StacAttack", _stac_attack)
    kw = {"query": {"eo:cloud_cover": {"lt": 20}}} if args.query else {}
    start = datetime.fromisoformat(args.start)
    end = datetime.fromisoformat(args.end)
    timed("searchItems", ts.searchItems, bbox_4326, date_start=start, date_end=end, **kw)
    info["search_query"] = kw.get("query")
    info["items"] = [
        {
            "id": it.id,
            "datetime": it.properties["datetime"],
            "processing_baseline": it.properties.get("s2:processing_baseline"),
            "cloud_cover": it.properties.get("eo:cloud_cover"),
            "href_B03": it.assets["B03"].href,
        }
        for it in ts.items
    ]
    timed("loadCube", ts.loadCube, bbox_3035, resolution=40, crs_out=3035)
    info["after_loadCube"] = _cube_info(ts.cube)
    info["geobox"] = {"shape": list(ts.geobox.shape), "transform": list(ts.geobox.transform)[:6]}

    # 4.2: offset correction
    timed("fixS2shift", ts.fixS2shift)
    info["after_fixS2shift"] = _cube_info(ts.cube)

    # 5.1: SCL mask. sits 0.8.0 renamed the tutorial's ``mask()`` method to
    # ``mask_conf()``; ``ts.mask`` is now the mask array it sets.
    scl_mask = [0, 1, 3, 8, 9, 10]
    mask_fn = ts.mask if callable(getattr(ts, "mask", None)) else ts.mask_conf
    info["mask_method"] = mask_fn.__name__
    timed("mask", mask_fn, mask_band="SCL", mask_values=[scl_mask])
    timed("mask_apply", ts.mask_apply)
    info["after_mask_apply"] = _cube_info(ts.cube)

    # 5.2: gap-filling
    timed("gapfill", ts.gapfill)
    info["after_gapfill"] = _cube_info(ts.cube)

    # 6.1: export (the lazy cube is read here)
    os.makedirs(args.outdir, exist_ok=True)
    timed("to_nc", ts.to_nc, args.outdir)
    info["steps_total_seconds"] = sum(s["seconds"] for s in steps)
    info["since_start_seconds"] = time.perf_counter() - T_START
    info["peak_rss_mb_at_export"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    ncs = sorted(f for f in os.listdir(args.outdir) if f.endswith(".nc"))
    info["output"] = os.path.join(args.outdir, ncs[-1]) if ncs else None

    # Untimed diagnostics: sits's mask (which pixels it masked on each date), packed
    # bits in a .npy next to the report, the share masked per date, the cube's dates.
    import numpy as np

    mask = ts.mask.transpose("time", "y", "x").compute()
    m = mask.values.astype(bool)
    mask_path = os.path.splitext(args.report)[0] + "_mask.npy"
    np.save(mask_path, np.packbits(m.ravel()))
    info["mask_file"] = mask_path
    info["mask_shape"] = list(m.shape)
    info["dates"] = [str(t)[:26] for t in mask.time.values]
    info["masked_fraction"] = [float(v) for v in m.mean(axis=(1, 2))]

    with open(args.report, "w") as f:
        json.dump(info, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
