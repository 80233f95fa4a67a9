"""Tile stage: load one date's items onto the AOI's grid as a per-date Zarr store.

Loader: **odc-stac**. It reads items in either projection form (``proj:epsg`` as
served by the Planetary Computer, ``proj:code`` as written by pystac >= 1.12);
stackstac 0.5.1 reads ``proj:epsg`` only, so it fails on items that went through
pystac (tests/test_tile.py loads both forms). odc-stac reads COG overviews when
the target resolution allows (10 m band at 40 m -> the 4x overview).

* Reflectance bands: resampling ``average`` (no-data 0 excluded), kept uint16,
  no-data 0.
* Mask band (SCL): a separate read at full resolution with ``nearest`` only, no
  overviews (a provider's SCL overviews may have been built by averaging, which
  invents classes), so every output class exists in the input.
* Same-day items (overlapping MGRS tiles, split granules): each item is loaded
  on its own, then the date is mosaicked deterministically: per pixel, the first
  item, in id order, whose reflectance bands are all valid there. The ``source``
  array records that item's index in ``attrs["items"]`` so the offset fix can use
  the baseline of the item each pixel came from.
* Signing (Planetary Computer SAS tokens) happens in the loader's ``patch_url``
  right before each read; signed URLs are never stored or logged.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from s2ts import item_meta as im
from s2ts.errors import UserError
from s2ts.zarr_io import NO_SOURCE, write_store

log = logging.getLogger("tile")

PC_HOST = "planetarycomputer.microsoft.com"

#: GDAL settings for reading COGs over HTTP: retries with backoff on transient
#: failures, no directory listing, bounded block cache.
GDAL_OPTIONS = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "GDAL_HTTP_MAX_RETRY": 5,
    "GDAL_HTTP_RETRY_DELAY": 1,
    "GDAL_HTTP_TIMEOUT": 60,
    "GDAL_HTTP_MULTIRANGE": "YES",
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.TIF,.tiff",
    "GDAL_CACHEMAX": 256,
    "VSI_CACHE": "TRUE",
}


def signing_mode(signing: str, catalog: str) -> str:
    """``auto`` signs with planetary_computer for the Planetary Computer's host only."""
    if signing == "auto":
        return "planetary_computer" if urlsplit(catalog).hostname == PC_HOST else "none"
    return signing


def href_patcher(mode: str):
    if mode == "planetary_computer":
        import planetary_computer

        return planetary_computer.sign_url
    return None


def read_items(item_file) -> list[dict]:
    """The date's items in mosaic priority order: acquisition time, then id."""
    feats = json.loads(Path(item_file).read_text())["features"]
    return sorted(feats, key=lambda it: (im.item_datetime(it), it["id"]))


def geobox_of(grid: dict):
    from affine import Affine
    from odc.geo.geobox import GeoBox

    a, b, c, d, e, f = grid["transform"]
    return GeoBox((grid["height"], grid["width"]), Affine(a, b, c, d, e, f), grid["crs"])


def _stac_cfg(collection: str, bands: list[str], mask_band: str) -> dict:
    assets = {b: {"data_type": "uint16", "nodata": 0} for b in bands}
    assets[mask_band] = {"data_type": "uint8", "nodata": 0}
    return {collection or "*": {"assets": assets}, "*": {"assets": assets}}


