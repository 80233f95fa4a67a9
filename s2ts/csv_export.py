"""CSV export stage (optional, ``export.csv: true``): the final cube as a long table.

One row per date and pixel of the AOI's grid (the whole bounding-box grid, like
the original package's ``to_csv``; ``inside`` tells the polygon's pixels), in
time order then raster order (row by row from the north-west corner)::

    time,x,y,inside,B03,B04,B08,flag
    2022-01-03T11:04:52Z,3426460.0,2458740.0,0,0.0512,0.0297,0.0141,1

``time`` is the acquisition time (UTC, whole seconds), ``x``/``y`` the pixel
centre in the grid's CRS (metres), bands the surface reflectance (DN x 0.0001,
4 decimals, offset already removed; an empty field where the value is missing),
the NetCDF's spectral indices (config ``indices``: NDWI, NDVI, ...) after the bands,
6 decimals (empty where undefined), ``flag`` as in the NetCDF (0 missing, 1
observed, 2 interpolated, 3 end-filled).
Written gzip-compressed when the name ends in ``.gz``, under a temporary name
renamed into place. Read it back with ``pandas.read_csv(path)``.
"""

from __future__ import annotations

import datetime as dt
import gzip
import io
import logging
from pathlib import Path

import numpy as np

from s2ts.errors import UserError

log = logging.getLogger("csv_export")

FILL_INT16 = -32768
SCALE = 0.0001


def csv_export(nc_path, inside_npy, out_path, compresslevel: int = 4) -> int:
    """Write the long CSV table of the NetCDF ``nc_path``; return the number of rows."""
    import netCDF4

    from s2ts.io import atomic_path

    nc = netCDF4.Dataset(nc_path)
    try:
        nc.set_auto_maskandscale(False)
        v = nc.variables
        if "flag" not in v or "time" not in v:
            raise UserError(f"csv_export: {nc_path} is not a workflow NetCDF (no flag/time): rerun the netcdf rule.")
        gridded = [name for name, var in v.items() if var.dimensions == ("time", "y", "x") and name != "flag"]
        # reflectance: packed int16 DN (scale_factor); indices: float32 as they are
        bands = [name for name in gridded if v[name].dtype.kind in "iu"]
        indices = [name for name in gridded if v[name].dtype.kind == "f"]
        times = np.asarray(v["time"][:], dtype=np.float64).astype(np.int64)
        x = np.asarray(v["x"][:], dtype=np.float64)
        y = np.asarray(v["y"][:], dtype=np.float64)
        inside = np.load(inside_npy).astype(np.uint8) if inside_npy else np.ones((len(y), len(x)), np.uint8)
        if inside.shape != (len(y), len(x)):
            raise UserError(f"csv_export: {inside_npy} is {inside.shape}, the NetCDF grid {(len(y), len(x))}.")
        # whole cube per band (int16, all dates): the NetCDF's chunks hold all dates
        cube = {b: np.asarray(v[b][:]) for b in bands + indices}
        flag = np.asarray(v["flag"][:]).view(np.uint8)
    finally:
        nc.close()

    xx, yy = np.meshgrid(x, y)
    static = np.column_stack([xx.ravel(), yy.ravel(), inside.ravel().astype(np.float64)])
    header = ",".join(["time", "x", "y", "inside", *bands, *indices, "flag"]) + "\n"
    rows = 0
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_path) as tmp:
        raw = open(tmp, "wb")
        f = (
            gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=compresslevel, mtime=0)
            if out_path.suffix == ".gz"
            else raw
        )
        try:
            f.write(header.encode())
            for i, t in enumerate(times):
                when = dt.datetime.fromtimestamp(int(t), dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                cols = [static]
                for b in bands:
                    d = cube[b][i].ravel()
                    cols.append(np.where(d == FILL_INT16, np.nan, d * SCALE)[:, None])
                for name in indices:
                    cols.append(cube[name][i].ravel().astype(np.float64)[:, None])
                cols.append(flag[i].ravel()[:, None].astype(np.float64))
                table = np.hstack(cols)
                buf = io.BytesIO()
                fmt = ",".join([f"{when},%.1f,%.1f,%d", *(["%.4f"] * len(bands)), *(["%.6f"] * len(indices)), "%d"])
                np.savetxt(buf, table, fmt=fmt, delimiter=",")
                f.write(buf.getvalue().replace(b",nan", b","))
                rows += table.shape[0]
                log.info("date %d/%d (%s) written: %d rows", i + 1, len(times), when, table.shape[0])
        finally:
            f.close()
            raw.close()
    log.info("wrote %s: %d rows, bands %s", out_path, rows, ",".join(bands + indices))
    return rows


def csv_export_from_snakemake(smk) -> None:
    csv_export(smk.input.nc, smk.input.inside, smk.output.csv)
