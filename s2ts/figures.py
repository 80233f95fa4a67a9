"""Figures stage: what an AOI's run produced, as PNG/GIF/CSV files (matplotlib Agg, Pillow).

Per AOI, from the workflow's own products (never recomputed from the catalog):

``false_colour.png``
    B08/B04/B03 (NIR/red/green as R/G/B) composites of ``figures.n_dates`` dates
    evenly spaced over the series: the raw tiles (``tile/<batch>/<date>.zarr``, uint16 DN
    as delivered, baseline offset included, no-data 0) in the top row, the final
    gap-filled NetCDF in the bottom row. Robust stretch (the tutorial's
    ``robust=True``): per band, the 2nd and 98th percentiles of the shown
    gap-filled pixels map to 0 and 1, and the same stretch is applied to both
    rows, so what differs between the rows is real: clouds (white), no data
    (grey), and the +1000 DN of raw dates at processing baseline >= 04.00 (from
    2022-01-25), which look brighter. The polygon is outlined.
``false_colour.gif``
    The same composites (raw | gap-filled) for at most ``figures.gif_max_frames``
    dates evenly spaced over the series, one frame per date, one shared palette.
``pixel_series.png``
    B08 at ``figures.points`` (or 3 default points, :func:`default_points`): raw
    DN (tile), offset-corrected DN (offset_fix), what masking kept (mask) and the
    gap-filled series (NetCDF), with masked-out, interpolated and end-filled dates
    marked and the 2022-01-25 processing-baseline change as a vertical line.
``sandbank_area.csv`` / ``sandbank_area.png``
    Emerged sand inside the polygon per date (:func:`sand_mask`): sand = NDWI <
    ``figures.ndwi_threshold`` (not water) and NDVI < ``figures.ndvi_max`` (not
    vegetation; excludes the pine forest and most built-up land). Counted on the
    pixels of ``aoi/inside.npy`` (pixel centre in the polygon), area = pixels x
    resolution^2 in the grid CRS. Two series: on observed pixels only (flag 1;
    with the observed fraction) and on the whole gap-filled cube (flags 1-3).
    Note that this is *all* sand in the polygon: the Banc d'Arguin, the Dune du
    Pilat and the beaches (see docs/figures.md for the comparison with the demo's
    ground truth).
``data_quality.png``
    Per date: the polygon's valid fraction (NetCDF ``valid_fraction``) and the
    ``eo:cloud_cover`` of the date's items (manifest.csv), as bar plots.
``index_series.png`` (with ``indices``)
    Each spectral index of the NetCDF (NDWI, NDVI, ...) at the same points as
    ``pixel_series.png``: the gap-filled series as a line, observed dates as
    dots, filled dates as open circles; with ``regular``, the regular product's
    index at its steps as squares.
``regular_series.png`` (with ``regular``)
    The regular product (``<aoi>_<start>_<end>_<N>d.nc``) at the same points: B08
    reflectance at the steps (squares coloured by their flag: interpolated,
    end-filled, median; missing steps as grey ticks; a median is drawn at the
    middle of its window, with a bar over the window) over the observations kept
    by the mask (dots) and the gap-filled series (line).

The gap-filled cube is read once, in spatial windows with all dates (the
NetCDF's chunk layout); large grids are subsampled for the images (never for
the areas). Progress goes to the rule log.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import logging
import math
from pathlib import Path

import numpy as np

from s2ts.errors import UserError

log = logging.getLogger("figures")

FILL_INT16 = -32768
FALSE_COLOUR = ("B08", "B04", "B03")  # R, G, B
NEEDED_BANDS = ("B03", "B04", "B08")
BASELINE_CHANGE = np.datetime64("2022-01-25T00:00:00")
NODATA_GREY = 0.5
WINDOW = 256
#: largest image side (pixels) drawn per panel / GIF frame; larger grids are subsampled
MAX_PANEL_SIDE = 400
OBSERVED, INTERPOLATED, END_FILLED, MISSING = 1, 2, 3, 0
DPI = 110


# ---------------------------------------------------------------------------- helpers
def even_selection(n_total: int, n: int) -> list[int]:
    """``n`` indices evenly spaced over ``range(n_total)``, first and last included."""
    if n_total <= 0 or n <= 0:
        return []
    if n >= n_total:
        return list(range(n_total))
    return sorted({int(round(v)) for v in np.linspace(0, n_total - 1, n)})


def stretch_params(stack: np.ndarray, lo: float = 2.0, hi: float = 98.0) -> np.ndarray:
    """Per band (axis 1 of ``(N, 3, H, W)``) the ``lo`` and ``hi`` percentiles of
    the finite values: array ``(3, 2)``; (0, 1) for a band without any value."""
    out = np.zeros((stack.shape[1], 2), dtype=np.float64)
    for k in range(stack.shape[1]):
        v = stack[:, k][np.isfinite(stack[:, k])]
        if v.size:
            a, b = np.percentile(v, [lo, hi])
            out[k] = (a, b if b > a else a + 1.0)
        else:
            out[k] = (0.0, 1.0)
    return out


def apply_stretch(rgb: np.ndarray, params: np.ndarray) -> np.ndarray:
    """``(3, H, W)`` values -> ``(H, W, 3)`` floats in [0, 1]; no data (any band
    not finite) -> dark grey."""
    lo = params[:, 0][:, None, None]
    hi = params[:, 1][:, None, None]
    out = np.clip((rgb - lo) / (hi - lo), 0.0, 1.0)
    bad = ~np.all(np.isfinite(rgb), axis=0)
    out = np.moveaxis(out, 0, -1)
    out[bad] = NODATA_GREY
    return out


def sand_mask(b03, b04, b08, ndwi_threshold: float = 0.0, ndvi_max: float = 0.2) -> np.ndarray:
    """Emerged sand: NDWI = (B03 - B08)/(B03 + B08) < ``ndwi_threshold`` and
    NDVI = (B08 - B04)/(B08 + B04) < ``ndvi_max``. Inputs in reflectance or DN
    (same scale for all three, offset removed); NaN anywhere -> False."""
    b03, b04, b08 = (np.asarray(b, dtype=np.float32) for b in (b03, b04, b08))
    with np.errstate(divide="ignore", invalid="ignore"):
        s1 = b03 + b08
        s2 = b08 + b04
        ndwi = np.where(s1 > 0, (b03 - b08) / s1, np.nan)
        ndvi = np.where(s2 > 0, (b08 - b04) / s2, np.nan)
        return (ndwi < ndwi_threshold) & (ndvi < ndvi_max)


def default_points(inside: np.ndarray) -> list[tuple[int, int]]:
    """Three (row, col) pixels inside the polygon, deterministic: the inside pixel
    nearest to the centroid of the inside pixels, and the inside pixels nearest to
    the points halfway between that centroid and the northernmost / southernmost
    inside rows (same column). Ties go to the first pixel in raster order."""
    rows, cols = np.nonzero(np.asarray(inside, dtype=bool))
    if not rows.size:
        return []
    cy, cx = rows.mean(), cols.mean()
    targets = [(cy, cx), ((rows.min() + cy) / 2.0, cx), ((rows.max() + cy) / 2.0, cx)]
    out: list[tuple[int, int]] = []
    for ty, tx in targets:
        k = int(np.argmin((rows - ty) ** 2 + (cols - tx) ** 2))
        p = (int(rows[k]), int(cols[k]))
        if p not in out:
            out.append(p)
    return out


def lonlat_to_pixels(points, grid: dict) -> list[tuple[int, int]]:
    """[lon, lat] points -> (row, col) of the grid pixels containing them."""
    import pyproj

    crs = pyproj.CRS.from_wkt(grid["crs_wkt"]) if grid.get("crs_wkt") else pyproj.CRS.from_user_input(grid["crs"])
    to_grid = pyproj.Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    x0, _, _, y1 = grid["bounds"]
    r = float(grid["resolution"])
    out = []
    for p in points:
        lon, lat = float(p[0]), float(p[1])
        x, y = to_grid.transform(lon, lat)
        col, row = math.floor((x - x0) / r), math.floor((y1 - y) / r)
        if not (0 <= row < int(grid["height"]) and 0 <= col < int(grid["width"])):
            raise UserError(
                f"figures.points: [{lon}, {lat}] (lon, lat) is outside this AOI's grid "
                f"(bounds {grid['bounds']} in {grid['crs']}): give points inside the polygon, or leave "
                "figures.points empty for the default points."
            )
        out.append((row, col))
    return out


def pixel_lonlat(grid: dict, row: int, col: int) -> tuple[float, float]:
    import pyproj

    from s2ts.zarr_io import grid_coords

    crs = pyproj.CRS.from_wkt(grid["crs_wkt"]) if grid.get("crs_wkt") else pyproj.CRS.from_user_input(grid["crs"])
    x, y = grid_coords(grid)
    lon, lat = pyproj.Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform(x[col], y[row])
    return float(lon), float(lat)


def polygon_outline(geometry_4326: dict | None, grid: dict) -> list[np.ndarray]:
    """Rings of the AOI polygon as (col, row) arrays in image coordinates (pixel
    centres at integers), for plotting over ``imshow``."""
    if not geometry_4326:
        return []
    import pyproj

    crs = pyproj.CRS.from_wkt(grid["crs_wkt"]) if grid.get("crs_wkt") else pyproj.CRS.from_user_input(grid["crs"])
    to_grid = pyproj.Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    x0, _, _, y1 = grid["bounds"]
    r = float(grid["resolution"])
    coords = geometry_4326["coordinates"]
    polys = coords if geometry_4326["type"] == "MultiPolygon" else [coords]
    rings = []
    for poly in polys:
        for ring in poly:
            a = np.asarray(ring, dtype=np.float64)
            x, y = to_grid.transform(a[:, 0], a[:, 1])
            rings.append(np.column_stack([(np.asarray(x) - x0) / r - 0.5, (y1 - np.asarray(y)) / r - 0.5]))
    return rings


def _as_datetime64(seconds) -> np.ndarray:
    return np.asarray(seconds, dtype=np.int64).astype("datetime64[s]")


# ---------------------------------------------------------------------------- inputs
def index_names(nc) -> list[str]:
    """The spectral index variables of a workflow NetCDF (s2ts.indices), in file order."""
    from s2ts.indices import INDICES

    return [n for n, v in nc.variables.items() if n in INDICES and v.dimensions == ("time", "y", "x")]


def read_point_series(path, names, pixels: list[tuple[int, int]]) -> dict:
    """``{name: (time, point) floats}`` of a NetCDF's variables at ``(row, col)``
    pixels (int16 DN with NaN for -32768; floats as stored; flag as uint8), and
    ``"time"`` in seconds."""
    import netCDF4

    with netCDF4.Dataset(path) as nc:
        nc.set_auto_maskandscale(False)
        v = nc.variables
        out = {"time": np.asarray(v["time"][:], dtype=np.float64).astype(np.int64)}
        for name in names:
            cols = [np.asarray(v[name][:, r, c]) for r, c in pixels]
            a = np.stack(cols, axis=1) if cols else np.zeros((len(out["time"]), 0))
            if name == "flag":
                out[name] = a.view(np.uint8)
            elif a.dtype.kind in "iu":
                f = a.astype(np.float64)
                f[a == FILL_INT16] = np.nan
                out[name] = f
            else:
                out[name] = a.astype(np.float64)
    return out


class Cube:
    """The AOI's NetCDF (gap-filled, DN int16) read with netCDF4, no auto scaling."""

    def __init__(self, path):
        import netCDF4

        self.path = Path(path)
        self.nc = netCDF4.Dataset(self.path)
        self.nc.set_auto_maskandscale(False)
        v = self.nc.variables
        absent = [b for b in (*NEEDED_BANDS, "flag", "time") if b not in v]
        if absent:
            self.nc.close()
            raise UserError(
                f"figures: {self.path} has no {', '.join(absent)}: the figures need B03, B04 and B08 in "
                "'bands' (config.yaml); add them, or set figures.enabled: false."
            )
        self.times = np.asarray(v["time"][:], dtype=np.float64).astype(np.int64)
        self.height, self.width = v["B08"].shape[1:]
        vf = np.asarray(v["valid_fraction"][:], dtype=np.float64) if "valid_fraction" in v else None
        self.valid_fraction = None if vf is None else np.where(vf < 0, np.nan, vf)
        self.source_items = [str(s) for s in v["source_items"][:]] if "source_items" in v else [""] * len(self.times)
        self.indices = index_names(self.nc)

    def band_window(self, name, ys, xs) -> np.ndarray:
        return np.asarray(self.nc.variables[name][:, ys, xs])

    def flag_window(self, ys, xs) -> np.ndarray:
        return np.asarray(self.nc.variables["flag"][:, ys, xs]).view(np.uint8)

    def close(self):
        self.nc.close()


