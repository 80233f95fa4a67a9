"""NetCDF stage: one CF-1.8 NetCDF-4 file per AOI from its gap-filled cube.

Layout (``ncdump -h`` view)::

    dimensions: time, y, x
    double time(time)        seconds since 1970-01-01 00:00:00 (acquisition time, whole seconds)
    double y(y), x(x)        projection coordinates of pixel centres, metres
    double lat(y, x), lon(y, x)   true latitude/longitude of pixel centres (CF 5.6)
    int spatial_ref          grid mapping: CF attributes of pyproj's CRS.to_cf(), crs_wkt,
                             spatial_ref (WKT, read by GDAL/rioxarray), GeoTransform, epsg_code
    short <band>(time, y, x) surface reflectance packed as DN: reflectance = DN * 0.0001,
                             _FillValue -32768; zlib level 1 + shuffle, chunks (16, 32, 32):
                             the gap-filled cube's 16 dates by 32 x 32 pixels
    byte flag(time, y, x)    (_Unsigned, read as uint8) 0 missing, 1 observed, 2 interpolated, 3 end_filled
    float valid_fraction(time)    fraction of the polygon's pixels observed that date
    string source_items(time)     the date's Sentinel-2 item ids, comma-separated
    string processing_baseline(time)   their processing baselines, same order
    string offset_correction(time)     the offset correction applied that date (JSON)

Global attributes carry the provenance: the STAC catalog and collection, the
whole configuration (JSON), software versions (JSON), ``history``. No asset
href is written, and any URL's query string (where a signing token would live)
is removed before it is written.

``time`` is the unlimited dimension. The file is written under a temporary name and
renamed into place.

**Updates for new dates.** A later run (a later ``dates.end``, or any change of the
gap-filled cube) writes a new product. When an earlier product of the same settings
is in the folder, unchanged since it was written, and its dates are the first dates
of the new series (:func:`update_plan`), the new product is that file, copied, with
only the regions of the cube whose stored chunks changed written again
(:func:`update`): the cube's chunks hold 16 dates by 256-512 pixels, the NetCDF's
16 dates by 32 x 32, so a region rewrites whole NetCDF chunks. Each product's
sidecar ``.<file>.state.json`` records the SHA-1 of the cube's stored chunk files it
was made from (:func:`cube_chunk_digests`), the settings' digest and the file's size
and SHA-1 (not its modification time: Snakemake touches its outputs after the job).
The values are those of a full write, bit for bit; the earlier
product is kept. HDF5 does not give back the space of rewritten chunks, so a product
grown beyond :data:`MAX_GROWTH` times its bytes per date at its last full write is
written in full instead.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from s2ts.errors import UserError
from s2ts.gapfill import TIME_CHUNK

log = logging.getLogger("netcdf")

SCALE_FACTOR = 0.0001
FILL_INT16 = -32768
PIXEL_CHUNK = 32  # spatial edge of a NetCDF chunk; a chunk holds TIME_CHUNK dates, as the cube's
#: chunk of the per-date variables along the unlimited time dimension (netCDF-C's own
#: for a coordinate), set so that a product updated for new dates is laid out as one
#: written in full
PER_DATE_CHUNK = 512
GRID_MAPPING = "spatial_ref"
#: auxiliary coordinates of the (time, y, x) variables; the scalar grid mapping is listed so
#: that xarray keeps it with each variable and rioxarray finds the CRS (as xarray writes it)
COORDINATES = f"lat lon {GRID_MAPPING}"
REFERENCES = (
    "Sentinel-2 MSI Level-2A products: https://sentiwiki.copernicus.eu/web/s2-processing ; "
    "processing baseline 04.00 radiometric offset (BOA_ADD_OFFSET = -1000): "
    "https://sentiwiki.copernicus.eu/web/s2-processing#S2Processing-L2AProcessingBaseline ; "
    "original analysis: https://github.com/kenoz/SITS_utils"
)
#: Sentinel-2 MSI band names and central wavelengths (nm, Sentinel-2A).
BANDS = {
    "B01": ("coastal aerosol", 443),
    "B02": ("blue", 490),
    "B03": ("green", 560),
    "B04": ("red", 665),
    "B05": ("red edge 1", 705),
    "B06": ("red edge 2", 740),
    "B07": ("red edge 3", 783),
    "B08": ("near infrared", 842),
    "B8A": ("narrow near infrared", 865),
    "B09": ("water vapour", 945),
    "B11": ("short-wave infrared 1", 1610),
    "B12": ("short-wave infrared 2", 2190),
}
FLAG_VALUES = [0, 1, 2, 3]
FLAG_MEANINGS = "missing observed interpolated end_filled"


def strip_url_queries(obj):
    """Copy of a JSON-like object where every http(s) URL lost its query string and
    fragment (signing tokens live there); everything else unchanged."""
    if isinstance(obj, dict):
        return {k: strip_url_queries(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [strip_url_queries(v) for v in obj]
    if isinstance(obj, str) and "://" in obj:
        try:
            parts = urlsplit(obj)
        except ValueError:
            return obj
        if parts.scheme and (parts.query or parts.fragment):
            return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    return obj


def software_versions() -> dict:
    import netCDF4
    import pyproj
    import zarr

    import s2ts

    return {
        "s2ts": s2ts.__version__,
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "zarr": zarr.__version__,
        "netCDF4": netCDF4.__version__,
        "netcdf-c": netCDF4.__netcdf4libversion__,
        "hdf5": netCDF4.__hdf5libversion__,
        "pyproj": pyproj.__version__,
        "proj": pyproj.proj_version_str,
    }


def _plain(obj):
    """A JSON-serialisable copy (Snakemake's config and params are dict/list subclasses)."""
    return json.loads(json.dumps(obj, default=str))


def _band_long_name(band: str) -> str:
    if band in BANDS:
        name, wl = BANDS[band]
        return f"surface reflectance, Sentinel-2 MSI band {band} ({name}, {wl} nm)"
    return f"surface reflectance, Sentinel-2 MSI band {band}"


def _lonlat(x: np.ndarray, y: np.ndarray, crs):
    """Longitude and latitude of pixel centres: at once on a small grid, chunk by chunk
    (dask) on a large one."""
    import dask.array as da
    import pyproj

    from s2ts.zarr_io import CHUNK

    to_lonlat = pyproj.Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    if x.size * y.size <= CHUNK * CHUNK:
        return to_lonlat.transform(*np.meshgrid(x, y))
    xx = da.from_array(x, chunks=CHUNK)[None, :]
    yy = da.from_array(y, chunks=CHUNK)[:, None]

    def one(xb, yb, k):
        return np.stack(to_lonlat.transform(*np.meshgrid(xb[0], yb[:, 0])))[k]

    lon = da.map_blocks(one, xx, yy, 0, dtype=np.float64, chunks=(yy.chunks[0], xx.chunks[1]))
    lat = da.map_blocks(one, xx, yy, 1, dtype=np.float64, chunks=(yy.chunks[0], xx.chunks[1]))
    return lon, lat


def _per_date_texts(ds) -> dict:
    """The per-date text variables from the cube's item and offset records."""
    items = [json.loads(t) for t in ds["item_records"].values]
    offsets = [json.loads(t) for t in ds["offset_correction"].values]
    return {
        "source_items": (
            "Sentinel-2 L2A STAC item ids mosaicked into this date (comma-separated)",
            [",".join(str(it.get("id")) for it in its) for its in items],
        ),
        "processing_baseline": (
            "processing baselines of source_items (comma-separated, same order)",
            [
                ",".join("" if it.get("processing_baseline") is None else str(it["processing_baseline"]) for it in its)
                for its in items
            ],
        ),
        "offset_correction": (
            "radiometric offset correction applied to this date's DN (JSON)",
            [json.dumps(strip_url_queries(o), sort_keys=True) for o in offsets],
        ),
    }


#: what "interpolated" means in the flag's comment and the summary, per gapfill.method
METHOD_TEXT = {
    "linear": "linear interpolation in time",
    "nearest": "the observation nearest in time (a tie goes to the earlier one)",
    "pchip": "monotone piecewise cubic (PCHIP, Fritsch-Carlson) interpolation in time",
}
FLAG_INTERPOLATED = {
    "linear": "linear in time between the previous and next observations",
    "nearest": "copied from the nearer in time of the previous and next observations (a tie: the previous one)",
    "pchip": (
        "monotone piecewise cubic (PCHIP, Fritsch-Carlson, as scipy.interpolate.PchipInterpolator) in time "
        "through the pixel's observations, never beyond the previous and next observations"
    ),
}


#: deflate level 1 with shuffle, as CMOR writes CMIP6 data: on the demo run 0.46 s
#: against 0.62 s at level 4 for a file 13 % larger (11.6 against 10.3 MB)
ZLIB = {"zlib": True, "complevel": 1, "shuffle": True}


def time_encoding() -> dict:
    """``time``: float64 seconds since 1970-01-01 (CF), no fill value."""
    from s2ts.zarr_io import TIME_ENCODING

    return {**TIME_ENCODING, "dtype": "float64", "_FillValue": None}


def cf_frame(time, x, y, grid: dict):
    """The CF skeleton of a product: coordinates ``time``, ``y``, ``x``, ``lat``/``lon``
    of pixel centres (computed chunk by chunk) and the grid mapping; returns
    ``(Dataset, encoding)``."""
    import rioxarray  # noqa: F401  (the .rio accessor writes the grid mapping)
    import xarray as xr

    from s2ts.zarr_io import GRID_MAPPING, grid_crs

    crs = grid_crs(grid)
    height, width = int(grid["height"]), int(grid["width"])
    r = float(grid["resolution"])
    out = xr.Dataset(coords={"time": time, "y": y, "x": x})
    lon, lat = _lonlat(np.asarray(x), np.asarray(y), crs)
    out.coords["lat"] = (
        ("y", "x"),
        lat,
        {"standard_name": "latitude", "long_name": "latitude of pixel centre", "units": "degrees_north"},
    )
    out.coords["lon"] = (
        ("y", "x"),
        lon,
        {"standard_name": "longitude", "long_name": "longitude of pixel centre", "units": "degrees_east"},
    )
    out = out.rio.write_crs(crs, grid_mapping_name=GRID_MAPPING)
    gm = out[GRID_MAPPING].attrs
    gm.update(
        {
            "long_name": f"coordinate reference system of x and y ({crs.name})",
            "GeoTransform": f"{grid['bounds'][0]!r} {r!r} 0.0 {grid['bounds'][3]!r} 0.0 {-r!r}",
        }
    )
    epsg = grid.get("epsg") or crs.to_epsg()
    if epsg:
        gm["epsg_code"] = f"EPSG:{int(epsg)}"
    encoding = {
        "time": time_encoding(),
        "x": {"_FillValue": None},
        "y": {"_FillValue": None},
        "lat": {"_FillValue": None, "chunksizes": (min(512, height), min(512, width)), **ZLIB},
        "lon": {"_FillValue": None, "chunksizes": (min(512, height), min(512, width)), **ZLIB},
        GRID_MAPPING: {"dtype": "int32"},
    }
    return out, encoding


def chunks3(n_t: int, grid: dict) -> tuple[int, int, int]:
    """NetCDF chunk of a ``(time, y, x)`` variable: :data:`TIME_CHUNK` dates (the
    gap-filled cube's) by PIXEL_CHUNK x PIXEL_CHUNK pixels. A pixel's series is
    ``n_t / 16`` chunk reads of the same bytes as one chunk of all dates (1.2 against
    1.1 ms at 20 km, 102 dates); one date's map decompresses 16 dates, not the whole
    file (0.31-0.34 s against 1.8 s); and a new date re-encodes only the last chunks."""
    return (
        min(TIME_CHUNK, max(1, n_t)),
        min(PIXEL_CHUNK, int(grid["height"])),
        min(PIXEL_CHUNK, int(grid["width"])),
    )


def add_band(out, encoding, name: str, data, comment: str, chunk3) -> None:
    """A reflectance band: int16 DN with scale_factor 0.0001, fill -32768, as they are."""
    out[name] = data
    out[name].attrs = {
        "standard_name": "surface_bidirectional_reflectance",
        "long_name": _band_long_name(name),
        "units": "1",
        "scale_factor": np.float32(SCALE_FACTOR),
        "add_offset": np.float32(0.0),
        "ancillary_variables": "flag",
        "comment": comment,
    }
    if name in BANDS:
        out[name].attrs["central_wavelength_nm"] = np.int16(BANDS[name][1])
    # the DN are written as they are (int16 with scale_factor attributes), never re-packed
    encoding[name] = {"dtype": "int16", "_FillValue": FILL_INT16, "chunksizes": chunk3, **ZLIB}


def add_indices(out, encoding, bands, indices, chunk3, spatial_chunk: int = 128) -> None:
    """Float32 index variables computed lazily from the DN bands already in ``out``,
    each with its formula and reference (s2ts.indices).

    The bands pass through the same task as the indices computed from them (one
    kernel per chunk returns both): with the indices as a separate branch reading
    the bands, dask kept every chunk of the bands in memory until the end of the
    write (measured: a 205 MB cube peaked at 166 MB, and 7.5 MB without indices), so
    a cube larger than memory would not have been written. Chunks of all dates by
    at most ``spatial_chunk`` pixels bound the float32 temporaries."""
    import xarray as xr

    from s2ts.indices import INDICES, index_attrs, normalized_difference

    if not indices:
        return
    stacked = xr.Variable.concat([out[b].variable for b in bands], dim="band").transpose("time", "y", "x", "band")
    stacked = xr.DataArray(stacked, coords={k: out.coords[k] for k in ("time", "y", "x")})
    if stacked.chunks is not None:
        # the bands in one chunk; split (never merge) large spatial chunks
        split = max(max(c) for c in stacked.chunks[1:3]) > spatial_chunk
        stacked = stacked.chunk({"band": -1, **({"y": spatial_chunk, "x": spatial_chunk} if split else {})})
    pos = {b: k for k, b in enumerate(bands)}
    pairs = [(pos[INDICES[name].a], pos[INDICES[name].b]) for name in indices]

    def kernel(block):
        values = [normalized_difference(block[..., i], block[..., j]) for i, j in pairs]
        return block, np.stack(values, axis=-1)

    passed, computed = xr.apply_ufunc(
        kernel,
        stacked,
        input_core_dims=[["band"]],
        output_core_dims=[["band"], ["index"]],
        dask="parallelized",
        output_dtypes=[stacked.dtype, np.float32],
        dask_gufunc_kwargs={"output_sizes": {"index": len(indices)}},
    )
    for k, b in enumerate(bands):
        attrs = dict(out[b].attrs)
        out[b] = passed.isel(band=k, drop=True)
        out[b].attrs = attrs
    for k, name in enumerate(indices):
        out[name] = computed.isel(index=k, drop=True)
        out[name].attrs = {**index_attrs(name), "ancillary_variables": "flag"}
        encoding[name] = {"dtype": "float32", "_FillValue": np.float32(np.nan), "chunksizes": chunk3, **ZLIB}


def finish(out, gridded) -> None:
    """Grid mapping and auxiliary coordinates of the gridded variables; the
    coordinates' own CF attributes (set last: variables taken from a store bring
    their own coordinate attributes)."""
    for name in gridded:
        out[name].attrs["grid_mapping"] = GRID_MAPPING
        out[name].encoding = {"coordinates": COORDINATES}  # lat/lon (CF 5.6) and the grid mapping
    out["time"].attrs = {
        "standard_name": "time",
        "long_name": "representative acquisition time of the date's items (whole seconds, UTC)",
        "axis": "T",
    }
    for name, axis in (("y", "Y"), ("x", "X")):
        out[name].attrs = {
            "standard_name": f"projection_{name}_coordinate",
            "long_name": f"{name} coordinate of pixel centre",
            "units": "m",
            "axis": axis,
        }


def write_netcdf(out, encoding, out_nc, threads: int = 1, unlimited_dims=()) -> None:
    """Write under a temporary name, chunk by chunk (dask threads), then rename."""
    import dask

    from s2ts.io import atomic_path

    with atomic_path(out_nc) as tmp, dask.config.set(scheduler="threads", num_workers=max(1, int(threads))):
        out.to_netcdf(tmp, format="NETCDF4", engine="netcdf4", encoding=encoding, unlimited_dims=unlimited_dims)


def provenance(config: dict, manifest: dict) -> dict:
    """Global attributes shared by the products: catalog, collection, search and the
    configuration (JSON), software versions."""
    catalog = str(manifest.get("catalog", config.get("stac", {}).get("catalog", "unknown")))
    collection = str(manifest.get("collection", config.get("stac", {}).get("collection", "unknown")))
    return {
        "source": f"Sentinel-2 L2A from {catalog} collection {collection}",
        "institution": str(config.get("institution") or "not specified (s2ts workflow)"),
        "references": REFERENCES,
        "stac_catalog": catalog,
        "stac_collection": collection,
        "stac_search": json.dumps(manifest.get("search", {}), sort_keys=True),
        "stac_counts": json.dumps(manifest.get("counts", {}), sort_keys=True),
        "configuration": json.dumps(config, sort_keys=True),
    }


def netcdf(cube_path, manifest_json, config: dict, out_nc, threads: int = 1, code: str = "") -> None:
    """Write the AOI's CF-1.8 NetCDF from its gap-filled store and manifest.json
    (xarray ``to_netcdf``; the cube is read and written chunk by chunk), or update an
    earlier product of the folder into it (:func:`update_plan`). With
    ``config["indices"]``, each index as a float32 variable (s2ts.indices). ``code``:
    the stage's code digest (a product of other code is never updated)."""
    from s2ts.indices import missing_bands
    from s2ts.zarr_io import open_dataset

    config = strip_url_queries(_plain(config))
    manifest = strip_url_queries(json.loads(Path(manifest_json).read_text()))
    # by the store's chunks (16 dates: whole NetCDF chunks), which an update reads region by
    # region; a full write reopens it below
    cube = open_dataset(cube_path, chunks={})
    attrs = dict(cube.attrs)
    grid = attrs["grid"]
    bands = list(config.get("bands") or attrs["bands"])
    indices = list(config.get("indices") or [])
    absent = [b for b in bands + ["flag"] if b not in cube]
    if absent:
        raise UserError(
            f"netcdf: {cube_path} has no {', '.join(absent)}: the gap-filled cube was made with another "
            "band list than config.yaml's 'bands'; rerun the workflow so the gapfill rule is redone."
        )
    lacking = missing_bands(indices, bands)
    if lacking:
        raise UserError(
            f"netcdf: indices {', '.join(lacking)} need bands {', '.join(sorted({b for v in lacking.values() for b in v}))}"
            f" that are not in bands ({', '.join(bands)}): add them to bands or remove the indices."
        )
    aoi_id = str(manifest.get("aoi") or attrs.get("aoi") or Path(out_nc).stem)
    n_t, height, width = cube.sizes["time"], int(grid["height"]), int(grid["width"])
    now = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    dates = [str(d) for d in cube["solar_day"].values]
    gap = attrs.get("gapfill", {})
    method = gap.get("method", "linear")
    times = cube["time"].values
    r = float(grid["resolution"])

    key = product_key(code, config, attrs)
    # the cube's chunk digests are read beside the rest: the plan waits for them only when an
    # earlier product may be updated, a full write only at its end
    pool = ThreadPoolExecutor(1)
    digesting = pool.submit(cube_chunk_digests, cube_path, [*bands, "flag"])
    pool.shutdown(wait=False)  # no other task; this one runs to its end
    plan = update_plan(out_nc, key, digesting.result, _encoded(cube["time"], time_encoding()))
    if not isinstance(plan, dict):
        # a pixel's whole series per task: at 20 km 20.5 s against 22.4-22.7 s by the
        # store's chunks (alternating runs), for 700 against 460 MB at peak
        cube = open_dataset(cube_path, chunks={"time": -1})
    out, encoding = cf_frame(cube["time"], cube["x"], cube["y"], grid)
    chunk3 = chunks3(n_t, grid)
    for b in bands:
        add_band(
            out,
            encoding,
            b,
            cube[b],
            "Sentinel-2 L2A bottom-of-atmosphere reflectance, stored as DN = reflectance * 10000 "
            "with the processing-baseline offset already removed; masked pixels filled by "
            f"{METHOD_TEXT.get(method, method)} (see flag).",
            chunk3,
        )
    # CF-1.8 has no unsigned types: a byte with _Unsigned = "true" (read back as uint8 by
    # xarray and netCDF4-python); no _FillValue, since 0 ("missing") is a meaningful value
    out["flag"] = cube["flag"].astype(np.int8)  # values 0..3: exact
    out["flag"].attrs = {
        "_Unsigned": "true",
        "standard_name": "status_flag",
        "long_name": "origin of each pixel's value on each date (same for every band)",
        "flag_values": np.array(FLAG_VALUES, dtype=np.int8),
        "flag_meanings": FLAG_MEANINGS,
        "comment": (
            f"missing: no value; observed: clear-sky observation; interpolated: {FLAG_INTERPOLATED.get(method, method)}; "
            "end_filled: before the first or after the last observation, copied from the nearest observation"
        ),
    }
    encoding["flag"] = {"dtype": "int8", "_FillValue": None, "chunksizes": chunk3, **ZLIB}
    add_indices(out, encoding, bands, indices, chunk3)
    vf = cube["valid_fraction"].astype(np.float32).fillna(-1.0)
    out["valid_fraction"] = vf
    out["valid_fraction"].attrs = {
        "long_name": "fraction of the polygon's pixels observed (not masked) on this date",
        "units": "1",
        "valid_range": np.array([0.0, 1.0], dtype=np.float32),
    }
    encoding["valid_fraction"] = {"_FillValue": np.float32(-1.0), "chunksizes": (PER_DATE_CHUNK,)}
    for name, (long_name, values) in _per_date_texts(cube).items():
        out[name] = ("time", np.array(values, dtype=object), {"long_name": long_name})
        encoding[name] = {"dtype": str, "chunksizes": (PER_DATE_CHUNK,)}
    encoding["time"]["chunksizes"] = (PER_DATE_CHUNK,)
    time_start = str(np.datetime_as_string(times.min(), "s")) + "Z" if n_t else ""
    time_end = str(np.datetime_as_string(times.max(), "s")) + "Z" if n_t else ""
    prov = provenance(config, manifest)
    out.attrs = {
        "Conventions": "CF-1.8",
        "title": f"Sentinel-2 L2A surface reflectance time series of AOI {aoi_id}",
        "summary": (
            f"Gap-filled Sentinel-2 L2A surface reflectance ({', '.join(bands)}) over AOI {aoi_id}: "
            f"{n_t} dates ({dates[0] if dates else '-'} .. {dates[-1] if dates else '-'}) on a "
            f"{width} x {height} grid of {r:g} m in {grid.get('crs')}. Items of the same solar day are "
            "mosaicked; the processing-baseline radiometric offset is removed per item; pixels of "
            f"SCL classes {config.get('mask', {}).get('classes')} are masked, then filled by "
            f"{METHOD_TEXT.get(method, method)} weighted by the acquisition times"
            + (", with backward/forward fill at the ends" if gap.get("fill_ends") else "")
            + (
                f", gaps longer than {gap.get('max_gap_days')} days left missing"
                if gap.get("max_gap_days") is not None
                else ""
            )
            + ". The flag variable tells observed from filled values."
            + (
                f" Spectral indices from the gap-filled reflectance: {', '.join(indices)} (formula and "
                "reference in each variable's attributes)."
                if indices
                else ""
            )
        ),
        "history": f"{now} s2ts {software_versions()['s2ts']} rule netcdf: written from "
        f"{Path(cube_path).name} (gap-filled cube) and {Path(manifest_json).name}",
        "source": prov["source"],
        "institution": prov["institution"],
        "references": REFERENCES,
        "comment": "Reflectance = DN * scale_factor; see flag for observed vs. filled values.",
        "stac_catalog": prov["stac_catalog"],
        "stac_collection": prov["stac_collection"],
        "stac_search": prov["stac_search"],
        "stac_counts": prov["stac_counts"],
        "configuration": prov["configuration"],
        "gapfill": json.dumps(gap, sort_keys=True),
        "software_versions": json.dumps(software_versions(), sort_keys=True),
        "aoi_id": aoi_id,
        "date_created": now,
        "time_coverage_start": time_start,
        "time_coverage_end": time_end,
        "platform": "Sentinel-2",
        "instrument": "MSI",
        "skipped_dates": json.dumps(attrs.get("skipped_dates", []), sort_keys=True),
    }
    finish(out, [*bands, "flag", *indices])  # last: the coordinates' own attributes
    if isinstance(plan, dict):
        try:
            update(out, encoding, plan, out_nc, threads)
        except BaseChanged as e:  # edited since: a full write, by the cube's own chunks
            plan = str(e)
    if isinstance(plan, dict):
        per_date = plan["bytes_per_date"]
        log.info(
            "updated %s from %s (%d dates): %d of the cube's %d regions of %s dates x pixels written again",
            Path(out_nc).name,
            plan["base"].name,
            plan["n_old"],
            len(plan["regions"]),
            plan["of"],
            " x ".join(map(str, plan["chunk"])),
        )
    else:
        log.info("%s written in full: %s", Path(out_nc).name, plan)
        write_netcdf(out, encoding, out_nc, threads, unlimited_dims=("time",))
        per_date = Path(out_nc).stat().st_size / max(1, n_t)
    chunk, digests = digesting.result()
    write_state(out_nc, key, chunk, digests, n_t, per_date)
    log.info(
        "wrote %s: %d dates x %d x %d, bands %s%s",
        out_nc,
        n_t,
        height,
        width,
        ",".join(bands),
        f", indices {','.join(indices)}" if indices else "",
    )


def netcdf_from_snakemake(smk) -> None:
    netcdf(
        smk.input.cube.removesuffix("/zarr.json"),
        smk.input.manifest_info,
        _plain(smk.params.config),
        smk.output.nc,
        threads=smk.threads,
        code=str(getattr(smk.params, "code", "")),
    )


# -- updates for new dates ---------------------------------------------------------

#: a product whose file has grown beyond this many times its bytes per date at its last
#: full write (HDF5 keeps the space of rewritten chunks) is written in full again
MAX_GROWTH = 1.5
#: beyond this share of the cube's regions changed, a full write costs no more
MAX_UPDATE_SHARE = 0.75
STATE_SUFFIX = ".state.json"


def state_path(nc) -> Path:
    """The sidecar of product ``nc``: ``.<name>.state.json`` beside it."""
    nc = Path(nc)
    return nc.with_name(f".{nc.name}{STATE_SUFFIX}")


def _product_of(state: Path) -> Path:
    return state.with_name(state.name[1 : -len(STATE_SUFFIX)])


def product_key(code: str, config: dict, cube_attrs: dict) -> str:
    """The digest of everything a product's values and attributes depend on but its
    dates: the stage's code, the configuration but ``dates``, the cube's grid, bands,
    mask and gap-fill settings, the layout."""
    import hashlib

    doc = {
        "code": str(code),
        "config": {k: v for k, v in config.items() if k != "dates"},
        "cube": {k: cube_attrs.get(k) for k in ("grid", "bands", "mask", "gapfill")},
        "layout": [TIME_CHUNK, PIXEL_CHUNK],
    }
    return hashlib.sha1(json.dumps(doc, sort_keys=True, default=str).encode(), usedforsecurity=False).hexdigest()


def cube_chunk_digests(cube_path, names) -> tuple[list[int], dict[str, str]]:
    """The cube's chunk shape and, per chunk index ``"k.i.j"`` (time, y, x), the SHA-1
    of the stored chunk files of arrays ``names`` (their compressed bytes, or a mark
    for a chunk not stored) and of the number of dates the chunk holds: equal digests,
    equal values. Reading the files costs a fraction of decoding them (385 MB at
    20 km, 102 dates)."""
    import hashlib

    import zarr

    group = zarr.open_group(str(cube_path), mode="r")
    arrays = [group[n] for n in names]
    chunk = [int(c) for c in arrays[0].chunks]
    if any(list(a.chunks) != chunk for a in arrays):
        raise ValueError(f"{cube_path}: the arrays {names} are not chunked alike")
    n_t = int(arrays[0].shape[0])
    out = {}
    for idx in np.ndindex(*arrays[0].cdata_shape):
        h = hashlib.sha1(usedforsecurity=False)
        h.update(str(min(chunk[0], n_t - idx[0] * chunk[0])).encode())  # a partial time chunk that grows
        for name, a in zip(names, arrays):
            f = Path(cube_path, a.path, a.metadata.encode_chunk_key(idx))
            h.update(name.encode())
            h.update(f.read_bytes() if f.is_file() else b"\0not stored")
        out[".".join(map(str, idx))] = h.hexdigest()
    return chunk, out


def write_state(out_nc, key: str, chunk, digests: dict, n_t: int, bytes_per_date: float) -> None:
    """Write product ``out_nc``'s sidecar; remove the sidecars of products gone."""
    from s2ts.io import write_json

    write_json(
        state_path(out_nc),
        {
            "file": [Path(out_nc).stat().st_size, file_sha1(out_nc)],
            "key": key,
            "chunk": list(chunk),
            "n_time": int(n_t),
            "bytes_per_date": float(bytes_per_date),
            "digests": digests,
        },
    )
    for sp in Path(out_nc).parent.glob(f".*.nc{STATE_SUFFIX}"):
        if not _product_of(sp).exists():
            sp.unlink(missing_ok=True)


def update_plan(out_nc, key: str, cube_digests, times: np.ndarray) -> dict | str:
    """How to make product ``out_nc`` from an earlier one of its folder: ``{base,
    n_old, regions, of, chunk, bytes_per_date}`` (``regions``: the chunk indices of
    the cube to write again, of ``of``), or why it is written in full.

    A base is a product whose sidecar has the same settings digest (``key``) and
    file size; ``cube_digests()`` (:func:`cube_chunk_digests`, called only then) must
    give the sidecar's chunk shape; of these, the one with the most chunks in common.
    Its dates must be the first of ``times`` (encoded), its time dimension unlimited,
    its size within :data:`MAX_GROWTH` of its bytes per date at its last full write,
    and fewer than :data:`MAX_UPDATE_SHARE` of the regions changed. Its bytes must be
    those it was written with: :func:`update` checks their SHA-1 as it copies them."""
    import netCDF4

    found = []
    for sp in sorted(Path(out_nc).parent.glob(f".*.nc{STATE_SUFFIX}")):
        base = _product_of(sp)
        try:
            st = json.loads(sp.read_text())
            stat = base.stat()
        except (OSError, ValueError):
            continue
        if _state_ok(st) and st["file"][0] == stat.st_size and st["key"] == key:
            found.append((stat.st_mtime_ns, base, st))
    if not found:
        return "no earlier product of the same settings in its folder"
    chunk, digests = cube_digests()
    if chunk[0] != TIME_CHUNK:
        return f"the gap-filled cube's chunks hold {chunk[0]} dates, not {TIME_CHUNK}"
    found = [
        (sum(digests.get(k) == v for k, v in st["digests"].items()), mtime, base, st)
        for mtime, base, st in found
        if st["chunk"] == chunk
    ]
    if not found:
        return "the earlier products of the same settings were made from a cube of other chunks"
    _, _, base, st = max(found, key=lambda f: f[:2])
    n_old = st["n_time"]
    with netCDF4.Dataset(base) as ds:
        ds.set_auto_maskandscale(False)
        unlimited = ds.dimensions["time"].isunlimited()
        old_times = np.asarray(ds["time"][:])
    if not unlimited:
        return f"{base.name} has no unlimited time dimension"
    if n_old != old_times.size or n_old > times.size or not np.array_equal(old_times, times[:n_old]):
        return f"the dates of {base.name} are not the first dates of the new series"
    size = base.stat().st_size
    if size > MAX_GROWTH * st["bytes_per_date"] * max(1, n_old):
        return (
            f"{base.name} has grown to {size / max(1, n_old):.0f} bytes per date by updates, "
            f"from {st['bytes_per_date']:.0f} at its last full write"
        )
    regions = sorted(k for k, v in digests.items() if st["digests"].get(k) != v)
    if len(regions) > MAX_UPDATE_SHARE * len(digests):
        return f"{len(regions)} of the cube's {len(digests)} regions changed since {base.name}"
    return {
        "base": base,
        "n_old": n_old,
        "regions": regions,
        "of": len(digests),
        "chunk": chunk,
        "bytes_per_date": st["bytes_per_date"],
        "sha1": st["file"][1],
    }


def _state_ok(st) -> bool:
    """A sidecar as :func:`write_state` writes it (one edited or cut short is ignored)."""
    types = {"file": list, "key": str, "chunk": list, "n_time": int, "bytes_per_date": (int, float), "digests": dict}
    return (
        isinstance(st, dict)
        and all(isinstance(st.get(k), t) for k, t in types.items())
        and len(st["file"]) == 2
        and isinstance(st["file"][0], int)
        and isinstance(st["file"][1], str)
    )


class BaseChanged(Exception):
    """The earlier product's bytes are not those its sidecar records."""


def copy_checked(src, dst, sha1: str) -> None:
    """Copy file ``src`` to ``dst``, hashing the bytes as they are read (one read of
    the file): :class:`BaseChanged` if their SHA-1 is not ``sha1``."""
    import hashlib

    h = hashlib.sha1(usedforsecurity=False)
    with open(src, "rb") as f, open(dst, "wb") as g:
        while block := f.read(1 << 22):
            h.update(block)
            g.write(block)
    if h.hexdigest() != sha1:
        raise BaseChanged(f"{Path(src).name} has changed since it was written")


def file_sha1(path) -> str:
    """SHA-1 of a file's bytes (0.2-0.3 s for the 400 MB of a 20 km product)."""
    import hashlib

    with open(path, "rb") as f:
        return hashlib.file_digest(f, lambda: hashlib.sha1(usedforsecurity=False)).hexdigest()


def _encoded(var, enc: dict) -> np.ndarray:
    """The values xarray's ``to_netcdf`` writes for ``var`` with ``enc`` (CF encoding)."""
    import xarray as xr

    v = var.variable.copy(deep=False)
    v.encoding = dict(enc)
    return np.asarray(xr.conventions.encode_cf_variable(v, name=var.name).values)


def update(out, encoding, plan: dict, out_nc, threads: int = 1) -> None:
    """Product ``out_nc``: a copy of ``plan["base"]`` with the time dimension grown to
    ``out``'s dates, every per-date variable and the global attributes written again,
    and each gridded variable written again over the regions (cube chunks) of
    ``plan["regions"]`` (of chunks ``plan["chunk"]``), all encoded as ``to_netcdf``
    encodes them; written under a temporary name and renamed. :class:`BaseChanged`
    (and nothing written) if the base's bytes are not those its sidecar records."""
    import dask
    import netCDF4

    from s2ts.io import atomic_path

    sizes = {d: out.sizes[d] for d in ("time", "y", "x")}
    per_date = [n for n, v in out.variables.items() if v.dims == ("time",)]
    gridded = [n for n, v in out.data_vars.items() if v.dims == ("time", "y", "x")]
    with atomic_path(out_nc) as tmp, dask.config.set(scheduler="threads", num_workers=max(1, int(threads))):
        copy_checked(plan["base"], tmp, plan["sha1"])
        with netCDF4.Dataset(tmp, "a") as ds:
            ds.set_auto_maskandscale(False)
            for name in per_date:  # the coordinate first: it grows the dimension
                ds[name][: sizes["time"]] = _encoded(out[name], encoding.get(name, {}))
            for region in plan["regions"]:
                sel = {
                    d: slice(c * n, min((c + 1) * n, sizes[d]))
                    for d, c, n in zip(("time", "y", "x"), map(int, region.split(".")), plan["chunk"])
                }
                part = out[gridded].isel(sel)
                values = dask.compute(*(part[name].data for name in gridded))
                for name, v in zip(gridded, values):
                    ds[name][sel["time"], sel["y"], sel["x"]] = _encoded(part[name].copy(data=v), encoding[name])
            for a in ds.ncattrs():
                ds.delncattr(a)
            for a, v in out.attrs.items():
                ds.setncattr(a, v)
