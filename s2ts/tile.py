"""Tile stage: load a batch of dates onto the AOI's grid, one Zarr store per date.

Loaders (``tiles.loader``): **odc-stac** (the default) or **stackstac**. Both get the
items in either projection form (``proj:epsg`` as served by the Planetary Computer,
``proj:code`` as written by pystac >= 1.12): items are normalised to carry both
(stackstac 0.5.1 reads ``proj:epsg`` only). Each batch is read with one loader call
for the reflectance bands and one for the mask band, for as many dates as fit in
:data:`GROUP_BYTES` of memory, with ``tiles.reads_in_flight`` reads in flight on
remote COGs (one thread pool per job: latency-bound network reads overlap whatever
the job's cores) and the job's own threads on local files. A job given several
threads with enough dates splits them among as many forked processes
(:func:`worker_count`): a date's work is mostly Python, which threads cannot share.

* Reflectance bands: resampling ``average`` (no-data 0 excluded), kept uint16,
  no-data 0. With ``tiles.overviews: matching`` (the default) odc-stac reads the COG
  overview that matches the target resolution: the largest overview whose factor is
  at most the scale between source and target pixels plus
  :data:`OVERVIEW_TOLERANCE` (a 40 m grid over 10 m bands reads the 4x overview,
  even where the grid's projection makes the scale 3.996; odc-stac alone would take
  the 2x one there); ``finer`` reads one level finer, ``off`` the full resolution.
  stackstac warps the full-resolution pixels.
* Mask band (SCL): a separate read at full resolution with ``nearest`` only, no
  overviews (a provider's SCL overviews may have been built by averaging, which
  invents classes), so every output class exists in the input. It is read on a grid
  finer than the target (one sub-cell per native cell), giving ``SCL`` (the pixel's
  central cell) and ``SCL_any`` (uint16 bitmask of every class present in the
  pixel's footprint) for the conservative mask rule.
* Same-day items (overlapping MGRS tiles, split granules): loaded per item, then the
  date is mosaicked deterministically: per pixel, the first item in (time, id)
  order whose reflectance bands are all valid there. ``source`` records that item's
  index in ``attrs["items"]`` so the offset fix can use each pixel's own baseline.
* Signing (Planetary Computer SAS tokens) happens right before reading (odc-stac's
  ``patch_url``; for stackstac the in-memory hrefs are signed just before the load);
  signed URLs are never stored or logged.

Incremental: the rule's output is the batch's index, ``tile/<batch>.json``, written
last; the stores are in the folder beside it, ``tile/<batch>/<date>.zarr``, which
Snakemake neither removes before a rerun nor copies (an ``update()`` folder would be
copied whole into ``.snakemake/backups`` before every rerun, and removed or rolled
back when the job fails). So a rerun finds the stores written before, also by a job
that failed or was killed (each store is written under a temporary name and renamed
into place). A store is kept when its ``recipe`` (bands, mask band, grid, loader,
overviews, stage code) and its date's ``items_digest`` are unchanged; only the other
dates are read. Adding one date to a finished run reads that date's items only.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import hashlib
import json
import logging
import math
import os
import signal
import sys
import threading
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from s2ts import item_meta as im
from s2ts.errors import UserError
from s2ts.zarr_io import NO_SOURCE

log = logging.getLogger("tile")

PC_HOST = "planetarycomputer.microsoft.com"
LOADERS = ("odc-stac", "stackstac")
#: memory for one loader call's arrays (all items of a group of dates, every band)
GROUP_BYTES = 256 * 2**20
#: an overview of factor f is read when f <= scale * (1 + OVERVIEW_TOLERANCE)
OVERVIEW_TOLERANCE = 0.01

#: GDAL settings for reading COGs over HTTP: retries with backoff on transient
#: failures (HTTP 429/5xx and timeouts), a per-request timeout, no directory
#: listing, bounded block cache, and a first read of 64 KB: a COG's header, and the
#: small overviews stored right after it, in one request (GDAL's 16 KB needed a second
#: request on every demo file; measured with benchmarks/cog_server.py). GDAL asks for
#: each file's size with a HEAD request: its alternative, CPL_VSIL_CURL_USE_HEAD=NO,
#: replaces it by an unranged GET that transfers 64 KB before it is cut. An
#: environment variable of the same name wins (e.g. ``GDAL_HTTP_TIMEOUT=300`` on a
#: slow link): see :func:`gdal_options`.
GDAL_OPTIONS = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "GDAL_HTTP_MAX_RETRY": 5,
    "GDAL_HTTP_RETRY_DELAY": 1,
    "GDAL_HTTP_TIMEOUT": 60,
    "GDAL_HTTP_MULTIRANGE": "YES",
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.TIF,.tiff",
    "GDAL_INGESTED_BYTES_AT_OPEN": 65536,
    "GDAL_CACHEMAX": 256,
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


def is_remote(href: str) -> bool:
    return urlsplit(href).scheme in ("http", "https", "s3", "gs", "az") or href.startswith("/vsi")


def read_items(item_file) -> list[dict]:
    """The date's items in mosaic priority order: acquisition time, then id."""
    feats = json.loads(Path(item_file).read_text())["features"]
    return sorted(feats, key=lambda it: (im.item_datetime(it), it["id"]))