def store_paths(paths) -> list[Path]:
    """Stores from store paths (``<date>.zarr``, ``<batch>.zarr``, or a store's
    ``zarr.json``) and/or tile batches (a batch's index ``tile/<batch>.json``, or a
    folder of per-date stores: s2ts.batches.batch_stores)."""
    from s2ts.batches import batch_stores

    out = []
    for p in map(Path, paths):
        p = p.parent if p.name == "zarr.json" else p
        out.extend([p] if p.suffix == ".zarr" else batch_stores(p)[0])
    return out


def _store_dates(paths) -> dict[int, tuple[str, str, int | None]]:
    """acquisition time (s) -> (solar date, store path, index in the store's time axis;
    None for a per-date store) of the stores of one stage."""
    from s2ts.zarr_io import open_dataset, read_attrs, to_seconds

    out = {}
    for p in store_paths(paths):
        attrs = read_attrs(p)
        if attrs.get("stage") == "tile":
            t = to_seconds(np.datetime64(str(attrs["datetime"]).rstrip("Z")))
            out[int(t)] = (str(attrs.get("date") or p.stem), str(p), None)
            continue
        ds = open_dataset(p)
        for i, (t, day) in enumerate(zip(to_seconds(ds["time"].values), ds["solar_day"].values)):
            out[int(t)] = (str(day), str(p), i)
    return out


