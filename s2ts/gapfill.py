"""Gap-fill stage: interpolation in time, weighted by the real acquisition times.

Input: the AOI's masked batch stores (int16 reflectance DN, missing = -32768).
Output: one store ``gapfill.zarr`` with, per band, a ``(time, y, x)`` int16 cube
(fill -32768) and a ``flag`` ``(time, y, x)`` uint8 cube, plus the per-date
records (``valid_fraction``, ``item_records``, ``offset_correction``).

Method (``gapfill.method``), per pixel and band (:func:`gapfill_series`), for a
missing value at time ``t`` between the previous observation ``(t0, v0)`` and the
next one ``(t1, v1)``, ``t`` the acquisition times in seconds (a 5-day gap and a
50-day gap weigh differently, unlike an index-based interpolation, and unlike the
original package whose ``interpolate_na()`` without ``dim`` silently did nothing,
leaving a back/forward fill):

* ``linear`` (the default): ``rint(v0 + (v1 - v0) * (t - t0) / (t1 - t0))``;
* ``nearest``: the observation nearest in time, ``v0`` if ``t - t0 <= t1 - t``
  (a tie goes to the earlier observation), else ``v1``;
* ``pchip``: the monotone piecewise cubic Hermite interpolant of Fritsch and
  Carlson through the pixel's observations, exactly as
  ``scipy.interpolate.PchipInterpolator`` (derivatives: the weighted harmonic mean
  of the two neighbouring slopes, 0 at a local extremum; at the first and last
  observation scipy's one-sided three-point estimate; a series of two observations
  is linear), rounded to the nearest DN. It never leaves ``[min(v0, v1),
  max(v0, v1)]`` (no overshoot). The value at ``t`` depends on the two
  observations bracketing it and the one before and after them, so it is
  vectorised like ``linear`` (:func:`_pchip_values`), never a scipy object per
  pixel. ``tests/test_gapfill.py`` checks it against scipy's PchipInterpolator;

and, for every method:

* with ``fill_ends``, values before the first observation get the first
  observation (backward fill) and values after the last get the last (forward
  fill);
* ``max_gap_days`` (optional, None = no limit): a missing value inside a gap
  whose bracketing observations are more than ``max_gap_days`` apart stays
  missing (the whole gap, not only its middle: the decision is about whether the
  two observations may be joined by a line). At the ends there is no second
  observation, so the rule is by distance: a value is end-filled only if it is at
  most ``max_gap_days`` from the nearest (first or last) observation;
* a pixel without any observation stays missing.

``flag``: 0 missing, 1 observed, 2 interpolated (filled between two observations
by the method), 3 end-filled (nearest observation copied). The bands of a masked store normally share their missing
pixels (one cloud mask); should they differ, the stored flag is the least
trustworthy state over the bands, in the order missing > end-filled >
interpolated > observed.

Memory: the cube is processed in spatial windows of ``CHUNK`` x ``CHUNK``
pixels with all dates at once (never chunked along time). Inside a window the
work is vectorised over pixels: observation indices propagated forward and
backward with running maxima/minima (int16), then one pass per date fills that
date's missing pixels, with float64 only for those pixels of that date. The
cube is never promoted to float (about 7 bytes per value of a window at peak,
less than one float64 copy).

Import-light on purpose (numpy + zarr only): the rule runs in a numpy/zarr
environment.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from s2ts.errors import UserError
from s2ts.zarr_io import CHUNK, FILL_INT16

log = logging.getLogger("gapfill")

MISSING, OBSERVED, INTERPOLATED, END_FILLED = 0, 1, 2, 3
METHODS = ("linear", "nearest", "pchip")
FLAG_VALUES = [MISSING, OBSERVED, INTERPOLATED, END_FILLED]
FLAG_MEANINGS = "missing observed interpolated end_filled"
DAY = 86400.0
#: per-date variables carried from the masked stores to the NetCDF
PER_DATE = ("valid_fraction", "solar_day", "item_records", "offset_correction")
#: (date, pixel) elements per block inside gapfill_series: bounds its temporary index
#: arrays (8 MB each in int16). The per-date loop runs once per block, so a long series
#: wants wide blocks: on 550 dates x 128 x 207 pixels x 3 bands the kernel took 0.74 s
#: (linear) and 1.72 s (pchip) with 2**22, against 1.19 s and 2.78 s with 2**20, at the
#: same peak of traced memory (docs/performance.md, ninth session)
_BLOCK_ELEMENTS = 2**22
#: rank of each flag when bands disagree: the least trustworthy state wins
_RANK = np.array([3, 0, 1, 2], dtype=np.uint8)  # missing > end_filled > interpolated > observed
_UNRANK = np.array([OBSERVED, INTERPOLATED, END_FILLED, MISSING], dtype=np.uint8)


def gapfill_series(
    values: np.ndarray,
    times,
    fill_ends: bool = True,
    max_gap_days: float | None = None,
    method: str = "linear",
    inplace: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Fill the missing values (-32768) of int16 series along the first axis.

    ``values``: int16 ``(T, ...)``; ``times``: ``(T,)`` acquisition times in
    seconds, strictly increasing; ``method``: linear, nearest or pchip. Returns
    ``(filled, flag)``: int16 of the same shape (still -32768 where nothing may be
    filled) and uint8 flags (0 missing, 1 observed, 2 interpolated, 3 end-filled).
    See the module docstring for the rules.
    """
    values = np.asarray(values)
    t, max_gap = _checked(values, times, max_gap_days, method)
    flat = values.reshape(values.shape[0], -1)
    filled = flat if inplace and np.shares_memory(flat, values) else flat.copy()
    # flag starts as the observation mask (bool viewed as uint8: 1 observed, 0 missing)
    flag = (flat != FILL_INT16).view(np.uint8)
    _fill_blocks([filled], flag, t, fill_ends, max_gap, method)
    return filled.reshape(values.shape), flag.reshape(values.shape)


