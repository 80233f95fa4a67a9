"""Mask stage: SCL classes in ``mask.classes`` and no-data become missing.

Input: the offset-fixed store (int16, fill -32768). A pixel is kept in a band
when its SCL class is not listed, SCL is not 0 (no data: always missing, listed
or not) and the band itself has data. Storage stays int16 with the explicit
fill -32768 (the original package's ``where()`` turned uint16 cubes into
float64). ``valid_fraction``: pixels inside the polygon (pixel centre rule,
``inside.npy`` of the AOI stage) valid in every band, over pixels inside.
"""

from __future__ import annotations

import logging

import numpy as np

from s2ts.zarr_io import FILL_INT16, read_arrays, read_attrs, write_store

log = logging.getLogger("mask")


def mask_arrays(bands: dict[str, np.ndarray], scl: np.ndarray, classes) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Return (masked int16 bands, per-pixel validity in every band)."""
    lut = np.zeros(256, bool)
    lut[list(classes)] = True
    lut[0] = True
    bad = lut[scl]
    valid = ~bad
    out = {}
    for name, data in bands.items():
        out[name] = np.where(bad, FILL_INT16, data).astype(np.int16)
        valid &= data != FILL_INT16
    return out, valid


def mask(offset_path, inside_npy, out_path, classes) -> dict:
    attrs = read_attrs(offset_path)
    bands, mask_band = attrs["bands"], attrs["mask_band"]
    data = read_arrays(offset_path, bands + [mask_band])
    masked, valid = mask_arrays({b: data[b] for b in bands}, data[mask_band], classes)
    inside = np.load(inside_npy).astype(bool)
    n_inside = int(inside.sum())
    n_valid = int((valid & inside).sum())
    out = dict(attrs)
    out.update(
        stage="mask",
        mask={"band": mask_band, "classes": sorted(int(c) for c in classes)},
        n_inside=n_inside,
        n_valid=n_valid,
        valid_fraction=n_valid / n_inside if n_inside else 0.0,
    )
    write_store(out_path, masked, out, attrs["grid"])
    log.info(
        "date %s: %d of %d pixels in the polygon valid (%.1f %%)",
        attrs["date"],
        n_valid,
        n_inside,
        100 * out["valid_fraction"],
    )
    return out


def mask_from_snakemake(smk) -> None:
    mask(smk.input.tile, smk.input.inside, smk.output.tile, smk.params.classes)