def _aligned(times: np.ndarray, stores: dict, stage: str) -> list[tuple[str, int | None]]:
    missing = [int(t) for t in times if int(t) not in stores]
    if missing:
        when = dt.datetime.fromtimestamp(missing[0], dt.UTC).isoformat()
        raise UserError(
            f"figures: no {stage} store for the NetCDF's date {when} ({len(missing)} dates missing): "
            "the per-date stores and the NetCDF come from different runs; rerun the workflow."
        )
    return [stores[int(t)][1:] for t in times]


def read_manifest_cloud_cover(manifest_csv) -> tuple[dict[str, float], dict[str, list[float]]]:
    """``(cloud cover by item id, cloud covers by date)`` from manifest.csv."""
    by_id: dict[str, float] = {}
    by_date: dict[str, list[float]] = {}
    with open(manifest_csv, newline="") as f:
        for row in csv.DictReader(f):
            try:
                cc = float(row.get("cloud_cover", "nan"))
            except ValueError:
                cc = float("nan")
            by_id[row.get("id", "")] = cc
            by_date.setdefault(row.get("date", ""), []).append(cc)
    return by_id, by_date


# ---------------------------------------------------------------------------- one pass over the cube
def scan_cube(
    cube: Cube,
    inside: np.ndarray,
    keep: list[int],
    stride: int,
    ndwi_threshold: float,
    ndvi_max: float,
) -> dict:
    """One pass over the NetCDF in spatial windows (all dates each).

    Returns per-date pixel counts inside the polygon (``observed``, ``missing``,
    ``sand_observed``, ``sand_filled``) and ``rgb``: the gap-filled B08/B04/B03 DN
    (float, NaN = missing) of the dates ``keep``, subsampled by ``stride``,
    shaped ``(len(keep), 3, h, w)``.
    """
    n_t, height, width = len(cube.times), cube.height, cube.width
    counts = {k: np.zeros(n_t, dtype=np.int64) for k in ("observed", "missing", "sand_observed", "sand_filled")}
    hs, ws = len(range(0, height, stride)), len(range(0, width, stride))
    rgb = np.full((len(keep), 3, hs, ws), np.nan, dtype=np.float32)
    windows = [
        (slice(y0, min(y0 + WINDOW, height)), slice(x0, min(x0 + WINDOW, width)))
        for y0 in range(0, height, WINDOW)
        for x0 in range(0, width, WINDOW)
    ]
    keep_idx = np.asarray(keep, dtype=np.int64)
    for k, (ys, xs) in enumerate(windows, 1):
        ins = inside[ys, xs]
        data = {b: cube.band_window(b, ys, xs) for b in NEEDED_BANDS}
        flag = cube.flag_window(ys, xs)
        f = {b: np.where(d == FILL_INT16, np.nan, d.astype(np.float32)) for b, d in data.items()}
        sand = sand_mask(f["B03"], f["B04"], f["B08"], ndwi_threshold, ndvi_max) & ins
        observed = (flag == OBSERVED) & ins
        counts["observed"] += observed.sum(axis=(1, 2))
        counts["missing"] += ((flag == MISSING) & ins).sum(axis=(1, 2))
        counts["sand_observed"] += (sand & observed).sum(axis=(1, 2))
        counts["sand_filled"] += (sand & (flag != MISSING)).sum(axis=(1, 2))
        if keep_idx.size:
            # subsampled rows/columns of the whole grid that fall in this window
            r0 = -(-ys.start // stride) * stride
            c0 = -(-xs.start // stride) * stride
            rsel = slice(r0 - ys.start, ys.stop - ys.start, stride)
            csel = slice(c0 - xs.start, xs.stop - xs.start, stride)
            ro, co = r0 // stride, c0 // stride
            for j, b in enumerate(FALSE_COLOUR):
                part = f[b][keep_idx][:, rsel, csel]
                rgb[:, j, ro : ro + part.shape[1], co : co + part.shape[2]] = part
        log.info(
            "cube window %d/%d read (rows %d-%d, columns %d-%d)",
            k,
            len(windows),
            ys.start,
            ys.stop - 1,
            xs.start,
            xs.stop - 1,
        )
    return {**counts, "rgb": rgb}


def read_raw_rgb(tile_path, stride: int) -> np.ndarray:
    """B08/B04/B03 DN of a raw tile store ``(3, h, w)``, NaN where 0 (no data)."""
    from s2ts.zarr_io import open_dataset

    ds = open_dataset(tile_path)
    out = []
    for b in FALSE_COLOUR:
        a = ds[b].values[::stride, ::stride].astype(np.float32)
        a[a == 0] = np.nan
        out.append(a)
    return np.stack(out)


def read_pixels(
    entries: list[tuple[str, int | None]], band: str, pixels: list[tuple[int, int]], fill: int
) -> np.ndarray:
    """``band`` at each ``(row, col)`` for each ``(store, time index)`` entry
    (:func:`_aligned`): ``(len(entries), len(pixels))``, NaN at ``fill``. Each store
    is opened once and read at all the points at once."""
    import xarray as xr

    from s2ts.zarr_io import open_dataset

    out = np.full((len(entries), len(pixels)), np.nan)
    rows = xr.DataArray([r for r, _ in pixels], dims="point")
    cols = xr.DataArray([c for _, c in pixels], dims="point")
    by_store: dict[str, list[tuple[int, int | None]]] = {}
    for k, (path, i) in enumerate(entries):
        by_store.setdefault(path, []).append((k, i))
    for path, ks in by_store.items():
        values = open_dataset(path)[band].isel(y=rows, x=cols).values.astype(np.float64)
        for k, i in ks:
            out[k] = values if i is None else values[i]
    out[out == fill] = np.nan
    return out


# ---------------------------------------------------------------------------- plots
def _mpl():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_false_colour(raw, filled, dates, observed_fraction, outline, out_png, aoi: str, stride: int) -> None:
    plt = _mpl()
    n = len(dates)
    h, w = raw.shape[2:]
    pw = 1.75
    ph = pw * h / w
    fig, axes = plt.subplots(2, n, figsize=(pw * n + 0.9, 2 * ph + 1.1), squeeze=False)
    p_raw = p_fill = stretch_params(filled)  # one stretch: row differences are real
    for j in range(n):
        for i, (stack, params) in enumerate(((raw, p_raw), (filled, p_fill))):
            ax = axes[i, j]
            ax.imshow(apply_stretch(stack[j], params), interpolation="nearest")
            for ring in outline:
                ax.plot(ring[:, 0] / stride, ring[:, 1] / stride, color="yellow", lw=0.6)
            ax.set_xlim(-0.5, w - 0.5)
            ax.set_ylim(h - 0.5, -0.5)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(dates[j], fontsize=9)
            else:
                ax.set_title(f"observed {100 * observed_fraction[j]:.0f} %", fontsize=7)
    axes[0, 0].set_ylabel("raw tile (DN)", fontsize=9)
    axes[1, 0].set_ylabel("gap-filled (NetCDF)", fontsize=9)
    fig.suptitle(
        f"AOI {aoi}: false colour R=B08 (NIR) G=B04 (red) B=B03 (green), both rows stretched to the 2-98 % "
        "range of the gap-filled row; grey = no data; yellow = polygon",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    fig.savefig(out_png, dpi=DPI)
    plt.close(fig)


def write_gif(raw, filled, dates, observed_fraction, out_gif, duration_ms: int = 500) -> int:
    """Frames ``raw | gap-filled`` with the date on top, one shared palette; returns bytes written."""
    from PIL import Image, ImageDraw, ImageFont

    p_raw = p_fill = stretch_params(filled)
    h, w = raw.shape[2:]
    scale = max(1, int(300 // max(h, w)))  # small grids: at least ~300 px per panel
    gap, band = 4, 22
    try:
        font = ImageFont.load_default(size=14)
    except TypeError:  # Pillow without FreeType
        font = ImageFont.load_default()
    frames = []
    for j in range(len(dates)):
        a = (apply_stretch(raw[j], p_raw) * 255).astype(np.uint8)
        b = (apply_stretch(filled[j], p_fill) * 255).astype(np.uint8)
        if scale > 1:
            a = a.repeat(scale, 0).repeat(scale, 1)
            b = b.repeat(scale, 0).repeat(scale, 1)
        hh, ww = a.shape[:2]
        canvas = np.full((hh + band, 2 * ww + gap, 3), 255, dtype=np.uint8)
        canvas[band:, :ww] = a
        canvas[band:, ww + gap :] = b
        im = Image.fromarray(canvas)
        d = ImageDraw.Draw(im)
        d.text((4, 3), f"{dates[j]}  raw", fill=(0, 0, 0), font=font)
        d.text(
            (ww + gap + 4, 3), f"gap-filled (observed {100 * observed_fraction[j]:.0f} %)", fill=(0, 0, 0), font=font
        )
        frames.append(im)
    # one palette for all frames (no flicker, smaller file), from a sample of frames
    sample = frames[:: max(1, len(frames) // 8)][:8]
    montage = Image.new("RGB", (frames[0].width, frames[0].height * len(sample)))
    for k, im in enumerate(sample):
        montage.paste(im, (0, k * frames[0].height))
    palette = montage.quantize(colors=255, method=Image.Quantize.MEDIANCUT)
    pframes = [im.quantize(palette=palette, dither=Image.Dither.NONE) for im in frames]
    pframes[0].save(
        out_gif, save_all=True, append_images=pframes[1:], duration=duration_ms, loop=0, optimize=False, disposal=1
    )
    return Path(out_gif).stat().st_size


def plot_pixel_series(series: list[dict], times, out_png, aoi: str) -> None:
    plt = _mpl()
    t = _as_datetime64(times)
    n = len(series)
    fig, axes = plt.subplots(n, 1, figsize=(12, 2.9 * n + 0.8), sharex=True, squeeze=False)
    for ax, s in zip(axes[:, 0], series):
        ax.plot(t, s["raw"], ".-", color="0.6", lw=0.8, ms=4, label="raw DN (tile)")
        ax.plot(t, s["offset_fix"], "o", color="tab:blue", ms=3.5, label="offset-corrected DN (offset_fix)")
        ax.plot(t, s["gapfilled"], "-", color="black", lw=1.1, label="gap-filled (NetCDF, DN)")
        ax.plot(t, s["masked"], "o", mfc="none", mec="tab:green", ms=7, label="kept by the mask (observed)")
        out = np.isfinite(s["offset_fix"]) & ~np.isfinite(s["masked"])
        ax.plot(t[out], s["offset_fix"][out], "x", color="tab:red", ms=7, label="masked out (SCL)")
        for code, marker, colour, label in (
            (INTERPOLATED, "D", "tab:orange", "interpolated date"),
            (END_FILLED, "^", "tab:purple", "end-filled date"),
        ):
            sel = s["flag"] == code
            ax.plot(t[sel], s["gapfilled"][sel], marker, color=colour, ms=5, ls="none", label=label)
        ax.axvline(BASELINE_CHANGE, color="red", ls="--", lw=1.2, label="2022-01-25: PB 04.00, +1000 DN offset")
        ax.set_ylabel("B08 DN")
        where = "" if s["inside"] else ", OUTSIDE the polygon"
        ax.set_title(
            f"pixel row {s['row']}, column {s['col']} (lon {s['lon']:.5f}, lat {s['lat']:.5f}{where})", fontsize=10
        )
        ax.grid(alpha=0.3)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8, frameon=False)
    fig.suptitle(f"AOI {aoi}: B08 (NIR) time series at {n} pixel(s), reflectance = DN x 0.0001", fontsize=11)
    fig.tight_layout(rect=(0, 0.07 if n > 1 else 0.12, 1, 0.97))
    fig.savefig(out_png, dpi=DPI)
    plt.close(fig)


INDEX_COLOURS = {"NDWI": "tab:blue", "NDVI": "tab:green", "MNDWI": "tab:cyan", "NDMI": "tab:brown"}
REGULAR_STYLE = {  # regular product flag -> (colour, label)
    1: ("black", "observed at the step"),
    2: ("tab:orange", "interpolated"),
    3: ("tab:purple", "end-filled"),
    4: ("tab:red", "median of the step's observations"),
}


def _point_title(s: dict) -> str:
    where = "" if s["inside"] else ", OUTSIDE the polygon"
    return f"pixel row {s['row']}, column {s['col']} (lon {s['lon']:.5f}, lat {s['lat']:.5f}{where})"


def plot_index_series(points: list[dict], times, indices: dict, flag, out_png, aoi: str, regular=None) -> None:
    """Each index at each point: ``indices`` ``{name: (time, point)}`` from the NetCDF,
    ``flag`` ``(time, point)``; ``regular``: the regular product's series
    (:func:`read_point_series`) or None."""
    plt = _mpl()
    t = _as_datetime64(times)
    n = len(points)
    fig, axes = plt.subplots(n, 1, figsize=(12, 2.9 * n + 0.8), sharex=True, squeeze=False)
    for k, (ax, s) in enumerate(zip(axes[:, 0], points)):
        obs = flag[:, k] == OBSERVED
        filled = np.isin(flag[:, k], (INTERPOLATED, END_FILLED))
        for name, values in indices.items():
            colour = INDEX_COLOURS.get(name, None)
            v = values[:, k]
            (line,) = ax.plot(t, v, "-", color=colour, lw=1.0, label=f"{name} (gap-filled NetCDF)")
            colour = line.get_color()
            ax.plot(t[obs], v[obs], "o", color=colour, ms=3.5, label=f"{name}, observed date")
            ax.plot(t[filled], v[filled], "o", mfc="none", mec=colour, ms=4.5, label=f"{name}, filled date")
            if regular is not None and name in regular:
                rt = _as_datetime64(regular["plot_time"])
                ax.plot(rt, regular[name][:, k], "s", color=colour, ms=4, alpha=0.6, label=f"{name}, regular steps")
        ax.axhline(0, color="0.5", lw=0.6)
        ax.set_ylabel("index")
        ax.set_title(_point_title(s), fontsize=10)
        ax.grid(alpha=0.3)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), fontsize=8, frameon=False)
    formulas = "; ".join(f"{name} = {_formula(name)}" for name in indices)
    fig.suptitle(f"AOI {aoi}: spectral indices at {n} pixel(s): {formulas}", fontsize=10)
    rows = -(-len(labels) // 4)
    fig.tight_layout(rect=(0, min(0.3, 0.035 * rows + (0.04 if n > 1 else 0.08)), 1, 0.97))
    fig.savefig(out_png, dpi=DPI)
    plt.close(fig)


def _formula(name: str) -> str:
    from s2ts.indices import INDICES

    return INDICES[name].formula


def plot_regular_series(
    points: list[dict], times, masked, gapfilled, regular: dict, settings: dict, out_png, aoi: str
) -> None:
    """B08 at each point: the observations kept by the mask and the gap-filled
    series (DN, ``(time, point)``), and the regular product at its steps, coloured
    by flag."""
    plt = _mpl()
    t = _as_datetime64(times)
    rt = _as_datetime64(regular["plot_time"])
    n = len(points)
    median = settings.get("method") == "median"
    window = np.timedelta64(int(settings.get("step_days", 0)) * 86400, "s")
    fig, axes = plt.subplots(n, 1, figsize=(12, 2.9 * n + 0.8), sharex=True, squeeze=False)
    for k, (ax, s) in enumerate(zip(axes[:, 0], points)):
        ax.plot(t, gapfilled[:, k] / 1e4, "-", color="0.55", lw=1.0, label="gap-filled (NetCDF)")
        ax.plot(t, masked[:, k] / 1e4, "o", color="tab:green", ms=3.5, label="observed (kept by the mask)")
        rv, rf = regular["B08"][:, k] / 1e4, regular["flag"][:, k]
        if median:  # each median covers its window: a bar from the step to the next
            ax.hlines(rv, rt - window / 2, rt + window / 2, color="tab:red", lw=1.2, alpha=0.6)
        else:
            ax.plot(rt, rv, "-", color="black", lw=0.8, alpha=0.5)
        for code, (colour, label) in REGULAR_STYLE.items():
            sel = rf == code
            if sel.any():
                ax.plot(rt[sel], rv[sel], "s", color=colour, ms=4.5, label=f"regular step: {label}")
        gone = rf == MISSING
        if gone.any():
            lo = np.nanmin(masked[:, k] / 1e4) if np.isfinite(masked[:, k]).any() else 0.0
            ax.plot(rt[gone], np.full(gone.sum(), lo), "|", color="0.4", ms=9, label="regular step: missing")
        ax.set_ylabel("B08 reflectance")
        ax.set_title(_point_title(s), fontsize=10)
        ax.grid(alpha=0.3)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8, frameon=False)
    how = settings.get("method", "linear")
    fig.suptitle(
        f"AOI {aoi}: regular product, {settings.get('step_days')}-day steps ({how}), B08 (NIR) at {n} pixel(s)",
        fontsize=11,
    )
    fig.tight_layout(rect=(0, 0.08 if n > 1 else 0.14, 1, 0.97))
    fig.savefig(out_png, dpi=DPI)
    plt.close(fig)


def plot_sandbank(rows: list[dict], out_png, aoi: str, ndwi_threshold: float, ndvi_max: float) -> None:
    plt = _mpl()
    t = np.array([np.datetime64(r["datetime"].replace("Z", "")) for r in rows])
    obs_frac = np.array([r["observed_fraction"] for r in rows])
    filled = np.array([r["sand_area_gapfilled_km2"] for r in rows])
    observed = np.array([r["sand_area_observed_km2"] for r in rows])
    full = obs_frac >= 0.99
    fig, (ax, ax2) = plt.subplots(
        2, 1, figsize=(12, 6.2), sharex=True, gridspec_kw={"height_ratios": [3, 1]}, squeeze=True
    )
    ax.plot(t, filled, "-", color="black", lw=1.2, label="gap-filled cube (all pixels in the polygon)")
    ax.plot(t[full], observed[full], "o", color="tab:orange", ms=5, label="observed pixels only, date >= 99 % observed")
    ax.plot(
        t[~full], observed[~full], "o", mfc="none", mec="tab:orange", ms=5,
        label="observed pixels only, partly observed date (lower bound)",
    )  # fmt: skip
    ax.set_ylabel("emerged sand (km²)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    ax.set_title(
        f"AOI {aoi}: sand inside the polygon, NDWI < {ndwi_threshold:g} and NDVI < {ndvi_max:g} "
        "(bank, dune and beaches; the bank changes with the tide)",
        fontsize=10,
    )
    ax2.bar(t, 100 * obs_frac, width=3.0, color="tab:blue")
    ax2.set_ylabel("observed (%)")
    ax2.set_ylim(0, 100)
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_png, dpi=DPI)
    plt.close(fig)


def plot_data_quality(times, valid_fraction, cloud_covers: list[list[float]], max_cloud, out_png, aoi: str) -> None:
    plt = _mpl()
    t = _as_datetime64(times)
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(12, 6.0), sharex=True, squeeze=True)
    vf = 100 * np.asarray(valid_fraction, dtype=np.float64)
    ax.bar(t, vf, width=3.0, color=np.where(vf >= 50, "tab:green", "tab:red"))
    ax.set_ylabel("valid in polygon (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.set_title(
        f"AOI {aoi}: share of the polygon observed per date (green >= 50 %) and eo:cloud_cover of its items",
        fontsize=10,
    )
    top = np.array([max(c) if c else np.nan for c in cloud_covers])
    ax2.bar(t, top, width=3.0, color="tab:gray", label="eo:cloud_cover, highest item of the date")
    each = [(ti, c) for ti, cs in zip(t, cloud_covers) for c in cs]
    if each:
        ax2.plot([m[0] for m in each], [m[1] for m in each], "k.", ms=3, label="each item (0 % shows as a dot)")
    if max_cloud is not None:
        ax2.axhline(float(max_cloud), color="tab:red", ls="--", lw=1, label=f"search limit ({max_cloud:g} %)")
    ax2.set_ylabel("cloud cover (%)")
    ax2.set_ylim(bottom=0)
    ax2.grid(alpha=0.3)
    ax2.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(out_png, dpi=DPI)
    plt.close(fig)


# ---------------------------------------------------------------------------- the stage
SANDBANK_COLUMNS = [
    "date",
    "datetime",
    "observed_fraction",
    "valid_fraction",
    "missing_fraction",
    "polygon_area_km2",
    "observed_area_km2",
    "sand_area_observed_km2",
    "sand_area_gapfilled_km2",
]


def figures(
    *,
    nc_path,
    tiles,
    offset_fixed,
    masked,
    manifest_csv,
    manifest_json,
    inside_npy,
    grid_json,
    out: dict,
    points=(),
    n_dates: int = 10,
    ndwi_threshold: float = 0.0,
    ndvi_max: float = 0.2,
    gif_max_frames: int = 60,
    regular_nc=None,
) -> list[dict]:
    """Write the AOI's figures (keys of ``out``: false_colour, false_colour_gif,
    pixel_series, sandbank_csv, sandbank_png, data_quality; index_series when the
    NetCDF has indices, regular_series with ``regular_nc``); return the sandbank rows."""
    grid_doc = json.loads(Path(grid_json).read_text())
    grid = grid_doc["grid"]
    aoi = str(grid_doc.get("id", Path(nc_path).parent.name))
    inside = np.load(inside_npy).astype(bool)
    manifest = json.loads(Path(manifest_json).read_text())
    for p in out.values():
        Path(p).parent.mkdir(parents=True, exist_ok=True)

    cube = Cube(nc_path)
    try:
        times = cube.times
        n_t = len(times)
        if n_t == 0:
            raise UserError(f"figures: {nc_path} has no date; nothing to plot.")
        if inside.shape != (cube.height, cube.width):
            raise UserError(
                f"figures: {inside_npy} is {inside.shape}, the NetCDF grid is {(cube.height, cube.width)}: "
                "rerun the workflow (aoi_grid and the AOI's stages)."
            )
        tile_stores = _store_dates(tiles)
        tile_paths = _aligned(times, tile_stores, "tile")
        offset_paths = _aligned(times, _store_dates(offset_fixed), "offset_fix")
        mask_paths = _aligned(times, _store_dates(masked), "mask")
        dates = [tile_stores[int(t)][0] for t in times]
        log.info("AOI %s: %d dates %s .. %s, grid %d x %d", aoi, n_t, dates[0], dates[-1], cube.width, cube.height)

        grid_sel = even_selection(n_t, int(n_dates))
        gif_sel = even_selection(n_t, int(gif_max_frames))
        keep = sorted(set(grid_sel) | set(gif_sel))
        stride = max(1, math.ceil(max(cube.height, cube.width) / MAX_PANEL_SIDE))
        scan = scan_cube(cube, inside, keep, stride, ndwi_threshold, ndvi_max)
        pos = {t: k for k, t in enumerate(keep)}
        n_inside = int(inside.sum())
        px_km2 = float(grid["resolution"]) ** 2 / 1e6
        obs_frac = scan["observed"] / n_inside if n_inside else np.zeros(n_t)

        # sandbank area: CSV + figure
        rows = []
        vf = cube.valid_fraction if cube.valid_fraction is not None else np.full(n_t, np.nan)
        for i in range(n_t):
            rows.append(
                {
                    "date": dates[i],
                    "datetime": dt.datetime.fromtimestamp(int(times[i]), dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "observed_fraction": float(obs_frac[i]),
                    "valid_fraction": float(vf[i]),
                    "missing_fraction": float(scan["missing"][i] / n_inside) if n_inside else float("nan"),
                    "polygon_area_km2": n_inside * px_km2,
                    "observed_area_km2": float(scan["observed"][i] * px_km2),
                    "sand_area_observed_km2": float(scan["sand_observed"][i] * px_km2),
                    "sand_area_gapfilled_km2": float(scan["sand_filled"][i] * px_km2),
                }
            )
        with open(out["sandbank_csv"], "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=SANDBANK_COLUMNS)
            w.writeheader()
            for r in rows:
                w.writerow({k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in r.items()})
        plot_sandbank(rows, out["sandbank_png"], aoi, ndwi_threshold, ndvi_max)
        log.info("wrote %s and %s", out["sandbank_csv"], out["sandbank_png"])

        # false-colour grid and GIF: raw tiles vs the gap-filled cube
        outline = polygon_outline(grid_doc.get("geometry_4326"), grid)
        raw = {}
        for k, i in enumerate(keep, 1):
            raw[i] = read_raw_rgb(tile_paths[i][0], stride)
            if k % 10 == 0 or k == len(keep):
                log.info("raw tiles read: %d/%d", k, len(keep))
        plot_false_colour(
            np.stack([raw[i] for i in grid_sel]),
            scan["rgb"][[pos[i] for i in grid_sel]],
            [dates[i] for i in grid_sel],
            obs_frac[grid_sel],
            outline,
            out["false_colour"],
            aoi,
            stride,
        )
        log.info("wrote %s (%d dates)", out["false_colour"], len(grid_sel))
        size = write_gif(
            np.stack([raw[i] for i in gif_sel]),
            scan["rgb"][[pos[i] for i in gif_sel]],
            [dates[i] for i in gif_sel],
            obs_frac[gif_sel],
            out["false_colour_gif"],
        )
        log.info("wrote %s (%d frames, %.2f MB)", out["false_colour_gif"], len(gif_sel), size / 1e6)

        # pixel time series
        pix = lonlat_to_pixels(points, grid) if points else default_points(inside)
        pix = pix or [(cube.height // 2, cube.width // 2)]  # no pixel inside: the grid's centre
        stage_series = {  # (dates, points) per stage, each store opened once
            name: read_pixels(paths, "B08", pix, fill)
            for name, paths, fill in (
                ("raw", tile_paths, 0),
                ("offset_fix", offset_paths, FILL_INT16),
                ("masked", mask_paths, FILL_INT16),
            )
        }
        series = []
        for k, (row, col) in enumerate(pix):
            lon, lat = pixel_lonlat(grid, row, col)
            gf = cube.band_window("B08", slice(row, row + 1), slice(col, col + 1))[:, 0, 0].astype(np.float64)
            gf[gf == FILL_INT16] = np.nan
            series.append(
                {
                    "row": row,
                    "col": col,
                    "lon": lon,
                    "lat": lat,
                    "inside": bool(inside[row, col]),
                    **{name: values[:, k] for name, values in stage_series.items()},
                    "gapfilled": gf,
                    "flag": cube.flag_window(slice(row, row + 1), slice(col, col + 1))[:, 0, 0],
                }
            )
            if not inside[row, col]:
                log.warning("point lon %.5f lat %.5f (row %d, column %d) is outside the polygon", lon, lat, row, col)
            log.info("pixel series read at row %d, column %d", row, col)
        plot_pixel_series(series, times, out["pixel_series"], aoi)
        log.info("wrote %s (%d points)", out["pixel_series"], len(series))

        # spectral indices and the regular product at the same points
        regular = None
        if regular_nc is not None:
            import netCDF4

            with netCDF4.Dataset(regular_nc) as rnc:
                names = ["B08", "flag", *index_names(rnc)]
                settings = json.loads(getattr(rnc, "regular", "{}"))
            regular = read_point_series(regular_nc, names, pix)
            # a median step stands for its window [step, step + N days): drawn at the window's middle
            half = int(settings.get("step_days", 0)) * 43200 if settings.get("method") == "median" else 0
            regular["plot_time"] = regular["time"] + half
        if "index_series" in out:
            if not cube.indices:
                raise UserError(
                    f"figures: {nc_path} has no spectral index: the NetCDF was made without 'indices'; rerun the "
                    "workflow so the netcdf rule is redone."
                )
            at = read_point_series(nc_path, [*cube.indices, "flag"], pix)
            indices = {name: at[name] for name in cube.indices}
            plot_index_series(series, times, indices, at["flag"], out["index_series"], aoi, regular)
            log.info("wrote %s (%s at %d points)", out["index_series"], ",".join(cube.indices), len(series))
        if "regular_series" in out:
            if regular is None:
                raise UserError("figures: regular_series asked for without the regular product (regular_nc).")
            gapfilled = np.stack([s["gapfilled"] for s in series], axis=1)
            plot_regular_series(
                series, times, stage_series["masked"], gapfilled, regular, settings, out["regular_series"], aoi
            )
            log.info("wrote %s (%d steps at %d points)", out["regular_series"], len(regular["time"]), len(series))

        # data quality
        by_id, by_date = read_manifest_cloud_cover(manifest_csv)
        covers = []
        for i in range(n_t):
            ids = [s for s in cube.source_items[i].split(",") if s]
            cc = [by_id[s] for s in ids if s in by_id] or by_date.get(dates[i], [])
            covers.append(cc)
        max_cloud = manifest.get("search", {}).get("max_cloud_cover")
        plot_data_quality(
            times,
            vf if np.isfinite(vf).any() else obs_frac,
            covers,
            max_cloud if isinstance(max_cloud, int | float) else None,
            out["data_quality"],
            aoi,
        )
        log.info("wrote %s", out["data_quality"])
    finally:
        cube.close()
    return rows


def figures_from_snakemake(smk) -> None:
    names = ("false_colour", "false_colour_gif", "pixel_series", "sandbank_csv", "sandbank_png", "data_quality")
    out = {k: getattr(smk.output, k) for k in (*names, "index_series", "regular_series") if hasattr(smk.output, k)}
    figures(
        nc_path=smk.input.nc,
        tiles=list(smk.input.tiles),
        offset_fixed=list(smk.input.offset_fixed),
        masked=list(smk.input.masked),
        manifest_csv=smk.input.manifest,
        manifest_json=smk.input.manifest_info,
        inside_npy=smk.input.inside,
        grid_json=smk.input.grid,
        out=out,
        points=[list(p) for p in smk.params.points],
        n_dates=int(smk.params.n_dates),
        ndwi_threshold=float(smk.params.ndwi_threshold),
        ndvi_max=float(smk.params.ndvi_max),
        gif_max_frames=int(smk.params.gif_max_frames),
        regular_nc=getattr(smk.input, "regular", None),
    )
