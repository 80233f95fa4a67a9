"""Tile stage: load one date's items onto the AOI's grid as a per-date Zarr store.

Loader: **odc-stac**. It reads items in either projection form (``proj:epsg`` as
served by the Planetary Computer, ``proj:code`` as written by pystac >= 1.12);
stackstac 0.5.1 reads ``proj:epsg`` only, so it fails on items that went through
pystac (tests/test_tile.py loads both forms). odc-stac reads COG overviews when
the target resolution allows: the largest overview whose factor does not exceed
the integer part of the scale (an aligned 40 m UTM grid reads the 4x overview,
tests/test_tile.py; the tutorial's 40 m EPSG:3035 grid is 3.996 UTM 10 m pixels,
so odc-stac reads the 2x one there, see docs/performance.md).

* Reflectance bands: resampling ``average`` (no-data 0 excluded), kept uint16,
  no-data 0.
* Mask band (SCL): a separate read at full resolution with ``nearest`` only, no
  overviews (a provider's SCL overviews may have been built by averaging, which
  invents classes), so every output class exists in the input. It is read on a
  grid finer than the target (one sub-cell per native cell), giving ``SCL`` (the
  pixel's central cell) and ``SCL_any`` (uint16 bitmask of every class present in
  the pixel's footprint) for the conservative mask rule: a 40 m pixel whose
  reflectance averages a cloudy 10 m corner is masked even if its central SCL
  cell is clear.
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
import math
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
#: failures (HTTP 429/5xx and timeouts), a per-request timeout, no directory
#: listing, bounded block cache. An environment variable of the same name wins
#: (e.g. ``GDAL_HTTP_TIMEOUT=300`` on a slow link): see :func:`gdal_options`.
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


def gdal_options() -> dict:
    """:data:`GDAL_OPTIONS`, each overridden by an environment variable of the same name."""
    return {k: os.environ.get(k, v) for k, v in GDAL_OPTIONS.items()}


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


def mask_factor(items: list[dict], mask_band: str, resolution: float) -> int:
    """Sub-cells per target pixel edge so that every covered mask-band cell is seen."""
    native = min(abs(float(it["assets"][mask_band].get("proj:transform", [20.0])[0])) for it in items)
    return max(1, math.ceil(resolution / native - 1e-9))


def fine_grid(grid: dict, f: int) -> dict:
    r = grid["resolution"] / f
    a, b, c, d, e, g = grid["transform"]
    return {
        **grid,
        "resolution": r,
        "width": grid["width"] * f,
        "height": grid["height"] * f,
        "transform": [r, b, c, d, -r, g],
    }


def class_bits(fine: np.ndarray, f: int) -> np.ndarray:
    """uint16 bitmask per target pixel: bit c set when class c is in any covered cell."""
    n, h, w = fine.shape[0], fine.shape[1] // f, fine.shape[2] // f
    bits = (np.uint16(1) << np.minimum(fine, 15).astype(np.uint16)).reshape(n, h, f, w, f)
    return np.bitwise_or.reduce(np.bitwise_or.reduce(bits, axis=4), axis=2)


def load_items(items: list[dict], grid: dict, bands: list[str], mask_band: str, threads: int = 1, patch_url=None):
    """Per-item arrays on the grid: ``({band: (n, y, x)}, scl (n, y, x), scl_any (n, y, x))``.

    The mask band is read once, with nearest, on a grid ``f`` times finer than the
    target (``f`` = target / native resolution, rounded up), so each target pixel
    sees every mask cell it covers: ``scl`` is its central sub-cell (nearest),
    ``scl_any`` the bitmask of all classes present (for the conservative rule).
    """
    import odc.stac
    import pystac

    odc.stac.configure_rio(cloud_defaults=False, **gdal_options())
    gbox = geobox_of(grid)
    f = mask_factor(items, mask_band, grid["resolution"])
    stac_items = [pystac.Item.from_dict({**it, "links": []}) for it in items]
    cfg = _stac_cfg(items[0].get("collection"), bands, mask_band)
    common = dict(
        geobox=gbox,
        groupby="id",
        preserve_original_order=True,  # keep our (time, id) priority order
        stac_cfg=cfg,
        patch_url=patch_url,
        # odc-stac makes a new thread pool per call when given one, and each new
        # thread sets up its GDAL environment again: about 0.14 s per call, 3x the
        # read itself here. One thread reads in the calling thread (the faster choice
        # on local files; over HTTP a pool reads items and bands concurrently).
        pool=threads if threads > 1 else None,
        chunks=None,
    )
    try:
        refl = odc.stac.load(stac_items, bands=bands, resampling="average", **common)
        common_scl = dict(common, geobox=geobox_of(fine_grid(grid, f)))
        scl = odc.stac.load(stac_items, bands=[mask_band], resampling="nearest", use_overviews=False, **common_scl)
    except Exception as exc:
        raise ReadError(_locate_failure(items, bands + [mask_band], patch_url, exc)) from None
    for ds in (refl, scl):
        if ds.sizes["time"] != len(items):
            raise RuntimeError(f"odc-stac returned {ds.sizes['time']} slices for {len(items)} items")
    fine = scl[mask_band].values
    return {b: refl[b].values for b in bands}, fine[:, f // 2 :: f, f // 2 :: f], class_bits(fine, f)


class ReadError(UserError):
    """Pixels of a date could not be read (after GDAL's own retries)."""


def _locate_failure(items, assets, patch_url, exc) -> str:
    """Name the item and asset that cannot be read, and why (no signed URL shown)."""
    import rasterio

    # GDAL remembers a remote file that failed (/vsicurl/ cache): probe it afresh so
    # the message gives the real cause (e.g. "Operation timed out")
    with rasterio.Env(CPL_VSIL_CURL_NON_CACHED="/vsicurl/", **gdal_options()):
        return _probe(items, assets, patch_url, exc)


def _probe(items, assets, patch_url, exc) -> str:
    import rasterio

    for it in items:
        for key in assets:
            href = it["assets"][key]["href"]
            try:
                with rasterio.open(patch_url(href) if patch_url else href) as src:
                    src.read(1, window=((0, 1), (0, 1)))
                    if src.overviews(1):
                        with rasterio.open(
                            patch_url(href) if patch_url else href, overview_level=len(src.overviews(1)) - 1
                        ) as ov:
                            ov.read(1)
            except Exception as probe:
                return (
                    f"cannot read asset {key} of item {it['id']} ({im.strip_secrets(href)}): {_describe(probe)}. "
                    "A missing or truncated file must be fetched again; for a remote catalog, check the network "
                    "(transient HTTP errors were already retried). To drop such dates instead of stopping, set "
                    "tiles.on_read_error: skip."
                )
    return (
        f"reading pixels of {', '.join(it['id'] for it in items)} failed: {_describe(exc)}. "
        "If the assets are remote, check the network; a truncated or missing file must be fetched again."
    )


def _describe(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return im.scrub_secrets(text)[:300]


def mosaic(per_item: dict[str, np.ndarray], scl: np.ndarray, scl_any: np.ndarray | None = None):
    """First valid item per pixel (items already in priority order).

    Returns ``(bands, scl, source)``, or ``(bands, scl, source, scl_any)`` when
    ``scl_any`` is given."""
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
    if scl_any is None:
        return out, out_scl, source
    out_any = np.where(any_valid, np.take_along_axis(scl_any, take, 0)[0], 1).astype(np.uint16)
    return out, out_scl, source, out_any


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
    per_item, scl, scl_any = load_items(items, grid, bands, mask_band, threads, href_patcher(signing))
    arrays, out_scl, source, out_any = mosaic(per_item, scl, scl_any)
    arrays[mask_band] = out_scl
    arrays[f"{mask_band}_any"] = out_any
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


SKIPPED = "skipped.json"


def read_skipped(folder) -> list[dict]:
    """Dates a batch folder dropped on read errors (tiles.on_read_error: skip)."""
    path = Path(folder) / SKIPPED
    return json.loads(path.read_text()) if path.exists() else []


def tile_batch(
    item_files, grid_json, bands, mask_band, out_dir, signing="none", threads=1, on_read_error="fail", batch=""
):
    """One batch of dates: one store per date in ``out_dir``. With
    ``on_read_error="skip"`` a date whose pixels cannot be read is left out and
    recorded in ``out_dir/skipped.json`` (carried to the NetCDF's provenance)."""
    from s2ts.io import write_json

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    skipped = []
    for i, item_file in enumerate(item_files, 1):
        date = Path(item_file).stem
        try:
            tile(item_file, grid_json, bands, mask_band, out / f"{date}.zarr", signing=signing, threads=threads)
        except ReadError as exc:
            if on_read_error != "skip":
                raise
            log.warning("date %s skipped (tiles.on_read_error: skip): %s", date, exc)
            skipped.append({"date": date, "reason": str(exc)})
        log.info("batch %s: %d of %d dates done", batch, i, len(item_files))
    if skipped:
        write_json(out / SKIPPED, skipped)
    return skipped


def tile_from_snakemake(smk) -> None:
    os.environ.setdefault("GDAL_NUM_THREADS", str(smk.threads))
    tile_batch(
        list(smk.input.item_files),
        smk.input.grid,
        list(smk.params.bands),
        smk.params.mask_band,
        smk.output.tiles,
        signing=smk.params.signing,
        threads=smk.threads,
        on_read_error=smk.params.on_read_error,
        batch=smk.wildcards.batch,
    )