def items_digest(items: list[dict]) -> str:
    """Content hash of a date's items: a store is reused only for the same items."""
    return hashlib.sha1(json.dumps(items, sort_keys=True).encode()).hexdigest()


def normalise_proj(item: dict) -> dict:
    """A copy of ``item`` whose properties and assets carry the projection as both
    ``proj:epsg`` (stackstac 0.5.1 reads only this) and ``proj:code``."""
    out = {**item, "properties": dict(item.get("properties", {})), "links": []}
    out["assets"] = {k: dict(a) for k, a in item.get("assets", {}).items()}
    for d in [out["properties"], *out["assets"].values()]:
        epsg = im._epsg_of(d)
        if epsg is not None:
            d["proj:epsg"], d["proj:code"] = epsg, f"EPSG:{epsg}"
    return out


def geobox_of(grid: dict):
    from affine import Affine
    from odc.geo.geobox import GeoBox

    a, b, c, d, e, f = grid["transform"]
    return GeoBox((grid["height"], grid["width"]), Affine(a, b, c, d, e, f), grid.get("crs_wkt") or grid["crs"])


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
    h, w = fine.shape[1] // f, fine.shape[2] // f
    bits = np.uint16(1) << np.minimum(fine, 15).astype(np.uint16)
    out = np.zeros((fine.shape[0], h, w), np.uint16)
    for i in range(f):  # f x f strided views: no (n, h, f, w, f) reduction
        for j in range(f):
            out |= bits[:, i : h * f : f, j : w * f : f]
    return out


# ----------------------------------------------------------------------------- odc-stac
OVERVIEWS = ("matching", "finer", "off")


def matching_overview(scale: float, factors: list[int], policy: str = "matching") -> int | None:
    """Index of the overview to read at ``scale`` source pixels per target pixel
    (None: full resolution). ``matching``: the coarsest whose factor is at most
    ``scale * (1 + OVERVIEW_TOLERANCE)``; ``finer``: the next finer one (averaging at
    least 2 x 2 of its pixels per target pixel: closer to the footprint's mean at
    edges); ``off``: never an overview."""
    best = None
    for i, f in enumerate(factors):
        if f <= scale * (1 + OVERVIEW_TOLERANCE):
            best = i
    if policy == "off" or best is None:
        return None
    if policy == "finer":
        return best - 1 if best > 0 else None
    return best


_PLANS_LOCK = threading.Lock()


@functools.lru_cache(maxsize=256)
def _reproject_plan(src_geobox, dst_geobox, ttol: float):
    from odc.geo.overlap import compute_reproject_roi

    return compute_reproject_roi(src_geobox, dst_geobox, ttol=ttol)


