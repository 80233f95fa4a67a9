"""NetCDF stage: one CF-1.8 NetCDF-4 file per AOI from its gap-filled cube.

Layout (``ncdump -h`` view)::

    dimensions: time, y, x
    double time(time)        seconds since 1970-01-01 00:00:00 (acquisition time, whole seconds)
    double y(y), x(x)        projection coordinates of pixel centres, metres
    double lat(y, x), lon(y, x)   true latitude/longitude of pixel centres (CF 5.6)
    int spatial_ref          grid mapping: CF attributes of pyproj's CRS.to_cf(), crs_wkt,
                             spatial_ref (WKT, read by GDAL/rioxarray), GeoTransform, epsg_code
    short <band>(time, y, x) surface reflectance packed as DN: reflectance = DN * 0.0001,
                             _FillValue -32768; zlib level 4 + shuffle, chunks (T, 32, 32)
                             so a pixel's whole time series is one chunk read
    byte flag(time, y, x)    (_Unsigned, read as uint8) 0 missing, 1 observed, 2 interpolated, 3 end_filled
    float valid_fraction(time)    fraction of the polygon's pixels observed that date
    string source_items(time)     the date's Sentinel-2 item ids, comma-separated
    string processing_baseline(time)   their processing baselines, same order
    string offset_correction(time)     the offset correction applied that date (JSON)

Global attributes carry the provenance: the STAC catalog and collection, the
whole configuration (JSON), software versions (JSON), ``history``. No asset
href is written, and any URL's query string (where a signing token would live)
is removed before it is written.

The file is written under a temporary name and renamed into place.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from s2ts.errors import UserError

log = logging.getLogger("netcdf")

SCALE_FACTOR = 0.0001
FILL_INT16 = -32768
PIXEL_CHUNK = 32  # spatial edge of a NetCDF chunk; every chunk holds all dates
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


def _windows(height: int, width: int, step: int):
    for y0 in range(0, height, step):
        for x0 in range(0, width, step):
            yield slice(y0, min(y0 + step, height)), slice(x0, min(x0 + step, width))


def netcdf(cube_path, manifest_json, config: dict, out_nc) -> None:
    """Write the AOI's CF-1.8 NetCDF from its gap-filled store and manifest.json."""
    import netCDF4
    import pyproj

    from s2ts.io import atomic_path
    from s2ts.zarr_io import CHUNK, grid_coords, open_store

    config = strip_url_queries(_plain(config))
    manifest = strip_url_queries(json.loads(Path(manifest_json).read_text()))
    cube = open_store(cube_path)
    attrs = dict(cube.attrs)
    grid = attrs["grid"]
    bands = list(config.get("bands") or attrs["bands"])
    absent = [b for b in bands + ["flag", "time"] if b not in cube]
    if absent:
        raise UserError(
            f"netcdf: {cube_path} has no {', '.join(absent)}: the gap-filled cube was made with another "
            "band list than config.yaml's 'bands'; rerun the workflow so the gapfill rule is redone."
        )
    aoi_id = str(manifest.get("aoi") or attrs.get("aoi") or Path(out_nc).stem)
    catalog = str(manifest.get("catalog", config.get("stac", {}).get("catalog", "unknown")))
    collection = str(manifest.get("collection", config.get("stac", {}).get("collection", "unknown")))
    times = np.asarray(cube["time"][:], dtype=np.int64)
    n_t, height, width = len(times), int(grid["height"]), int(grid["width"])
    x, y = grid_coords(grid)
    crs = pyproj.CRS.from_wkt(grid["crs_wkt"]) if grid.get("crs_wkt") else pyproj.CRS.from_user_input(grid["crs"])
    to_lonlat = pyproj.Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    dates = list(attrs.get("dates", []))
    item_ids = attrs.get("items", [[] for _ in range(n_t)])
    baselines = attrs.get("processing_baselines", [[] for _ in range(n_t)])
    valid = attrs.get("valid_fraction", [None] * n_t)
    offsets = attrs.get("offset", [None] * n_t)
    gap = attrs.get("gapfill", {})
    time_start = dt.datetime.fromtimestamp(int(times.min()), dt.UTC) if n_t else None
    time_end = dt.datetime.fromtimestamp(int(times.max()), dt.UTC) if n_t else None

    chunk3 = (max(1, n_t), min(PIXEL_CHUNK, height), min(PIXEL_CHUNK, width))
    chunk2 = (min(CHUNK, height), min(CHUNK, width))
    zlib = {"compression": "zlib", "complevel": 4, "shuffle": True}

    with atomic_path(out_nc) as tmp:
        nc = netCDF4.Dataset(tmp, "w", format="NETCDF4")
        try:
            nc.createDimension("time", n_t)
            nc.createDimension("y", height)
            nc.createDimension("x", width)

            v = nc.createVariable("time", "f8", ("time",))
            v.setncatts(
                {
                    "standard_name": "time",
                    "long_name": "representative acquisition time of the date's items (whole seconds, UTC)",
                    "units": "seconds since 1970-01-01 00:00:00",
                    "calendar": "proleptic_gregorian",
                    "axis": "T",
                }
            )
            v[:] = times.astype(np.float64)
            for name, coord, axis in (("y", y, "Y"), ("x", x, "X")):
                v = nc.createVariable(name, "f8", (name,))
                v.setncatts(
                    {
                        "standard_name": f"projection_{name}_coordinate",
                        "long_name": f"{name} coordinate of pixel centre",
                        "units": "m",
                        "axis": axis,
                    }
                )
                v[:] = coord
            lat = nc.createVariable("lat", "f8", ("y", "x"), chunksizes=chunk2, **zlib)
            lat.setncatts(
                {"standard_name": "latitude", "long_name": "latitude of pixel centre", "units": "degrees_north"}
            )
            lon = nc.createVariable("lon", "f8", ("y", "x"), chunksizes=chunk2, **zlib)
            lon.setncatts(
                {"standard_name": "longitude", "long_name": "longitude of pixel centre", "units": "degrees_east"}
            )

            gm = nc.createVariable(GRID_MAPPING, "i4", ())
            cf = crs.to_cf()
            gm_attrs = {k: v for k, v in cf.items() if v is not None}
            r = float(grid["resolution"])
            gm_attrs.update(
                {
                    "long_name": f"coordinate reference system of x and y ({crs.name})",
                    "crs_wkt": crs.to_wkt(),
                    "spatial_ref": crs.to_wkt(),
                    "GeoTransform": f"{grid['bounds'][0]!r} {r!r} 0.0 {grid['bounds'][3]!r} 0.0 {-r!r}",
                }
            )
            epsg = grid.get("epsg") or crs.to_epsg()
            if epsg:
                gm_attrs["epsg_code"] = f"EPSG:{int(epsg)}"
            gm.setncatts(gm_attrs)
            gm.assignValue(0)

            band_vars = {}
            for b in bands:
                var = nc.createVariable(b, "i2", ("time", "y", "x"), fill_value=FILL_INT16, chunksizes=chunk3, **zlib)
                var.setncatts(
                    {
                        "standard_name": "surface_bidirectional_reflectance",
                        "long_name": _band_long_name(b),
                        "units": "1",
                        "scale_factor": np.float32(SCALE_FACTOR),
                        "add_offset": np.float32(0.0),
                        "grid_mapping": GRID_MAPPING,
                        "coordinates": COORDINATES,
                        "ancillary_variables": "flag",
                        "comment": (
                            "Sentinel-2 L2A bottom-of-atmosphere reflectance, stored as DN = reflectance * 10000 "
                            "with the processing-baseline offset already removed; masked pixels filled by linear "
                            "interpolation in time (see flag)."
                        ),
                    }
                )
                if b in BANDS:
                    var.setncattr("central_wavelength_nm", np.int16(BANDS[b][1]))
                band_vars[b] = var
            # CF-1.8 has no unsigned types: a byte with _Unsigned = "true" (read back as uint8 by
            # xarray and netCDF4-python); no _FillValue, since 0 ("missing") is a meaningful value
            fl = nc.createVariable("flag", "i1", ("time", "y", "x"), fill_value=False, chunksizes=chunk3, **zlib)
            fl.setncatts(
                {
                    "_Unsigned": "true",
                    "standard_name": "status_flag",
                    "long_name": "origin of each pixel's value on each date (same for every band)",
                    "flag_values": np.array(FLAG_VALUES, dtype=np.int8),
                    "flag_meanings": FLAG_MEANINGS,
                    "grid_mapping": GRID_MAPPING,
                    "coordinates": COORDINATES,
                    "comment": (
                        "missing: no value; observed: clear-sky observation; interpolated: linear in time between "
                        "the previous and next observations; end_filled: before the first or after the last "
                        "observation, copied from the nearest observation"
                    ),
                }
            )

            vf = nc.createVariable("valid_fraction", "f4", ("time",), fill_value=np.float32(-1.0))
            vf.setncatts(
                {
                    "long_name": "fraction of the polygon's pixels observed (not masked) on this date",
                    "units": "1",
                    "valid_range": np.array([0.0, 1.0], dtype=np.float32),
                }
            )
            vf[:] = np.array([-1.0 if f is None else f for f in valid], dtype=np.float32)
            texts = {
                "source_items": (
                    "Sentinel-2 L2A STAC item ids mosaicked into this date (comma-separated)",
                    [",".join(map(str, ids)) for ids in item_ids],
                ),
                "processing_baseline": (
                    "processing baselines of source_items (comma-separated, same order)",
                    [",".join("" if p is None else str(p) for p in pbs) for pbs in baselines],
                ),
                "offset_correction": (
                    "radiometric offset correction applied to this date's DN (JSON)",
                    [json.dumps(strip_url_queries(o), sort_keys=True) for o in offsets],
                ),
            }
            for name, (long_name, values) in texts.items():
                sv = nc.createVariable(name, str, ("time",))
                sv.setncattr("long_name", long_name)
                for i, text in enumerate(values):
                    sv[i] = text

            nc.setncatts(
                {
                    "Conventions": "CF-1.8",
                    "title": f"Sentinel-2 L2A surface reflectance time series of AOI {aoi_id}",
                    "summary": (
                        f"Gap-filled Sentinel-2 L2A surface reflectance ({', '.join(bands)}) over AOI {aoi_id}: "
                        f"{n_t} dates ({dates[0] if dates else '-'} .. {dates[-1] if dates else '-'}) on a "
                        f"{width} x {height} grid of {r:g} m in {grid.get('crs')}. Items of the same solar day are "
                        "mosaicked; the processing-baseline radiometric offset is removed per item; pixels of "
                        f"SCL classes {config.get('mask', {}).get('classes')} are masked, then filled by linear "
                        "interpolation in time weighted by the acquisition times"
                        + (", with backward/forward fill at the ends" if gap.get("fill_ends") else "")
                        + (
                            f", gaps longer than {gap.get('max_gap_days')} days left missing"
                            if gap.get("max_gap_days") is not None
                            else ""
                        )
                        + ". The flag variable tells observed from filled values."
                    ),
                    "history": f"{now} s2ts {software_versions()['s2ts']} rule netcdf: written from "
                    f"{Path(cube_path).name} (gap-filled cube) and {Path(manifest_json).name}",
                    "source": f"Sentinel-2 L2A from {catalog} collection {collection}",
                    "institution": str(config.get("institution") or "not specified (s2ts workflow)"),
                    "references": REFERENCES,
                    "comment": "Reflectance = DN * scale_factor; see flag for observed vs. filled values.",
                    "stac_catalog": catalog,
                    "stac_collection": collection,
                    "stac_search": json.dumps(manifest.get("search", {}), sort_keys=True),
                    "stac_counts": json.dumps(manifest.get("counts", {}), sort_keys=True),
                    "configuration": json.dumps(config, sort_keys=True),
                    "gapfill": json.dumps(gap, sort_keys=True),
                    "software_versions": json.dumps(software_versions(), sort_keys=True),
                    "aoi_id": aoi_id,
                    "date_created": now,
                    "time_coverage_start": time_start.isoformat().replace("+00:00", "Z") if time_start else "",
                    "time_coverage_end": time_end.isoformat().replace("+00:00", "Z") if time_end else "",
                    "platform": "Sentinel-2",
                    "instrument": "MSI",
                    "skipped_dates": json.dumps(attrs.get("skipped_dates", []), sort_keys=True),
                }
            )

            for var in nc.variables.values():
                var.set_auto_maskandscale(False)  # DN are written as they are, never re-packed
            windows = list(_windows(height, width, CHUNK))
            for k, (ys, xs) in enumerate(windows, 1):
                xx, yy = np.meshgrid(x[xs], y[ys])
                lo, la = to_lonlat.transform(xx, yy)
                lon[ys, xs] = lo
                lat[ys, xs] = la
                for b, var in band_vars.items():
                    var[:, ys, xs] = cube[b][:, ys, xs]
                fl[:, ys, xs] = cube["flag"][:, ys, xs].astype(np.int8)
                log.info("window %d/%d written", k, len(windows))
        finally:
            nc.close()
    log.info("wrote %s: %d dates x %d x %d, bands %s", out_nc, n_t, height, width, ",".join(bands))


def netcdf_from_snakemake(smk) -> None:
    netcdf(smk.input.cube, smk.input.manifest_info, _plain(smk.params.config), smk.output.nc)