def _checked(values: np.ndarray, times, max_gap_days, method: str) -> tuple[np.ndarray, float | None]:
    """The arguments of :func:`gapfill_series` checked: ``(times as float64, max_gap in
    seconds or None)``."""
    if method not in METHODS:
        raise ValueError(f"gapfill method must be one of {', '.join(METHODS)}, got {method!r}")
    if values.dtype != np.int16:
        raise TypeError(f"gapfill_series expects int16 values (missing = {FILL_INT16}), got {values.dtype}")
    if values.ndim < 1:
        raise ValueError("gapfill_series expects values shaped (time, ...)")
    t = np.asarray(times, dtype=np.float64)
    n_t = values.shape[0]
    if t.shape != (n_t,):
        raise ValueError(f"times has shape {t.shape}, expected ({n_t},) to match values {values.shape}")
    if n_t > 1 and not np.all(np.diff(t) > 0):
        raise ValueError("times must be strictly increasing")
    if max_gap_days is not None and not max_gap_days > 0:
        raise ValueError(f"max_gap_days must be a positive number of days or None, got {max_gap_days}")
    return t, None if max_gap_days is None else float(max_gap_days) * DAY


def _fill_blocks(outs: list[np.ndarray], flag: np.ndarray, t: np.ndarray, fill_ends, max_gap, method) -> None:
    """:func:`_fill_block` over blocks of pixels: ``outs`` the bands' ``(T, pixels)``
    int16 arrays, ``flag`` ``(T, pixels)`` their shared observation mask on entry."""
    block = max(1, _BLOCK_ELEMENTS // max(1, flag.shape[0]))
    for start in range(0, flag.shape[1], block):
        sl = slice(start, start + block)
        _fill_block([o[:, sl] for o in outs], flag[:, sl], t, fill_ends, max_gap, method)


def _fill_block(
    outs: list[np.ndarray],
    flag: np.ndarray,
    t: np.ndarray,
    fill_ends: bool,
    max_gap: float | None,
    method: str = "linear",
) -> None:
    """Fill 2-D blocks ``(T, pixels)`` in place: ``outs`` int16 values of bands that
    share one observation mask, ``flag`` that mask (1/0) on entry.

    Vectorised over pixels: the previous and next observation of every
    (date, pixel) come from a running maximum / minimum of observation indices;
    then one pass per date (never per pixel) fills that date's missing pixels. The
    indices, selections and time differences are worked out once per pixel and used
    for each band. Only observed values are read, only missing ones written, so in
    place is safe.
    """
    n_t = flag.shape[0]
    if n_t == 0 or flag.shape[1] == 0:
        return
    obs = flag.view(bool)
    idx = np.int16 if n_t < 2**15 - 1 else np.int32
    steps = np.arange(n_t, dtype=idx)[:, None]
    # index of the previous observation (-1 = none) and of the next one (n_t = none)
    prev = np.where(obs, steps, idx(-1))
    np.maximum.accumulate(prev, axis=0, out=prev)
    nxt = np.where(obs, steps, idx(n_t))[::-1]
    np.minimum.accumulate(nxt, axis=0, out=nxt)
    nxt = nxt[::-1]
    for i in range(n_t):
        cols = np.flatnonzero(flag[i] == MISSING)
        if not cols.size:
            continue
        p, n = prev[i, cols], nxt[i, cols]
        has_p, has_n = p >= 0, n < n_t
        # interior: linear between the previous and next observations, in real time
        sel = has_p & has_n
        c, i0, i1 = cols[sel], p[sel], n[sel]
        t0, t1 = t[i0], t[i1]
        if max_gap is not None:
            keep = (t1 - t0) <= max_gap
            c, i0, i1, t0, t1 = c[keep], i0[keep], i1[keep], t0[keep], t1[keep]
        if c.size:
            if method == "nearest":  # a tie (t - t0 == t1 - t) goes to the earlier observation
                src = np.where(t[i] - t0 <= t1 - t[i], i0, i1)
                for out in outs:
                    out[i, c] = out[src, c]
            elif method == "pchip":
                # the observation before the previous one (-1: none) and after the next one (n_t: none)
                pp = np.where(i0 >= 1, prev[np.maximum(i0 - 1, 0), c], -1)
                nn = np.where(i1 + 1 < n_t, nxt[np.minimum(i1 + 1, n_t - 1), c], n_t)
                for out in outs:
                    out[i, c] = _pchip_values(out, c, t, t[i], pp, i0, i1, nn)
            else:
                dt0, span = t[i] - t0, t1 - t0
                for out in outs:
                    v0 = out[i0, c].astype(np.float64)
                    v1 = out[i1, c].astype(np.float64)
                    out[i, c] = np.rint(v0 + (v1 - v0) * dt0 / span).astype(np.int16)
            flag[i, c] = INTERPOLATED
        if not fill_ends:
            continue
        # before the first observation (backward fill) / after the last one (forward fill)
        for sel, src_of in ((~has_p & has_n, n), (has_p & ~has_n, p)):
            c, src = cols[sel], src_of[sel]
            if max_gap is not None:
                keep = np.abs(t[src] - t[i]) <= max_gap
                c, src = c[keep], src[keep]
            if c.size:
                for out in outs:
                    out[i, c] = out[src, c]
                flag[i, c] = END_FILLED


def _pchip_slope_interior(h_left, h_right, m_left, m_right) -> np.ndarray:
    """scipy's PCHIP derivative at an interior point: 0 where the slopes on either
    side differ in sign or one is 0, else their weighted harmonic mean (Brodlie's
    weights w1 = 2 h_right + h_left, w2 = h_right + 2 h_left)."""
    w1 = 2 * h_right + h_left
    w2 = h_right + 2 * h_left
    flat = (np.sign(m_left) != np.sign(m_right)) | (m_left == 0) | (m_right == 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        d = (w1 + w2) / (w1 / m_left + w2 / m_right)
    return np.where(flat, 0.0, d)


def _pchip_slope_edge(h0, h1, m0, m1) -> np.ndarray:
    """scipy's PCHIP derivative at the first/last point: the one-sided three-point
    estimate, 0 if its sign differs from the end slope ``m0``, 3 * m0 if the slopes
    change sign and it exceeds 3 |m0| (Moler, Numerical Computing with MATLAB 3.6)."""
    d = ((2 * h0 + h1) * m0 - h0 * m1) / (h0 + h1)
    wrong_sign = np.sign(d) != np.sign(m0)
    too_steep = (np.sign(m0) != np.sign(m1)) & (np.abs(d) > 3 * np.abs(m0))
    return np.where(wrong_sign, 0.0, np.where(too_steep, 3 * m0, d))


def _pchip_values(out, c, t, ti, pp, i0, i1, nn) -> np.ndarray:
    """PCHIP values (int16) at time ``ti`` of the pixels ``c`` between their
    observations ``i0`` and ``i1``, with ``pp`` the observation before ``i0`` (-1:
    none) and ``nn`` the one after ``i1`` (``len(t)``: none): the four points that
    set the cubic on ``[t[i0], t[i1]]`` in scipy.interpolate.PchipInterpolator."""
    n_t = len(t)
    y0 = out[i0, c].astype(np.float64)
    y1 = out[i1, c].astype(np.float64)
    t0, t1 = t[i0], t[i1]
    h = t1 - t0
    m = (y1 - y0) / h
    has_pp, has_nn = pp >= 0, nn < n_t
    ppi, nni = np.maximum(pp, 0), np.minimum(nn, n_t - 1)
    hp = np.where(has_pp, t0 - t[ppi], 1.0)
    mp = np.where(has_pp, (y0 - out[ppi, c]) / hp, 0.0)
    hn = np.where(has_nn, t[nni] - t1, 1.0)
    mn = np.where(has_nn, (out[nni, c] - y1) / hn, 0.0)
    # derivative at the previous observation: interior, first of >= 3, or of a 2-point series
    d0 = np.where(has_pp, _pchip_slope_interior(hp, h, mp, m), np.where(has_nn, _pchip_slope_edge(h, hn, m, mn), m))
    # derivative at the next observation: interior, last of >= 3, or of a 2-point series
    d1 = np.where(has_nn, _pchip_slope_interior(h, hn, m, mn), np.where(has_pp, _pchip_slope_edge(h, hp, m, mp), m))
    s = (ti - t0) / h
    s2, s3 = s * s, s * s * s
    v = (2 * s3 - 3 * s2 + 1) * y0 + (s3 - 2 * s2 + s) * h * d0 + (3 * s2 - 2 * s3) * y1 + (s3 - s2) * h * d1
    # monotone on the interval: the clip only removes floating-point excursions
    return np.rint(np.clip(v, np.minimum(y0, y1), np.maximum(y0, y1))).astype(np.int16)


def combine_flags(flags: list[np.ndarray]) -> np.ndarray:
    """One flag from several bands' flags: the least trustworthy state wins
    (missing > end-filled > interpolated > observed)."""
    rank = _RANK[flags[0]]
    for f in flags[1:]:
        np.maximum(rank, _RANK[f], out=rank)
    return _UNRANK[rank]


def fill_kernel(
    *blocks: np.ndarray, times, fill_ends: bool = True, max_gap_days: float | None = None, method: str = "linear"
):
    """:func:`gapfill_series` in xarray.apply_ufunc's layout: one int16 block
    ``(..., time)`` per band; returns ``(*filled, flag)``, each ``(..., time)``, the
    flag combined over the bands (the least trustworthy state wins).

    The kernel works time-major on one C-ordered copy of each band and returns views
    that are time-major in memory, as the ``(time, y, x)`` store is written. dask
    hands the blocks over ``(y, x, time)`` in memory (transposed while it gathers a
    chunk's dates): the copy here turns them back, 0.01-0.07 s per band of a 256 x 512
    x 102 block. A stacked ``(..., band, time)`` block was copied with its bands
    interleaved on the way in, and copied apart again at the write: the stage took
    43.8 s instead of 27.8 s on the 20 km scale run. Bands that share their missing
    pixels (one cloud mask: the usual case) are filled together, the indices and time
    weights worked out once per pixel."""
    series = [np.array(np.moveaxis(b, -1, 0), order="C") for b in blocks]  # (time, ...): our own C-order copies
    shape = series[0].shape
    flat = [s.reshape(shape[0], -1) for s in series]
    obs = flat[0] != FILL_INT16
    if all(np.array_equal(obs, f != FILL_INT16) for f in flat[1:]):
        t, max_gap = _checked(series[0], times, max_gap_days, method)
        flag = obs.view(np.uint8)
        _fill_blocks(flat, flag, t, fill_ends, max_gap, method)
    else:
        flags = [gapfill_series(s, times, fill_ends, max_gap_days, method, inplace=True)[1] for s in series]
        flag = combine_flags(flags)
    return tuple(np.moveaxis(a.reshape(shape), 0, -1) for a in (*series, flag))


def read_masked(stores, n_bands: int = 1, threads: int = 1, rows: int | None = None, cols: int | None = None):
    """The AOI's masked batch stores as one lazy ``(time, y, x)`` Dataset in time
    order, in dask chunks of every date by ``rows`` (default :func:`_rows_per_chunk`)
    and ``cols`` (default ``CHUNK``) pixels, read straight from the stores (a task reads its pixels' whole series;
    no rechunking graph, which held pieces of many chunks at once); with the records
    of the dates its tiles skipped."""
    import warnings

    import xarray as xr

    from s2ts.zarr_io import open_dataset

    if not stores:
        raise UserError(
            "gapfill: no masked store to gap-fill for this AOI (no acquisition date survived the search "
            "and masking). Widen dates.start/dates.end or raise stac.max_cloud_cover, or drop the AOI."
        )
    first = [open_dataset(p) for p in stores]  # lazy, no dask: sizes and attributes
    n_t = sum(d.sizes["time"] for d in first)
    if rows is None:
        rows = _rows_per_chunk(first[0].sizes["y"], first[0].sizes["x"], threads, n_bands * n_t)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*separate the stored chunks")  # rows: a fraction of them
        dss = [open_dataset(p, chunks={"time": -1, "y": rows, "x": cols or CHUNK}) for p in stores]
    grid = dss[0].attrs["grid"]
    for p, d in zip(stores, dss):
        if d.attrs.get("stage") != "mask" or "grid" not in d.attrs:
            raise UserError(f"gapfill: {p} is not a masked store: rerun the mask rule.")
        if not _same_grid(d.attrs["grid"], grid):
            raise UserError(f"gapfill: {p} is not on the AOI grid of {stores[0]}: rerun the AOI's per-date rules.")
    skipped = [s for d in dss for s in d.attrs.get("skipped_dates", [])]
    attrs = dict(dss[0].attrs)
    ds = xr.concat(dss, dim="time", coords="minimal", compat="override", combine_attrs="drop").sortby("time")
    ds.attrs = attrs
    for name in PER_DATE:  # small: in memory
        ds[name] = ds[name].load()
    days = [str(d) for d in ds["solar_day"].values]
    t = ds["time"].values
    if len(set(days)) != len(days) or (len(t) > 1 and not np.all(np.diff(t) > np.timedelta64(0))):
        dupes = sorted({d for d in days if days.count(d) > 1}) or [str(t[i]) for i in np.nonzero(np.diff(t) <= 0)[0]]
        raise UserError(
            f"gapfill: several masked stores share the date/time {', '.join(dupes)}: "
            "each solar day must be one store (same-day items are merged by the tile rule)."
        )
    return ds, skipped


#: int16 values of one chunk's series (every band and date): a chunk's task holds about
#: four times this (the chunk, its filled copy, flags, the written output)
TASK_BYTES = 96 * 2**20


def _rows_per_chunk(height: int, width: int, threads: int, n_values: int = 1) -> int:
    """Rows of a spatial chunk (``CHUNK`` columns wide): ``CHUNK``, or a power-of-two
    fraction of it (so that a stored chunk splits into whole pieces) small enough that
    a chunk's ``n_values`` series per pixel (bands x dates) fit :data:`TASK_BYTES`; and
    on a small grid few enough that every thread has a chunk to fill (a 259 x 207 grid
    is one 512 x 512 chunk otherwise)."""
    cols = min(width, CHUNK)
    rows = CHUNK
    while rows > 1 and 2 * n_values * cols * rows > TASK_BYTES:
        rows //= 2
    chunks_across = -(-width // CHUNK)
    rows_needed = -(-max(1, int(threads)) // chunks_across)  # rows of chunks for one chunk per thread
    return max(1, min(rows, -(-height // rows_needed)))


def _same_grid(a: dict, b: dict) -> bool:
    keys = ("crs", "resolution", "bounds", "width", "height")
    return all(a.get(k) == b.get(k) for k in keys)


def gapfill(
    masked_paths: list[str | Path],
    out_path: str | Path,
    bands: list[str],
    fill_ends: bool = True,
    max_gap_days: float | None = None,
    threads: int = 1,
    method: str = "linear",
) -> dict:
    """Gap-fill an AOI's masked stores into one ``(time, y, x)`` store; return its attrs.

    xarray.apply_ufunc over the vectorised kernel, on dask chunks of every date by
    ``CHUNK`` columns and :func:`_rows_per_chunk` rows (a cube larger than memory is
    read, filled and written chunk by chunk; a small grid is split so that every thread
    has a chunk); ``threads`` chunks at a time (same result). The log states the chunks."""
    import dask
    import xarray as xr

    from s2ts.zarr_io import to_seconds, write_dataset

    bands = list(bands)
    if not bands:
        raise UserError("gapfill: no band to gap-fill: list at least one band under 'bands' in config.yaml.")
    if method not in METHODS:
        raise UserError(f"gapfill.method: {method!r} is not a method: use one of {', '.join(METHODS)}.")
    ds, skipped = read_masked([Path(p) for p in masked_paths], len(bands), threads)
    absent = [b for b in bands if b not in ds]
    if absent:
        raise UserError(
            f"gapfill: band(s) {', '.join(absent)} missing from the masked stores: rerun the per-date rules."
        )
    times = to_seconds(ds["time"].values).astype(np.float64)
    # one argument per band (no stacked band axis: stacking copied every chunk)
    *filled, flag = xr.apply_ufunc(
        fill_kernel,
        *[ds[b].chunk({"time": -1}) for b in bands],  # every date of a spatial chunk in one block
        kwargs={"times": times, "fill_ends": fill_ends, "max_gap_days": max_gap_days, "method": method},
        input_core_dims=[["time"]] * len(bands),
        output_core_dims=[["time"]] * (len(bands) + 1),
        dask="parallelized",
        output_dtypes=[np.int16] * len(bands) + [np.uint8],
    )
    out = xr.Dataset({b: f.transpose("time", "y", "x") for b, f in zip(bands, filled)})
    out["flag"] = flag.transpose("time", "y", "x")
    out["flag"].attrs = {"flag_values": FLAG_VALUES, "flag_meanings": FLAG_MEANINGS}
    for name in PER_DATE:
        out[name] = ds[name]
    gap = {
        "method": method,
        "time_weighting": "acquisition times",
        "fill_ends": bool(fill_ends),
        "max_gap_days": None if max_gap_days is None else float(max_gap_days),
    }
    out.attrs = {
        "stage": "gapfill",
        "aoi": ds.attrs.get("aoi"),
        "grid": ds.attrs["grid"],
        "bands": bands,
        "mask": ds.attrs.get("mask"),
        "gapfill": gap,
        "flag_values": FLAG_VALUES,
        "flag_meanings": FLAG_MEANINGS,
        "skipped_dates": skipped,
    }
    rows, cols = out[bands[0]].chunksizes["y"], out[bands[0]].chunksizes["x"]
    log.info(
        "gap-filling (%s) %d dates x %d x %d pixels, bands %s, in %d chunk(s) of up to %d x %d pixels on %d thread(s)",
        method,
        ds.sizes["time"],
        ds.sizes["y"],
        ds.sizes["x"],
        ",".join(bands),
        len(rows) * len(cols),
        max(rows),
        max(cols),
        threads,
    )
    with dask.config.set(scheduler="threads", num_workers=max(1, int(threads))):
        write_dataset(out, out_path)
        n = flag_counts(out_path)
    log.info(
        "wrote %s: %d observed, %d interpolated, %d end-filled, %d still missing pixel-dates",
        out_path,
        n[OBSERVED],
        n[INTERPOLATED],
        n[END_FILLED],
        n[MISSING],
    )
    return out.attrs


def flag_counts(path) -> list[int]:
    """Pixel-dates per flag value (0-3) of a written gap-filled store, read back
    chunk by chunk. Counted from the store, not in the pass that writes it: computed
    beside the write, dask optimised the counts' graph on its own and fused a second
    copy of the kernel into it (every chunk filled twice: the demo's stage took
    0.78-0.95 s against 0.55-0.63 s now), while an unoptimised pass read the cube
    ahead of the kernel (8.8 GB against 0.94 GB at peak on the scale run). Reading the
    flags back costs a small part of that (uint8, one value per pixel-date)."""
    import dask

    from s2ts.zarr_io import open_dataset

    flag = open_dataset(path, chunks={})["flag"].data
    return [int(v) for v in dask.compute(*[(flag == k).sum() for k in FLAG_VALUES])]


def gapfill_from_snakemake(smk) -> None:
    """Inputs are the AOI's masked batch stores."""
    gapfill(
        [p.removesuffix("/zarr.json") for p in smk.input.masked],
        smk.output.cube.removesuffix("/zarr.json"),
        list(smk.params.bands),
        fill_ends=bool(smk.params.fill_ends),
        max_gap_days=smk.params.max_gap_days,
        threads=smk.threads,
        method=str(getattr(smk.params, "method", "linear")),
    )