def reproject_plan(rdr, dst_geobox, ttol: float):
    """odc-loader's reading plan for a file onto ``dst_geobox`` (what its
    ``_reproject_info_from_rio`` computes), made once per file grid, target grid and
    tolerance in the process, and shared by the read threads.

    The plan projects the two grids onto each other with pyproj, and pyproj makes each
    transformer again in every thread that uses it (35-50 ms each). Planned in each of
    8 read threads, 31 demo items took 4.2 s of CPU to load (29 transformers made), against
    1.9 s in one thread; with the plans shared, 2.9-3.1 s (10 made). A job's files share
    a few grids (one per MGRS tile and resolution), so it makes a few plans. Reading one
    thread at a time, sharing them saves 3-4 ms per item too."""
    from odc.geo.converters import rio_geobox

    with _PLANS_LOCK:  # one thread makes a plan; the others wait for it
        return _reproject_plan(rio_geobox(rdr), dst_geobox, float(ttol))


def _overview_driver(policy: str = "matching"):
    """odc-loader's rasterio driver, reading the overview :func:`matching_overview`
    picks instead of odc-geo's choice, which snaps the scale down to an integer unless
    it is within 1e-3 of one (3.996 -> 3 -> the 2x overview). Everything else is
    odc-loader's own reading code."""
    import rasterio
    from odc.loader._reader import resolve_band_query
    from odc.loader._rio import RioDriver, RioReader, _do_read, rio_env

    def read(src, cfg, dst_geobox, dst=None, selection=None):
        ttol = 0.9 if cfg.nearest else 0.05
        with rasterio.open(src.uri, "r", sharing=False) as rdr:
            bidx = resolve_band_query(src, rdr.count, selection=selection)
            rr = reproject_plan(rdr, dst_geobox, ttol)
            ovr = None
            if cfg.use_overviews and rr.read_shrink > 1:
                ovr = matching_overview(rr.scale, rdr.overviews(bidx if isinstance(bidx, int) else bidx[0]), policy)
            if ovr is None:
                with rio_env(VSI_CACHE=False):
                    return _do_read(rasterio.band(rdr, bidx), cfg, dst_geobox, rr, dst=dst)
        with rasterio.open(src.uri, "r", sharing=False, overview_level=ovr) as rdr_ovr:
            with rio_env(VSI_CACHE=False):
                return _do_read(rasterio.band(rdr_ovr, bidx), cfg, dst_geobox, rr, dst=dst)

    class Reader(RioReader):
        def read(self, cfg, dst_geobox, *, dst=None, selection=None):
            return read(self._src, cfg, dst_geobox, dst=dst, selection=selection)

    class Driver(RioDriver):
        def open(self, src, ctx):
            return Reader(src, ctx)

    return Driver()


def _load_odc(items, grid, fine, bands, mask_band, pool, patch_url, overviews="matching"):
    import odc.stac
    import pystac

    odc.stac.configure_rio(cloud_defaults=False, **gdal_options())
    stac_items = [pystac.Item.from_dict(it) for it in items]
    common = dict(
        groupby="id",
        preserve_original_order=True,  # keep our (time, id) priority order
        stac_cfg=_stac_cfg(items[0].get("collection"), bands, mask_band),
        patch_url=patch_url,
        # odc-stac makes a new thread pool per call when given a number, and each new
        # thread sets up its GDAL environment: the calling thread when there is no pool
        pool=pool,
        chunks=None,
        driver=_overview_driver(overviews),
    )
    refl = odc.stac.load(stac_items, bands=bands, geobox=geobox_of(grid), resampling="average", **common)
    scl = odc.stac.load(
        stac_items, bands=[mask_band], geobox=geobox_of(fine), resampling="nearest", use_overviews=False, **common
    )
    return {b: refl[b].values for b in bands}, scl[mask_band].values


