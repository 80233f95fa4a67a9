"""Spectral indices (config ``indices``): normalised differences of two reflectance bands.

Each index is ``(a - b) / (a + b)`` of two Sentinel-2 L2A bands, computed per pixel
and date from the reflectance of the product it is written to (the gap-filled cube
for the NetCDF, the regular time steps for the regular product). Both bands carry
the same scale (DN = reflectance x 10000, offset already removed), so the ratio is
computed from the DN directly. It is NaN where it is undefined: a band value
missing, or a zero denominator (``a + b == 0``). Values are not clipped: a negative
reflectance (dark water after the processing-baseline offset is removed) can give a
value outside [-1, 1].

Import-light on purpose (numpy only): the configuration check reads :data:`INDICES`.
"""

from __future__ import annotations

import numpy as np

FILL_INT16 = -32768


class Index:
    """One normalised-difference index: ``(a - b) / (a + b)``."""

    def __init__(self, name, a, b, long_name, reference, standard_name=None):
        self.name, self.a, self.b = name, a, b
        self.long_name = long_name
        self.reference = reference
        self.standard_name = standard_name

    @property
    def bands(self) -> tuple[str, str]:
        return (self.a, self.b)

    @property
    def formula(self) -> str:
        return f"({self.a} - {self.b}) / ({self.a} + {self.b})"


INDICES = {
    ix.name: ix
    for ix in (
        Index(
            "NDWI",
            "B03",
            "B08",
            "normalized difference water index (McFeeters), green and near infrared",
            "McFeeters, S. K. (1996). The use of the Normalized Difference Water Index (NDWI) in the "
            "delineation of open water features. International Journal of Remote Sensing, 17(7), 1425-1432. "
            "https://doi.org/10.1080/01431169608948714",
        ),
        Index(
            "NDVI",
            "B08",
            "B04",
            "normalized difference vegetation index, near infrared and red",
            "Rouse, J. W., Haas, R. H., Schell, J. A., Deering, D. W. (1974). Monitoring vegetation systems in "
            "the Great Plains with ERTS. Third Earth Resources Technology Satellite-1 Symposium, NASA SP-351, "
            "Vol. 1, 309-317.",
            standard_name="normalized_difference_vegetation_index",
        ),
        Index(
            "MNDWI",
            "B03",
            "B11",
            "modified normalized difference water index (Xu), green and short-wave infrared 1",
            "Xu, H. (2006). Modification of normalised difference water index (NDWI) to enhance open water "
            "features in remotely sensed imagery. International Journal of Remote Sensing, 27(14), 3025-3033. "
            "https://doi.org/10.1080/01431160600589179",
        ),
        Index(
            "NDMI",
            "B08",
            "B11",
            "normalized difference moisture index, near infrared and short-wave infrared 1",
            "Gao, B.-C. (1996). NDWI - A normalized difference water index for remote sensing of vegetation "
            "liquid water from space. Remote Sensing of Environment, 58(3), 257-266. "
            "https://doi.org/10.1016/S0034-4257(96)00067-3 (the NIR/SWIR normalised difference); with the "
            "1.6 um short-wave infrared band and the name NDMI: Wilson, E. H., Sader, S. A. (2002). Detection "
            "of forest harvest type using multiple dates of Landsat TM imagery. Remote Sensing of Environment, "
            "80(3), 385-396. https://doi.org/10.1016/S0034-4257(01)00318-2",
        ),
    )
}


def missing_bands(indices, bands) -> dict[str, list[str]]:
    """``{index: [bands it needs that are not in bands]}`` for the indices that lack one."""
    have = set(bands)
    out = {}
    for name in indices:
        lack = [b for b in INDICES[name].bands if b not in have]
        if lack:
            out[name] = lack
    return out


def normalized_difference(a, b, fill: int | None = FILL_INT16) -> np.ndarray:
    """``(a - b) / (a + b)`` as float32: NaN where ``a`` or ``b`` is missing (``fill``
    for integer DN, NaN for floats) or where ``a + b == 0``.

    Computed in float32: int16 DN, their sum and difference are exact in float32, so
    the one division is the only rounding (half the memory of float64)."""
    a = np.asarray(a)
    b = np.asarray(b)
    fa = np.array(a, dtype=np.float32, ndmin=1)
    fb = np.array(b, dtype=np.float32, ndmin=1)
    if fill is not None and a.dtype.kind in "iu":
        fa[np.atleast_1d(a == fill)] = np.nan
    if fill is not None and b.dtype.kind in "iu":
        fb[np.atleast_1d(b == fill)] = np.nan
    den = fa + fb
    num = np.subtract(fa, fb, out=fa)
    den[den == 0] = np.nan
    with np.errstate(invalid="ignore"):
        out = np.divide(num, den, out=num)
    return out.reshape(np.broadcast_shapes(a.shape, b.shape))


def index_values(name: str, bands: dict, fill: int | None = FILL_INT16) -> np.ndarray:
    """The index ``name`` from a mapping band -> array (DN int16 with ``fill``, or floats)."""
    ix = INDICES[name]
    return normalized_difference(bands[ix.a], bands[ix.b], fill)


def index_attrs(name: str) -> dict:
    """CF attributes of an index variable: its formula and reference among them."""
    ix = INDICES[name]
    attrs = {
        "long_name": ix.long_name,
        "units": "1",
        "formula": ix.formula,
        "references": ix.reference,
        "comment": (
            f"{name} = {ix.formula}, from the surface reflectance of this file's {ix.a} and {ix.b} (DN, the "
            "scale cancels); NaN where a band value is missing or the denominator is zero. Not clipped: a "
            "negative reflectance can give a value outside [-1, 1]."
        ),
    }
    if ix.standard_name:
        attrs["standard_name"] = ix.standard_name
    return attrs
