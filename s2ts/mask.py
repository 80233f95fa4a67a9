"""Mask stage: SCL classes in ``mask.classes`` and no-data become missing.

Input: a light batch's offset-fixed store (int16, fill -32768, ``(time, y, x)``). A
pixel is kept in a band when its SCL class is not listed, SCL is not 0 (no data:
always missing, listed or not) and the band itself has data. With ``mask.rule: any``
(the default, a conservative rule) a pixel is also masked when a listed class or no
data occurs in any SCL cell its footprint covers (``SCL_any``, see s2ts.tile);
``nearest`` uses the pixel's central SCL cell only. Storage stays int16 with the
explicit fill -32768 (the original package's ``where()`` turned uint16 cubes into
float64). ``valid_fraction(time)``: pixels inside the polygon (pixel centre rule,
``inside.npy`` of the AOI stage) valid in every band, over pixels inside.
"""

from __future__ import annotations

import logging

import numpy as np

from s2ts.zarr_io import FILL_INT16

log = logging.getLogger("mask")


def bad_pixels(scl: np.ndarray, classes, scl_any: np.ndarray | None = None) -> np.ndarray:
    """True where a pixel is masked: a listed class or no data (0) at its centre, or
    with ``scl_any`` (the conservative rule) anywhere in its footprint."""
    lut = np.zeros(256, bool)
    lut[list(classes)] = True
    lut[0] = True
    bad = lut[scl]
    if scl_any is not None:
        bits = np.uint16(sum(1 << c for c in set(classes) | {0} if c < 16))
        bad |= (scl_any & bits) != 0
    return bad


def mask_arrays(bands: dict[str, np.ndarray], scl: np.ndarray, classes, scl_any: np.ndarray | None = None):
    """Return (masked int16 bands, per-pixel validity in every band)."""
    bad = bad_pixels(scl, classes, scl_any)
    valid = ~bad
    out = {}
    for name, data in bands.items():
        out[name] = np.where(bad, FILL_INT16, data).astype(np.int16)
        valid &= data != FILL_INT16
    return out, valid


def mask(offset_path, inside_npy, out_path, classes, rule: str = "any", threads: int = 1) -> np.ndarray:
    """Mask a light batch's offset-fixed store into ``out_path``, chunk by chunk of the
    store (dask); return the valid fraction of each date."""
    import dask
    import xarray as xr

    from s2ts.zarr_io import open_dataset, write_dataset

    ds = open_dataset(offset_path, chunks={})
    bands, mask_band = ds.attrs["bands"], ds.attrs["mask_band"]
    scl_any = ds[f"{mask_band}_any"] if rule == "any" else None
    args = [ds[mask_band]] + ([scl_any] if scl_any is not None else [])
    bad = xr.apply_ufunc(lambda scl, *a: bad_pixels(scl, classes, *a), *args, dask="parallelized", output_dtypes=[bool])
    out = xr.Dataset(attrs=dict(ds.attrs))
    valid = ~bad
    for b in bands:
        out[b] = ds[b].where(~bad, FILL_INT16).astype(np.int16)
        valid = valid & (ds[b] != FILL_INT16)
    inside = xr.DataArray(np.load(inside_npy).astype(bool), dims=("y", "x"))
    n_inside = int(inside.sum())
    n_valid = (valid & inside).sum(("y", "x"))
    # lazy like the bands: computed in the same pass over the store as the write
    out["valid_fraction"] = (n_valid / n_inside if n_inside else n_valid * 0.0).astype(np.float32)
    for name in ("solar_day", "item_records", "offset_correction"):
        out[name] = ds[name].load()
    out.attrs.update(
        stage="mask",
        mask={"band": mask_band, "classes": sorted(int(c) for c in classes), "rule": rule},
        n_inside=n_inside,
    )
    with dask.config.set(scheduler="threads", num_workers=max(1, int(threads))):
        write_dataset(out, out_path)
    fraction = open_dataset(out_path)["valid_fraction"].values
    for day, f in zip(ds["solar_day"].values, fraction):
        log.info("date %s: %.1f %% of the %d pixels in the polygon valid", day, 100 * f, n_inside)
    return fraction


def mask_from_snakemake(smk) -> None:
    p = smk.params
    mask(
        smk.input.store.removesuffix("/zarr.json"),
        smk.input.inside,
        smk.output.store.removesuffix("/zarr.json"),
        p.classes,
        p.rule,
    )