# ----------------------------------------------------------------------------- stackstac
def _load_stackstac(items, grid, fine, bands, mask_band, pool, patch_url, overviews="off"):
    import stackstac
    from rasterio.enums import Resampling

    epsg = grid.get("epsg")
    if not epsg:
        raise UserError(
            f"tiles.loader: stackstac needs a grid CRS with an EPSG code, and grid.crs {grid['crs']} has none: "
            "use tiles.loader: odc-stac, or an EPSG CRS."
        )
    if patch_url:
        items = [
            {**it, "assets": {k: {**a, "href": patch_url(a["href"])} for k, a in it["assets"].items()}} for it in items
        ]
    env = stackstac.rio_env.LayeredEnv(
        always={**stackstac.DEFAULT_GDAL_ENV._always, **gdal_options()},
        open=stackstac.DEFAULT_GDAL_ENV._open,
        read=stackstac.DEFAULT_GDAL_ENV._read,
    )

    def stack(g, assets, resampling, dtype):
        import dask

        arr = stackstac.stack(
            items,
            assets=assets,
            epsg=int(epsg),
            resolution=g["resolution"],
            bounds=tuple(g["bounds"]),
            snap_bounds=False,
            resampling=resampling,
            dtype=np.dtype(dtype),
            fill_value=np.dtype(dtype).type(0),  # stackstac checks the fill value's type
            rescale=False,
            sortby_date=False,  # keep our (time, id) priority order
            xy_coords="center",
            properties=False,
            band_coords=False,
            chunksize=(1, 1, g["height"], g["width"]),
            gdal_env=env,
            errors_as_nodata=(),
        )
        # never in the calling thread: stackstac 0.5.1 leaves its thread-local rasterio
        # environment active in the threads it reads in, and odc-stac (or a later
        # stackstac call) would then capture that stale GDAL configuration
        with contextlib.ExitStack() as stack:
            threads = pool
            if threads is None:
                from concurrent.futures import ThreadPoolExecutor

                threads = stack.enter_context(ThreadPoolExecutor(1))
            with dask.config.set(pool=threads):
                return arr.compute(scheduler="threads")

    refl = stack(grid, bands, Resampling.average, "uint16")
    scl = stack(fine, [mask_band], Resampling.nearest, "uint8")
    return {b: refl.sel(band=b).values for b in bands}, scl.sel(band=mask_band).values


