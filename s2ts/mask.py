"""Mask stage: SCL classes in ``mask.classes`` and no-data become missing.

Input: the offset-fixed store (int16, fill -32768). A pixel is kept in a band
when its SCL class is not listed, SCL is not 0 (no data: always missing, listed
or not) and the band itself has data. With ``mask.rule: any`` (the default, a
conservative rule) a pixel is also masked when a listed class or no data occurs
in any SCL cell its footprint covers (``SCL_any``, see s2ts.tile); ``nearest``
uses the pixel's central SCL cell only. Storage stays int16 with the explicit
fill -32768 (the original package's ``where()`` turned uint16 cubes into
float64). ``valid_fraction``: pixels inside the polygon (pixel centre rule,
``inside.npy`` of the AOI stage) valid in every band, over pixels inside.
"""

from __future__ import annotations

import logging

import numpy as np

from s2ts.zarr_io import FILL_INT16, read_arrays, read_attrs, write_store

log = logging.getLogger("mask")


def mask_arrays(bands: dict[str, np.ndarray], scl: np.ndarray, classes, scl_any: np.ndarray | None = None):
    """Return (masked int16 bands, per-pixel validity in every band).

    With ``scl_any`` (the conservative rule), a pixel is also masked when any
    class of ``classes`` or no data is present anywhere in its footprint."""
    lut = np.zeros(256, bool)
    lut[list(classes)] = True
    lut[0] = True
    bad = lut[scl]
    if scl_any is not None:
        bits = np.uint16(sum(1 << c for c in set(classes) | {0} if c < 16))
        bad |= (scl_any & bits) != 0
    valid = ~bad
    out = {}
    for name, data in bands.items():
        out[name] = np.where(bad, FILL_INT16, data).astype(np.int16)
        valid &= data != FILL_INT16
    return out, valid


def mask(offset_path, inside_npy, out_path, classes, rule: str = "any") -> dict:
    attrs = read_attrs(offset_path)
    bands, mask_band = attrs["bands"], attrs["mask_band"]
    names = bands + [mask_band] + ([f"{mask_band}_any"] if rule == "any" else [])
    data = read_arrays(offset_path, names)
    masked, valid = mask_arrays({b: data[b] for b in bands}, data[mask_band], classes, data.get(f"{mask_band}_any"))
    inside = np.load(inside_npy).astype(bool)
    n_inside = int(inside.sum())
    n_valid = int((valid & inside).sum())
    out = dict(attrs)
    out.update(
        stage="mask",
        mask={"band": mask_band, "classes": sorted(int(c) for c in classes), "rule": rule},
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
    """One batch folder of per-date stores."""
    from s2ts.batches import each_store

    p = smk.params
    each_store(smk.input.tiles, smk.output.tiles, lambda s, o: mask(s, smk.input.inside, o, p.classes, p.rule))
