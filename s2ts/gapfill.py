"""Gap-fill stage: linear interpolation in time, weighted by the real acquisition times.

Input: the AOI's per-date "masked" stores (int16 reflectance DN, missing =
-32768). Output: one store ``gapfilled.zarr`` with, per band, a ``(time, y, x)``
int16 cube (fill -32768) and a ``flag`` ``(time, y, x)`` uint8 cube.

Method, per pixel and band (:func:`gapfill_series`):

* a missing value at time ``t`` between the previous observation ``(t0, v0)``
  and the next one ``(t1, v1)`` becomes ``rint(v0 + (v1 - v0) * (t - t0) / (t1 - t0))``
  with ``t`` the acquisition times in seconds: a 5-day gap and a 50-day gap weigh
  differently (unlike an index-based interpolation, and unlike the original
  package whose ``interpolate_na()`` without ``dim`` silently did nothing, leaving
  a back/forward fill);
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

``flag``: 0 missing, 1 observed, 2 interpolated, 3 end-filled (nearest
observation copied). The bands of a masked store normally share their missing
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

import datetime as dt
import logging
from pathlib import Path

import numpy as np

from s2ts.errors import UserError
from s2ts.zarr_io import CHUNK, FILL_INT16, create_store, open_store, read_attrs

log = logging.getLogger("gapfill")

MISSING, OBSERVED, INTERPOLATED, END_FILLED = 0, 1, 2, 3
FLAG_VALUES = [MISSING, OBSERVED, INTERPOLATED, END_FILLED]
FLAG_MEANINGS = "missing observed interpolated end_filled"
DAY = 86400.0
#: (date, pixel) elements per block inside gapfill_series: bounds its temporary index arrays
_BLOCK_ELEMENTS = 2**20
#: rank of each flag when bands disagree: the least trustworthy state wins
_RANK = np.array([3, 0, 1, 2], dtype=np.uint8)  # missing > end_filled > interpolated > observed
_UNRANK = np.array([OBSERVED, INTERPOLATED, END_FILLED, MISSING], dtype=np.uint8)


def gapfill_series(
    values: np.ndarray, times, fill_ends: bool = True, max_gap_days: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Fill the missing values (-32768) of int16 series along the first axis.

    ``values``: int16 ``(T, ...)``; ``times``: ``(T,)`` acquisition times in
    seconds, strictly increasing. Returns ``(filled, flag)``: int16 of the same
    shape (still -32768 where nothing may be filled) and uint8 flags (0 missing,
    1 observed, 2 interpolated, 3 end-filled). See the module docstring for the
    rules.
    """
    values = np.asarray(values)
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
    max_gap = None if max_gap_days is None else float(max_gap_days) * DAY

    flat = values.reshape(n_t, -1)
    filled = flat.copy()
    # flag starts as the observation mask (bool viewed as uint8: 1 observed, 0 missing)
    flag = (flat != FILL_INT16).view(np.uint8)
    block = max(1, _BLOCK_ELEMENTS // max(1, n_t))
    for start in range(0, flat.shape[1], block):
        sl = slice(start, start + block)
        _fill_block(filled[:, sl], flag[:, sl], t, fill_ends, max_gap)
    return filled.reshape(values.shape), flag.reshape(values.shape)


def _fill_block(out: np.ndarray, flag: np.ndarray, t: np.ndarray, fill_ends: bool, max_gap: float | None) -> None:
    """Fill a 2-D block ``(T, pixels)`` in place: ``out`` int16 values, ``flag`` 1/0 on entry.

    Vectorised over pixels: the previous and next observation of every
    (date, pixel) come from a running maximum / minimum of observation indices;
    then one pass per date (never per pixel) fills that date's missing pixels.
    Only observed values are read, only missing ones written, so in place is safe.
    """
    n_t = out.shape[0]
    if n_t == 0 or out.shape[1] == 0:
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
            v0 = out[i0, c].astype(np.float64)
            v1 = out[i1, c].astype(np.float64)
            out[i, c] = np.rint(v0 + (v1 - v0) * (t[i] - t0) / (t1 - t0)).astype(np.int16)
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
                out[i, c] = out[src, c]
                flag[i, c] = END_FILLED


def combine_flags(flags: list[np.ndarray]) -> np.ndarray:
    """One flag from several bands' flags: the least trustworthy state wins
    (missing > end-filled > interpolated > observed)."""
    rank = _RANK[flags[0]]
    for f in flags[1:]:
        np.maximum(rank, _RANK[f], out=rank)
    return _UNRANK[rank]


def parse_datetime(text: str) -> int:
    """ISO 8601 UTC (``...Z`` or with an offset) -> int64 seconds since 1970-01-01 UTC
    (fractions of a second dropped)."""
    d = dt.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    if d.tzinfo is None:
        d = d.replace(tzinfo=dt.UTC)
    return int((d - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(seconds=1))


def _windows(height: int, width: int):
    for y0 in range(0, height, CHUNK):
        for x0 in range(0, width, CHUNK):
            yield slice(y0, min(y0 + CHUNK, height)), slice(x0, min(x0 + CHUNK, width))


def _same_grid(a: dict, b: dict) -> bool:
    keys = ("crs", "resolution", "bounds", "width", "height")
    return all(a.get(k) == b.get(k) for k in keys)


def gapfill(
    masked_paths: list[str | Path],
    out_path: str | Path,
    bands: list[str],
    fill_ends: bool = True,
    max_gap_days: float | None = None,
    skipped: list[dict] | None = None,
    threads: int = 1,
) -> dict:
    """Gap-fill an AOI's masked stores into one ``(time, y, x)`` store; return its attrs.

    ``skipped``: dates dropped on read errors (tiles.on_read_error: skip), recorded
    in the attrs (and from there in the NetCDF's provenance). ``threads``: spatial
    windows filled in parallel (same result)."""
    paths = [Path(p) for p in masked_paths]
    if not paths:
        raise UserError(
            "gapfill: no masked store to gap-fill for this AOI (no acquisition date survived the search "
            "and masking). Widen dates.start/dates.end or raise stac.max_cloud_cover, or drop the AOI."
        )
    bands = list(bands)
    if not bands:
        raise UserError("gapfill: no band to gap-fill: list at least one band under 'bands' in config.yaml.")
    metas = []
    for p in paths:
        attrs = read_attrs(p)
        if "datetime" not in attrs or "grid" not in attrs:
            raise UserError(
                f"gapfill: {p} is not a masked store (no 'datetime'/'grid' attribute): rerun the mask rule."
            )
        metas.append((parse_datetime(attrs["datetime"]), str(p), attrs))
    metas.sort(key=lambda m: (m[0], m[1]))
    times = np.array([m[0] for m in metas], dtype=np.int64)
    dates = [m[2].get("date") or str(m[2]["datetime"])[:10] for m in metas]
    if len(set(dates)) != len(dates) or (len(times) > 1 and not np.all(np.diff(times) > 0)):
        dupes = sorted({d for d in dates if dates.count(d) > 1}) or [
            metas[i][2]["datetime"] for i in np.nonzero(np.diff(times) <= 0)[0]
        ]
        raise UserError(
            f"gapfill: several masked stores share the date/time {', '.join(map(str, dupes))}: "
            "each solar day must be one store (same-day items are merged by the tile rule)."
        )
    grid = metas[0][2]["grid"]
    for _, p, attrs in metas:
        if not _same_grid(attrs["grid"], grid):
            raise UserError(f"gapfill: {p} is not on the AOI grid of {metas[0][1]}: rerun the AOI's per-date rules.")
    groups = [open_store(p) for _, p, _ in metas]
    for (_, p, _), g in zip(metas, groups):
        absent = [b for b in bands if b not in g]
        if absent:
            raise UserError(f"gapfill: band(s) {', '.join(absent)} missing from {p}: rerun the per-date rules.")

    height, width = int(grid["height"]), int(grid["width"])
    attrs = {
        "stage": "gapfill",
        "aoi": metas[0][2].get("aoi"),
        "dates": dates,
        "datetimes": [m[2]["datetime"] for m in metas],
        "items": [[it.get("id") for it in m[2].get("items", [])] for m in metas],
        "processing_baselines": [[it.get("processing_baseline") for it in m[2].get("items", [])] for m in metas],
        "valid_fraction": [m[2].get("valid_fraction") for m in metas],
        "offset": [m[2].get("offset") for m in metas],
        "grid": grid,
        "bands": bands,
        "gapfill": {
            "method": "linear",
            "time_weighting": "acquisition times",
            "fill_ends": bool(fill_ends),
            "max_gap_days": None if max_gap_days is None else float(max_gap_days),
        },
        "flag_values": FLAG_VALUES,
        "flag_meanings": FLAG_MEANINGS,
        "skipped_dates": list(skipped or []),
    }
    specs = {b: "int16" for b in bands}
    specs["flag"] = {
        "dtype": "uint8",
        "masked": False,
        "attrs": {"flag_values": FLAG_VALUES, "flag_meanings": FLAG_MEANINGS},
    }
    windows = list(_windows(height, width))
    t = times.astype(np.float64)
    counts = np.zeros(4, dtype=np.int64)
    log.info(
        "gap-filling %d dates x %d x %d pixels, bands %s, in %d spatial windows of up to %d x %d",
        len(times),
        height,
        width,
        ",".join(bands),
        len(windows),
        CHUNK,
        CHUNK,
    )

    arrays = {b: [g[b] for g in groups] for b in bands}  # opened once: each open reads metadata

    def fill_window(window):
        ys, xs = window
        filled, flags = {}, []
        for b in bands:
            cube = np.stack([a[ys, xs] for a in arrays[b]])
            filled[b], flag = gapfill_series(cube, t, fill_ends=fill_ends, max_gap_days=max_gap_days)
            flags.append(flag)
        return filled, combine_flags(flags)

    with create_store(out_path, specs, attrs, grid, time=times) as out:
        for k, ((ys, xs), (filled, flag)) in enumerate(zip(windows, _map(fill_window, windows, threads)), 1):
            for b in bands:
                out[b][:, ys, xs] = filled[b]
            out["flag"][:, ys, xs] = flag
            counts += np.bincount(flag.ravel(), minlength=4)[:4]
            log.info(
                "window %d/%d done (rows %d-%d, columns %d-%d)",
                k,
                len(windows),
                ys.start,
                ys.stop - 1,
                xs.start,
                xs.stop - 1,
            )
    log.info(
        "wrote %s: %d observed, %d interpolated, %d end-filled, %d still missing pixel-dates",
        out_path,
        counts[OBSERVED],
        counts[INTERPOLATED],
        counts[END_FILLED],
        counts[MISSING],
    )
    return attrs


def _map(fn, items: list, threads: int):
    """``map(fn, items)`` in order; with threads > 1 on a thread pool (numpy
    releases the GIL in the heavy parts), at most ``2 * threads`` results held."""
    if threads <= 1:
        yield from map(fn, items)
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(threads) as pool:
        step = 2 * threads
        for i in range(0, len(items), step):
            yield from pool.map(fn, items[i : i + step])


def gapfill_from_snakemake(smk) -> None:
    """Inputs are the AOI's batch folders of per-date masked stores."""
    import json

    folders = [Path(p) for p in smk.input.masked]
    stores = sorted(s for p in folders for s in ([p] if p.suffix == ".zarr" else p.glob("*.zarr")))
    skipped = [
        d for p in folders if (p / "skipped.json").exists() for d in json.loads((p / "skipped.json").read_text())
    ]
    gapfill(
        stores,
        smk.output.cube,
        list(smk.params.bands),
        fill_ends=bool(smk.params.fill_ends),
        max_gap_days=smk.params.max_gap_days,
        skipped=skipped,
        threads=smk.threads,
    )