def load_items(items: list[dict], grid: dict, bands: list[str], mask_band: str, threads: int = 1, patch_url=None):
    """Per-item arrays on the grid: ``({band: (n_items, y, x)}, scl (n_items, y, x))``."""
    import odc.stac
    import pystac

    odc.stac.configure_rio(cloud_defaults=False, **GDAL_OPTIONS)
    gbox = geobox_of(grid)
    stac_items = [pystac.Item.from_dict({**it, "links": []}) for it in items]
    cfg = _stac_cfg(items[0].get("collection"), bands, mask_band)
    common = dict(
        geobox=gbox,
        groupby="id",
        preserve_original_order=True,  # keep our (time, id) priority order
        stac_cfg=cfg,
        patch_url=patch_url,
        pool=max(1, threads),
        chunks=None,
    )
    try:
        refl = odc.stac.load(stac_items, bands=bands, resampling="average", **common)
        scl = odc.stac.load(stac_items, bands=[mask_band], resampling="nearest", use_overviews=False, **common)
    except Exception as exc:
        raise UserError(
            f"reading pixels of {', '.join(it['id'] for it in items)} failed: {_describe(exc)}. "
            "If the assets are remote, check the network; a truncated or missing file must be re-downloaded."
        ) from None
    for ds in (refl, scl):
        if ds.sizes["time"] != len(items):
            raise RuntimeError(f"odc-stac returned {ds.sizes['time']} slices for {len(items)} items")
    return {b: refl[b].values for b in bands}, scl[mask_band].values


def _describe(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return im.strip_secrets(text)[:300]


def mosaic(per_item: dict[str, np.ndarray], scl: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """First valid item per pixel (items already in priority order)."""
    bands = list(per_item)
    n = scl.shape[0]
    valid = np.ones(scl.shape, bool)
    for b in bands:
        valid &= per_item[b] != 0
    any_valid = valid.any(axis=0)
    first = np.argmax(valid, axis=0)
    source = np.where(any_valid, first, NO_SOURCE).astype(np.uint8)
    if n >= NO_SOURCE:
        raise UserError(f"{n} items on one date: at most {NO_SOURCE - 1} can be mosaicked")
    take = np.where(any_valid, first, 0)[None]
    out = {b: np.where(any_valid, np.take_along_axis(per_item[b], take, 0)[0], 0).astype(np.uint16) for b in bands}
    out_scl = np.where(any_valid, np.take_along_axis(scl, take, 0)[0], 0).astype(np.uint8)
    return out, out_scl, source


def mean_datetime(items: list[dict]) -> str:
    ts = [im.item_datetime(it).timestamp() for it in items]
    return im.format_datetime(dt.datetime.fromtimestamp(sum(ts) / len(ts), dt.UTC))


def tile(item_file, grid_json, bands: list[str], mask_band: str, out_path, signing="none", threads=1) -> dict:
    items = read_items(item_file)
    if not items:
        raise UserError(f"{item_file} lists no item: rerun the stac_manifest stage")
    aoi = json.loads(Path(grid_json).read_text())
    grid = aoi["grid"]
    date = Path(item_file).stem
    log.info("date %s: reading %d item(s): %s", date, len(items), ", ".join(it["id"] for it in items))
    per_item, scl = load_items(items, grid, bands, mask_band, threads, href_patcher(signing))
    arrays, out_scl, source = mosaic(per_item, scl)
    arrays[mask_band] = out_scl
    arrays["source"] = source
    attrs = {
        "stage": "tile",
        "aoi": aoi["id"],
        "date": date,
        "datetime": mean_datetime(items),
        "items": [
            {
                "id": it["id"],
                "datetime": im.format_datetime(im.item_datetime(it)),
                "processing_baseline": it.get("properties", {}).get("s2:processing_baseline"),
                "boa_offset_applied": it.get("properties", {}).get("earthsearch:boa_offset_applied"),
                "platform": im.platform(it),
                "mgrs_tile": im.mgrs_tile(it),
            }
            for it in items
        ],
        "bands": list(bands),
        "mask_band": mask_band,
        "grid": grid,
        "offset_corrected": False,
        "loader": "odc-stac",
    }
    write_store(out_path, arrays, attrs, grid)
    counts = np.bincount(source[source != NO_SOURCE], minlength=len(items)) if (source != NO_SOURCE).any() else []
    log.info("date %s: wrote %s (pixels per item: %s)", date, out_path, list(map(int, counts)))
    return attrs


def tile_from_snakemake(smk) -> None:
    os.environ.setdefault("GDAL_NUM_THREADS", str(smk.threads))
    tile(
        smk.input.item_file,
        smk.input.grid,
        list(smk.params.bands),
        smk.params.mask_band,
        smk.output.tile,
        signing=smk.params.signing,
        threads=smk.threads,
    )