def load_items(items, grid, bands, mask_band, loader="odc-stac", pool=None, patch_url=None, overviews="matching"):
    """Per-item arrays on the grid: ``({band: (n, y, x)}, scl (n, y, x), scl_any (n, y, x))``.

    One call of the loader for the reflectance bands of all ``items`` and one for the
    mask band, which is read with nearest on a grid ``f`` times finer than the target
    (``f`` = target / native resolution, rounded up), so each target pixel sees every
    mask cell it covers: ``scl`` is its central sub-cell, ``scl_any`` the bitmask of
    all classes present (for the conservative rule). ``pool``: a thread pool whose
    threads keep reads in flight (None: one read at a time, in the calling thread); a
    job keeps one pool for all its loads, because each new thread sets GDAL and PROJ
    up again (about 0.3 s of CPU per thread). ``overviews`` (odc-stac only;
    stackstac warps the full resolution): :func:`matching_overview`."""
    if loader not in LOADERS:
        raise UserError(f"tiles.loader: {loader!r} is not a loader; choose one of {', '.join(LOADERS)}.")
    f = mask_factor(items, mask_band, grid["resolution"])
    items = [normalise_proj(it) for it in items]
    fn = _load_odc if loader == "odc-stac" else _load_stackstac
    try:
        with _warnings_of_pooled_warps():
            refl, fine = fn(items, grid, fine_grid(grid, f), bands, mask_band, pool, patch_url, overviews)
    except UserError:
        raise
    except Exception as exc:
        raise ReadError(_locate_failure(items, bands + [mask_band], patch_url, exc)) from None
    for name, a in [*refl.items(), (mask_band, fine)]:
        if a.shape[0] != len(items):
            raise RuntimeError(f"{loader} returned {a.shape[0]} slices of {name} for {len(items)} items")
    return refl, fine[:, f // 2 :: f, f // 2 :: f], class_bits(fine, f)


@contextlib.contextmanager
def _warnings_of_pooled_warps():
    """The process's warning filters as they were before a load whose reads ran in a
    thread pool, without rasterio's warning about its own temporary dataset.

    ``rasterio.warp.reproject`` wraps the in-memory dataset it warps into in
    ``warnings.catch_warnings()`` + ``simplefilter("ignore")``, which saves and
    restores the process-wide filter list and so is not thread-safe: with reads in
    flight on several threads, their saves and restores interleave. One thread then
    warns "Dataset has no geotransform, gcps, or rpcs. The identity matrix will be
    returned" about that temporary dataset (the pixels are right: the transform is set
    just after), and an "ignore every warning" filter can be left behind for the rest
    of the job. Here the calling thread saves the filters before the load and puts
    them back after it, when no read is running, and ignores that one warning from
    ``rasterio.warp`` (a source file without georeferencing warns when it is opened,
    from ``rasterio``, which stays visible)."""
    import warnings

    from rasterio.errors import NotGeoreferencedWarning

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=NotGeoreferencedWarning, module=r"rasterio\.warp")
        yield


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
    """First valid item per pixel (items already in priority order): a pixel is valid
    in an item where every band is non-zero.

    Returns ``(bands, scl, source)``, or ``(bands, scl, source, scl_any)`` when
    ``scl_any`` is given. Pixels that no item covers hold 0 (bands, SCL), ``NO_SOURCE``
    (source) and 1 (``scl_any``: the no-data class's bit). Item by item, each fills the
    pixels still empty (no index arrays: a single item is one masked copy per array)."""
    bands = list(per_item)
    n = scl.shape[0]
    if n >= NO_SOURCE:
        raise UserError(f"{n} items on one date: at most {NO_SOURCE - 1} can be mosaicked")
    shape = scl.shape[1:]
    out = {b: np.zeros(shape, np.uint16) for b in bands}
    out_scl = np.zeros(shape, np.uint8)
    out_any = None if scl_any is None else np.ones(shape, np.uint16)
    source = np.full(shape, NO_SOURCE, np.uint8)
    empty = None  # pixels no item has filled yet (None: all of them)
    for k in range(n):
        take = per_item[bands[0]][k] != 0
        for b in bands[1:]:
            take &= per_item[b][k] != 0
        if empty is not None:
            take &= empty
        for b in bands:
            np.copyto(out[b], per_item[b][k], casting="unsafe", where=take)
        np.copyto(out_scl, scl[k], casting="unsafe", where=take)
        if out_any is not None:
            np.copyto(out_any, scl_any[k], casting="unsafe", where=take)
        np.copyto(source, np.uint8(k), where=take)
        empty = ~take if empty is None else empty & ~take
        if not empty.any():
            break
    if scl_any is None:
        return out, out_scl, source
    return out, out_scl, source, out_any


def mean_datetime(items: list[dict]) -> str:
    ts = [im.item_datetime(it).timestamp() for it in items]
    return im.format_datetime(dt.datetime.fromtimestamp(sum(ts) / len(ts), dt.UTC))


def item_record(it: dict) -> dict:
    """What the later stages need of an item (its baseline drives the offset fix)."""
    props = it.get("properties", {})
    return {
        "id": it["id"],
        "datetime": im.format_datetime(im.item_datetime(it)),
        "processing_baseline": props.get("s2:processing_baseline"),
        "boa_offset_applied": props.get("earthsearch:boa_offset_applied"),
        "platform": im.platform(it),
        "mgrs_tile": im.mgrs_tile(it),
    }


def date_dataset(template, date: str, items: list[dict], arrays: dict, attrs: dict):
    """One date's store: ``arrays`` (2-D, on the grid) with the grid's coordinates and CRS."""
    ds = template.copy()
    for name, a in arrays.items():
        ds[name] = (("y", "x"), a)
    ds.attrs = {**attrs, "date": date, "datetime": mean_datetime(items), "items": [item_record(it) for it in items]}
    return ds


