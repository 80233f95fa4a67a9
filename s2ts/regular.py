"""Regular stage (config ``regular``): the observations on regular time steps, as a CF-1.8 NetCDF.

Output: ``<results>/<aoi>/<aoi>_<start>_<end>_<N>d.nc`` beside the gap-filled
NetCDF, with the same bands (int16 DN x 0.0001) and spectral indices (float32,
from this file's reflectance), on the steps ``dates.start + k * N days`` at
00:00 UTC for every ``k`` whose step is before ``dates.end``
(:func:`step_times`). It is made from the AOI's masked stores, the **observed**
values, never from the gap-filled cube:

``linear``
    each band's observed values interpolated linearly in time at the step, the
    observation times weighted as acquired (s2ts.gapfill's kernel on the series
    with the steps inserted as missing values): before the first and after the
    last observation the nearest one is held with ``gapfill.fill_ends``, and
    ``gapfill.max_gap_days`` leaves missing a step inside a longer gap (or
    farther than that from the series' end), exactly as in gap-fill. An
    observation at the very time of a step is taken as it is.
``median``
    the median of each band's values observed in ``[step, step + N days)``
    (an even count: the mean of the two middle values), rounded to the nearest
    DN (halves to even, ``numpy.rint``); missing when the window has no
    observation. ``time_bnds`` gives each step's window (CF cell bounds,
    ``cell_methods: "time: median"``).

``flag`` per pixel and step, the same for every band (the least trustworthy
band's state when the bands' masks differ): 0 ``missing`` (no value), 1
``observed`` (an observation at the step's time), 2 ``interpolated`` (between
the previous and next observations), 3 ``end_filled`` (held from the first or
last observation), 4 ``median`` (median of the window's observations). Linear
steps take 0-3, median steps 0 or 4.

Memory: the masked stores are read lazily (dask) and processed in spatial
chunks of :data:`CHUNK` x :data:`CHUNK` pixels holding every date
(``xarray.apply_ufunc(..., dask="parallelized")``, like the gapfill stage), and
written chunk by chunk: a cube larger than memory works.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path

import numpy as np

from s2ts.errors import UserError
from s2ts.gapfill import END_FILLED, INTERPOLATED, MISSING, OBSERVED, combine_flags, gapfill_series

log = logging.getLogger("regular")

FILL_INT16 = -32768
DAY = 86400
MEDIAN = 4
METHODS = ("linear", "median")
FLAGS = {
    "linear": ([MISSING, OBSERVED, INTERPOLATED, END_FILLED], "missing observed interpolated end_filled"),
    "median": ([MISSING, MEDIAN], "missing median"),
}
#: spatial chunk edge: all dates of CHUNK x CHUNK pixels of every band in memory at a time
CHUNK = 256


def step_times(start: str, end: str, step_days: int) -> np.ndarray:
    """``start + k * step_days`` days at 00:00 UTC for every k with the step before
    ``end`` (both ``YYYY-MM-DD``), as datetime64[s]."""
    if int(step_days) < 1:
        raise UserError(f"regular.step_days = {step_days}: the step must be a whole number of days >= 1.")
    t0 = np.datetime64(dt.date.fromisoformat(str(start)), "s")
    t1 = np.datetime64(dt.date.fromisoformat(str(end)), "s")
    n = int(-(-(t1 - t0) // np.timedelta64(int(step_days) * DAY, "s")))
    return t0 + np.arange(max(n, 0)) * np.timedelta64(int(step_days) * DAY, "s")


def linear_steps(values, times, steps, fill_ends: bool = True, max_gap_days: float | None = None):
    """Observed int16 series ``(T, ...)`` (missing -32768) at acquisition ``times``
    (seconds, increasing) -> ``(values (S, ...), flags (S, ...))`` at ``steps``
    (seconds): linear in time between the previous and next observations, ends and
    gaps by the rules of s2ts.gapfill (the steps are inserted into the series as
    missing values and gap-filled with it)."""
    values = np.asarray(values)
    t = np.asarray(times, dtype=np.float64)
    s = np.asarray(steps, dtype=np.float64)
    pos = np.searchsorted(t, s)
    exact = (pos < len(t)) & (t[np.minimum(pos, len(t) - 1)] == s) if len(t) else np.zeros(len(s), bool)
    new = s[~exact]
    merged = np.concatenate([t, new])
    order = np.argsort(merged, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    aug = np.full((len(merged), *values.shape[1:]), FILL_INT16, dtype=np.int16)
    aug[rank[: len(t)]] = values
    filled, flag = gapfill_series(aug, merged[order], fill_ends, max_gap_days, "linear")
    rows = np.empty(len(s), dtype=np.int64)
    rows[exact] = rank[pos[exact]]
    rows[~exact] = rank[len(t) + np.arange(len(new))]
    return filled[rows], flag[rows]


def median_steps(values, times, steps, step_days: int):
    """Observed int16 series ``(T, ...)`` -> ``(values (S, ...), flags (S, ...))``:
    per step the median of the values observed in ``[step, step + step_days)``
    (seconds), rounded to the nearest DN (halves to even); missing (flag 0) when
    there is none, else flag 4."""
    values = np.asarray(values)
    t = np.asarray(times, dtype=np.float64)
    s = np.asarray(steps, dtype=np.float64)
    lo = np.searchsorted(t, s, side="left")
    hi = np.searchsorted(t, s + int(step_days) * DAY, side="left")
    out = np.full((len(s), *values.shape[1:]), FILL_INT16, dtype=np.int16)
    flag = np.zeros((len(s), *values.shape[1:]), dtype=np.uint8)
    for k, (a, b) in enumerate(zip(lo, hi)):
        if b <= a:
            continue
        win = np.sort(values[a:b], axis=0)  # missing (-32768) sorts first
        n = b - a
        count = (win != FILL_INT16).sum(axis=0)
        has = count > 0
        first = n - count  # index of the first observed value
        low = np.take_along_axis(win, (first + (count - 1) // 2)[None].clip(0, n - 1), axis=0)[0]
        high = np.take_along_axis(win, (first + count // 2)[None].clip(0, n - 1), axis=0)[0]
        med = np.rint((low.astype(np.float64) + high.astype(np.float64)) / 2)
        out[k] = np.where(has, med, FILL_INT16).astype(np.int16)
        flag[k] = np.where(has, MEDIAN, MISSING)
    return out, flag


def regular_kernel(block, times, steps, method, step_days, fill_ends=True, max_gap_days=None):
    """The per-chunk kernel in xarray.apply_ufunc's layout: ``block`` int16
    ``(..., band, time)`` -> ``(values (..., band, step), flag (..., step))``, the
    flag combined over the bands (missing wins, then the least trustworthy)."""
    values, flags = [], []
    for k in range(block.shape[-2]):  # one band at a time: a third of the temporaries
        series = np.ascontiguousarray(np.moveaxis(block[..., k, :], -1, 0))  # (time, ...)
        if method == "median":
            v, f = median_steps(series, times, steps, step_days)
        else:
            v, f = linear_steps(series, times, steps, fill_ends, max_gap_days)
        values.append(np.moveaxis(v, 0, -1))
        flags.append(f)
    if method == "median":
        flag = np.where(np.any([f == MISSING for f in flags], axis=0), MISSING, MEDIAN).astype(np.uint8)
    else:
        flag = combine_flags(flags)
    return np.stack(values, axis=-2), np.moveaxis(flag, 0, -1)


def regular_dataset(
    masked_paths,
    bands,
    start: str,
    end: str,
    step_days: int,
    method: str = "linear",
    fill_ends: bool = True,
    max_gap_days: float | None = None,
):
    """The lazy regular product of an AOI: ``(Dataset with the bands (time, y, x)
    int16 and flag uint8 on the steps, the masked stores' attrs, skipped dates)``;
    dask chunks of every date by :data:`CHUNK` x :data:`CHUNK` pixels."""
    import xarray as xr

    from s2ts.gapfill import read_masked
    from s2ts.zarr_io import to_seconds

    if method not in METHODS:
        raise UserError(f"regular.method: {method!r} is not a method: use one of {', '.join(METHODS)}.")
    bands = list(bands)
    ds, skipped = read_masked([Path(p) for p in masked_paths], rows=CHUNK, cols=CHUNK)
    absent = [b for b in bands if b not in ds]
    if absent:
        raise UserError(f"regular: band(s) {', '.join(absent)} missing from the masked stores: rerun the mask rule.")
    steps = step_times(start, end, step_days)
    times = to_seconds(ds["time"].values).astype(np.float64)
    step_s = to_seconds(steps).astype(np.float64)
    cube = ds[bands].to_dataarray("band").chunk({"band": -1, "time": -1})  # spatial chunks as read
    values, flag = xr.apply_ufunc(
        regular_kernel,
        cube,
        kwargs={
            "times": times,
            "steps": step_s,
            "method": method,
            "step_days": int(step_days),
            "fill_ends": bool(fill_ends),
            "max_gap_days": max_gap_days,
        },
        input_core_dims=[["band", "time"]],
        output_core_dims=[["band", "step"], ["step"]],
        dask="parallelized",
        output_dtypes=[np.int16, np.uint8],
        dask_gufunc_kwargs={"output_sizes": {"step": len(steps)}},
    )
    out = values.to_dataset("band").rename(step="time").transpose("time", "y", "x")
    out["flag"] = flag.rename(step="time").transpose("time", "y", "x")
    out = out.assign_coords(time=steps.astype("datetime64[ns]"))
    window_dates = None
    if method == "median":
        days = [str(d) for d in ds["solar_day"].values]
        ends = step_s + int(step_days) * DAY
        window_dates = [",".join(d for d, ti in zip(days, times) if a <= ti < b) for a, b in zip(step_s, ends)]
    return out, dict(ds.attrs), skipped, window_dates


def regular(
    masked_paths,
    manifest_json,
    config: dict,
    out_nc,
    threads: int = 1,
) -> None:
    """Write the AOI's regular product ``out_nc`` (CF-1.8 NetCDF) from its masked
    stores, with ``config["regular"]``, ``bands``, ``indices`` and the gap-fill's
    ``fill_ends``/``max_gap_days`` (linear)."""
    from s2ts.indices import missing_bands
    from s2ts.netcdf import (
        REFERENCES,
        ZLIB,
        _plain,
        add_band,
        add_indices,
        cf_frame,
        chunks3,
        finish,
        provenance,
        software_versions,
        strip_url_queries,
        write_netcdf,
    )
    from s2ts.zarr_io import TIME_ENCODING

    config = strip_url_queries(_plain(config))
    reg = config.get("regular") or {}
    if not reg:
        raise UserError("regular: the configuration has no 'regular' settings: set regular: {step_days: N}.")
    step_days, method = int(reg["step_days"]), reg.get("method", "linear")
    gap = config.get("gapfill", {})
    fill_ends, max_gap_days = bool(gap.get("fill_ends", True)), gap.get("max_gap_days")
    bands, indices = list(config["bands"]), list(config.get("indices") or [])
    lacking = missing_bands(indices, bands)
    if lacking:
        raise UserError(f"regular: indices {', '.join(lacking)} need bands that are not in bands ({', '.join(bands)}).")
    start, end = config["dates"]["start"], config["dates"]["end"]
    manifest = strip_url_queries(json.loads(Path(manifest_json).read_text()))
    cube, attrs, skipped, window_dates = regular_dataset(
        masked_paths, bands, start, end, step_days, method, fill_ends, max_gap_days
    )
    grid = attrs["grid"]
    n_s = cube.sizes["time"]
    aoi_id = str(manifest.get("aoi") or attrs.get("aoi") or Path(out_nc).stem)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")

    out, encoding = cf_frame(cube["time"], cube["x"], cube["y"], grid)
    chunk3 = chunks3(n_s, grid)
    how = (
        "the observed values interpolated linearly in time at the step (ends: "
        + ("the nearest observation held" if fill_ends else "missing")
        + (f"; gaps over {max_gap_days} days missing" if max_gap_days is not None else "")
        + ")"
        if method == "linear"
        else f"the median of the values observed in [step, step + {step_days} days), rounded to the nearest DN"
    )
    for b in bands:
        add_band(
            out,
            encoding,
            b,
            cube[b],
            "Sentinel-2 L2A bottom-of-atmosphere reflectance, stored as DN = reflectance * 10000 with the "
            f"processing-baseline offset removed, on regular {step_days}-day steps: {how} (see flag).",
            chunk3,
        )
        if method == "median":
            out[b].attrs["cell_methods"] = "time: median"
    values, meanings = FLAGS[method]
    out["flag"] = cube["flag"].astype(np.int8)
    out["flag"].attrs = {
        "_Unsigned": "true",
        "standard_name": "status_flag",
        "long_name": "origin of each pixel's value at each step (same for every band)",
        "flag_values": np.array(values, dtype=np.int8),
        "flag_meanings": meanings,
        "comment": (
            "missing: no value; observed: an observation at the step's time; interpolated: linear in time between "
            "the previous and next observations; end_filled: before the first or after the last observation, "
            "the nearest observation held"
            if method == "linear"
            else f"missing: no observation in [step, step + {step_days} days); median: median of the window's "
            "observations"
        ),
    }
    encoding["flag"] = {"dtype": "int8", "_FillValue": None, "chunksizes": chunk3, **ZLIB}
    add_indices(out, encoding, bands, indices, chunk3)
    if method == "median":
        bounds = np.stack([cube["time"].values, cube["time"].values + np.timedelta64(step_days, "D")], axis=1)
        out["time_bnds"] = (("time", "nv"), bounds)
        encoding["time_bnds"] = {**TIME_ENCODING, "dtype": "float64", "_FillValue": None}
        out["dates_in_step"] = ("time", np.array(window_dates, dtype=object), {
            "long_name": "solar days of the acquisitions in [step, step + step_days) (comma-separated)"
        })  # fmt: skip
        encoding["dates_in_step"] = {"dtype": str}
    finish(out, [*bands, "flag", *indices])
    if method == "median":
        out["time"].attrs["bounds"] = "time_bnds"
    out["time"].attrs["long_name"] = f"regular time step: dates.start + k * {step_days} days, 00:00 UTC" + (
        f" (start of the {step_days}-day window)" if method == "median" else ""
    )
    prov = provenance(config, manifest)
    first = str(np.datetime_as_string(cube["time"].values[0], "s")) + "Z" if n_s else ""
    last = str(np.datetime_as_string(cube["time"].values[-1], "s")) + "Z" if n_s else ""
    out.attrs = {
        "Conventions": "CF-1.8",
        "title": f"Sentinel-2 L2A surface reflectance of AOI {aoi_id} on regular {step_days}-day steps",
        "summary": (
            f"Sentinel-2 L2A surface reflectance ({', '.join(bands)}) over AOI {aoi_id} on {n_s} regular steps of "
            f"{step_days} days from {start} (00:00 UTC) before {end}, on a {grid['width']} x {grid['height']} "
            f"grid of {float(grid['resolution']):g} m in {grid.get('crs')}: per pixel and band {how}, from the "
            "observations left by the SCL mask (not from the gap-filled series). The flag variable says how "
            "each value was made."
            + (
                f" Spectral indices from this file's reflectance: {', '.join(indices)} (formula and reference in "
                "each variable's attributes)."
                if indices
                else ""
            )
        ),
        "history": f"{now} s2ts {software_versions()['s2ts']} rule regular: written from the masked stores of "
        f"AOI {aoi_id} and {Path(manifest_json).name}",
        **{k: prov[k] for k in ("source", "institution")},
        "references": REFERENCES,
        "comment": "Reflectance = DN * scale_factor; see flag for how each value was made.",
        **{k: prov[k] for k in ("stac_catalog", "stac_collection", "stac_search", "stac_counts", "configuration")},
        "regular": json.dumps(
            {
                "step_days": step_days,
                "method": method,
                **({"fill_ends": fill_ends, "max_gap_days": max_gap_days} if method == "linear" else {}),
            },
            sort_keys=True,
        ),
        "software_versions": json.dumps(software_versions(), sort_keys=True),
        "aoi_id": aoi_id,
        "date_created": now,
        "time_coverage_start": first,
        "time_coverage_end": last,
        "platform": "Sentinel-2",
        "instrument": "MSI",
        "skipped_dates": json.dumps(skipped, sort_keys=True),
    }
    log.info(
        "regular %s steps of %d days (%s .. %s), method %s, %d x %d pixels, in chunks of %d x %d on %d thread(s)",
        n_s,
        step_days,
        first,
        last,
        method,
        grid["width"],
        grid["height"],
        CHUNK,
        CHUNK,
        threads,
    )
    write_netcdf(out, encoding, out_nc, threads)
    log.info("wrote %s: bands %s%s", out_nc, ",".join(bands), f", indices {','.join(indices)}" if indices else "")


def regular_from_snakemake(smk) -> None:
    from s2ts.netcdf import _plain

    regular(
        [p.removesuffix("/zarr.json") for p in smk.input.masked],
        smk.input.manifest_info,
        _plain(smk.params.config),
        smk.output.nc,
        threads=smk.threads,
    )