def _groups(dates: list[str], items_of: dict, n_values: int, limit: int = GROUP_BYTES):
    """Consecutive dates whose items' arrays (``n_values`` bytes per item) fit ``limit``."""
    group, size = [], 0
    for d in dates:
        add = len(items_of[d]) * n_values
        if group and size + add > limit:
            yield group
            group, size = [], 0
        group.append(d)
        size += add
    if group:
        yield group


def _load_dates(dates, items_of, grid, bands, mask_band, loader, pool, patch_url, overviews="matching"):
    """``{date: (per_item bands, scl, scl_any)}`` for a group of dates, in one load."""
    items = [it for d in dates for it in items_of[d]]
    log.info("reading %d item(s) of %d date(s) (%s .. %s)", len(items), len(dates), dates[0], dates[-1])
    refl, scl, scl_any = load_items(items, grid, bands, mask_band, loader, pool, patch_url, overviews)
    out, i = {}, 0
    for d in dates:
        n = len(items_of[d])
        out[d] = ({b: refl[b][i : i + n] for b in bands}, scl[i : i + n], scl_any[i : i + n])
        i += n
    return out


@contextlib.contextmanager
def _read_pool(reads: int):
    """One thread pool for all the loads of a job (None: read in the calling thread)."""
    if reads <= 1:
        yield None
        return
    from concurrent.futures import ThreadPoolExecutor

    class KeptPool(ThreadPoolExecutor):
        """odc-loader 0.6's pmap enters the pool it is given (``with pool``), which
        shuts it down after one load: this one stays up for the job's next loads."""

        def __exit__(self, *exc):
            return False

    pool = KeptPool(reads, thread_name_prefix="read")
    try:
        yield pool
    finally:
        pool.shutdown()


def _load_group(group, items_of, grid, bands, mask_band, loader, pool, patch_url, on_read_error, skipped, overviews):
    """``(date, arrays)`` of a group's dates, in date order, for the caller to write as
    they come; on a read error, the group's dates one by one, so that only the date(s)
    that cannot be read fail (or, with ``on_read_error="skip"``, are left out and
    appended to ``skipped``). A date that fails is raised once the dates before it have
    been handed out: what was read is written, and a rerun reads only the rest."""
    try:
        loaded = _load_dates(group, items_of, grid, bands, mask_band, loader, pool, patch_url, overviews)
    except ReadError:
        if len(group) == 1 and on_read_error != "skip":
            raise
        loaded = None
    if loaded is not None:
        yield from loaded.items()
        return
    for d in group:
        try:
            one = _load_dates([d], items_of, grid, bands, mask_band, loader, pool, patch_url, overviews)
        except ReadError as exc:
            if on_read_error != "skip":
                raise
            log.warning("date %s skipped (tiles.on_read_error: skip): %s", d, exc)
            skipped.append({"date": d, "reason": str(exc)})
            continue
        yield d, one[d]


SKIPPED = "skipped.json"


def read_skipped(folder) -> list[dict]:
    """Dates a batch folder dropped on read errors (tiles.on_read_error: skip)."""
    path = Path(folder) / SKIPPED
    return json.loads(path.read_text()) if path.exists() else []


def kept_stores(out_dir: Path, wanted: dict[str, str], recipe: str) -> set[str]:
    """Dates whose store in ``out_dir`` (from an earlier run of this batch) has this
    ``recipe`` and the same items (``wanted``: date -> items digest). Every other
    store is removed (stale: other items, other settings, or a date no longer in
    the batch)."""
    from s2ts.io import remove
    from s2ts.zarr_io import read_attrs

    keep = set()
    for store in sorted(out_dir.glob("*.zarr")):
        try:
            attrs = read_attrs(store)
        except (FileNotFoundError, ValueError):
            attrs = {}
        if attrs.get("recipe") == recipe and attrs.get("items_digest") == wanted.get(store.stem):
            keep.add(store.stem)
        else:
            remove(store)
    return keep


#: dates a worker process of a tile job takes at least: a process's own set-up (GDAL
#: and PROJ, odc-stac's first call: 0.2-0.3 s) is paid back over about 8 dates at
#: 50-70 ms of a date's reading, mosaicking and writing (docs/performance.md)
MIN_DATES_PER_WORKER = 8


def worker_count(threads: int, n_dates: int) -> int:
    """Processes a tile job splits its dates among: one per thread Snakemake gave the
    job, and no more than one per :data:`MIN_DATES_PER_WORKER` dates to read. A date's
    work is mostly Python (odc-stac's planning, xarray's and zarr's writing), so threads
    share one core: processes are what use the job's cores. Forked from the job's
    process (imports loaded once), so Linux only; elsewhere 1."""
    if not sys.platform.startswith("linux"):
        return 1
    return max(1, min(int(threads), n_dates // MIN_DATES_PER_WORKER))


def _tile_dates(dates: list[str], part: dict) -> list[dict]:
    """Read, mosaic and write the stores of ``dates`` (one process's share of a batch,
    see :func:`tile_batch` for ``part``); returns the dates skipped on read errors."""
    from s2ts.zarr_io import grid_dataset, write_dataset

    if not dates:
        return []
    items_of, grid, bands, mask_band = part["items_of"], part["grid"], part["bands"], part["mask_band"]
    template = grid_dataset(grid)
    f = mask_factor([it for d in dates for it in items_of[d]], mask_band, grid["resolution"])
    per_item = grid["height"] * grid["width"] * (2 * len(bands) + f * f + 2)
    patch_url = href_patcher(part["signing"])
    skipped, written = [], 0
    with _read_pool(part["reads"]) as pool:
        for group in _groups(dates, items_of, per_item, part["limit"]):
            for d, (refl, scl, scl_any) in _load_group(
                group,
                items_of,
                grid,
                bands,
                mask_band,
                part["loader"],
                pool,
                patch_url,
                part["on_read_error"],
                skipped,
                part["overviews"],
            ):
                written += 1
                arrays, out_scl, source, out_any = mosaic(refl, scl, scl_any)
                arrays.update({mask_band: out_scl, f"{mask_band}_any": out_any, "source": source})
                attrs = {**part["base_attrs"], "items_digest": part["digests"][d]}
                write_dataset(date_dataset(template, d, items_of[d], arrays, attrs), Path(part["out"]) / f"{d}.zarr")
                counts = np.bincount(source.ravel(), minlength=NO_SOURCE + 1)[: len(items_of[d])]
                log.info(
                    "date %s: written (pixels per item: %s); %d of %d dates to read done",
                    d,
                    counts.tolist(),
                    written + len(skipped),
                    len(dates),
                )
    return skipped


def _worker_init(gdal_threads: int) -> None:
    """A tile worker process: Ctrl-C reaches the job's process, which ends its workers
    (:func:`_in_processes`); GDAL gets the worker's share of the job's threads."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ["GDAL_NUM_THREADS"] = str(gdal_threads)


def _in_processes(parts: list[list[str]], part: dict, gdal_threads: int) -> list[dict]:
    """:func:`_tile_dates` of each consecutive share of the dates in its own forked
    process, all at once; the skipped dates in date order. The first failure (a
    read error with ``tiles.on_read_error: fail``, a bad item) ends the other workers
    and is raised here, as a single process would raise it."""
    import multiprocessing

    # what every worker imports, imported once here and inherited by the fork
    import odc.stac  # noqa: F401
    import pystac  # noqa: F401
    import rioxarray  # noqa: F401
    import zarr  # noqa: F401

    if part["loader"] == "stackstac":
        import stackstac  # noqa: F401
    log.info("%d worker processes: %s dates each", len(parts), "/".join(str(len(p)) for p in parts))
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(len(parts), initializer=_worker_init, initargs=(gdal_threads,)) as pool:
        pending = [pool.apply_async(_tile_dates, (dates, part)) for dates in parts]
        results = [r.get() for r in pending]  # leaving the block terminates the workers on an error
    return [s for r in results for s in r]


def tile_batch(
    item_files,
    grid_json,
    bands,
    mask_band,
    out_dir,
    signing="none",
    threads=1,
    on_read_error="fail",
    batch="",
    loader="odc-stac",
    reads_in_flight=16,
    code="",
    overviews="matching",
    index=None,
):
    """One batch of dates: one store per date in ``out_dir``, reusing the stores of an
    earlier run made with the same recipe (bands, mask band, grid, loader and the
    stage's ``code`` digest) from the same items. With
    ``on_read_error="skip"`` a date whose pixels cannot be read is left out and
    recorded in ``out_dir/skipped.json`` (carried to the NetCDF's provenance).
    ``index``: the batch index to write once every store is in place (the tile rule's
    output: the dates of the batch's stores, see s2ts.batches.batch_stores); a job
    that fails leaves none, and keeps every store it wrote."""
    from s2ts.io import remove, write_json

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    items_of = {Path(f).stem: read_items(f) for f in item_files}
    for date, items in items_of.items():
        if not items:
            raise UserError(f"the item file of {date} lists no item: rerun the stac_manifest stage")
    digests = {d: items_digest(items) for d, items in items_of.items()}
    aoi = json.loads(Path(grid_json).read_text())
    grid = aoi["grid"]
    recipe = hashlib.sha1(
        json.dumps([list(bands), mask_band, grid, loader, overviews, code], sort_keys=True).encode()
    ).hexdigest()
    kept = kept_stores(out, digests, recipe)
    todo = [d for d in sorted(items_of) if d not in kept]
    log.info(
        "batch %s: %d date(s), %d kept from an earlier run, %d to read; %d thread(s)",
        batch,
        len(items_of),
        len(kept),
        len(todo),
        int(threads),
    )
    remote = any(is_remote(a["href"]) for d in todo for it in items_of[d] for a in it["assets"].values())
    base_attrs = {
        "stage": "tile",
        "aoi": aoi["id"],
        "bands": list(bands),
        "mask_band": mask_band,
        "grid": grid,
        "offset_corrected": False,
        "loader": loader,
        "overviews": overviews if loader == "odc-stac" else "off",
        "recipe": recipe,
    }
    workers = worker_count(threads, len(todo))
    # network reads are latency-bound: tiles.reads_in_flight whatever the cores; local
    # reads: the job's threads; either shared among the job's processes
    reads = max(int(threads), int(reads_in_flight)) if remote else int(threads)
    part = {
        "items_of": {d: items_of[d] for d in todo},
        "digests": digests,
        "grid": grid,
        "bands": list(bands),
        "mask_band": mask_band,
        "loader": loader,
        "overviews": overviews,
        "signing": signing,
        "on_read_error": on_read_error,
        "base_attrs": base_attrs,
        "out": str(out),
        "limit": GROUP_BYTES // workers,
        "reads": max(1, reads // workers),
    }
    if workers == 1:
        skipped = _tile_dates(todo, part)
    else:
        parts = [list(p) for p in np.array_split(np.array(todo, dtype=object), workers)]
        skipped = _in_processes(parts, part, max(1, int(threads) // workers))
    if skipped:
        write_json(out / SKIPPED, skipped)
    else:
        remove(out / SKIPPED)
    if index is not None:
        gone = {s["date"] for s in skipped}
        write_json(index, {"dates": [d for d in sorted(items_of) if d not in gone]})
    return skipped


def tile_from_snakemake(smk) -> None:
    os.environ.setdefault("GDAL_NUM_THREADS", str(smk.threads))
    p = smk.params
    index = Path(smk.output.tiles)
    tile_batch(
        list(smk.input.item_files),
        smk.input.grid,
        list(p.bands),
        p.mask_band,
        index.with_suffix(""),
        index=index,
        signing=p.signing,
        threads=smk.threads,
        on_read_error=p.on_read_error,
        batch=smk.wildcards.batch,
        loader=p.loader,
        reads_in_flight=p.reads_in_flight,
        code=p.code,
        overviews=p.overviews,
    )
