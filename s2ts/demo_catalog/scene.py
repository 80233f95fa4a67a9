"""The clear-sky scene: land cover (coastlines, dune, built-up, beaches, water
channels and turbidity), textures and spectra, rendered at any points for one
acquisition's state. The same code renders the item pixels and :class:`Truth`."""

from __future__ import annotations

import functools
import math

import numpy as np
import shapely
from shapely.geometry import Polygon

from s2ts.demo_catalog.common import RES, UTM, _utm, _wkt, scene_grid
from s2ts.demo_catalog.state import BANK, BANK_CENTRE, SHRINK_PER_M, TIDE_CONSTITUENTS, TIDE_LOW, WET_WIDTH

BANDS = ("B03", "B04", "B08")  # the reflectance bands rendered, in this order

# class codes of the clear-sky scene
OUTSIDE, WATER, WET_SAND, DRY_SAND, DUNE, FOREST, BUILT = 0, 1, 2, 3, 4, 5, 6
CLASS_NAMES = {
    OUTSIDE: "outside the scene extent",
    WATER: "water (ocean, inlet channels, lagoon)",
    WET_SAND: "wet sand (emerged sandbank margin)",
    DRY_SAND: "dry sand (sandbank core, beaches)",
    DUNE: "dune sand (Dune du Pilat)",
    FOREST: "pine forest",
    BUILT: "built-up",
}
# SCL code of a clear pixel of each class (0 for outside)
CLASS_SCL = np.array([0, 6, 5, 5, 5, 4, 5], dtype=np.uint8)


# Coastlines, approximately (lon, lat). Polygons reach beyond the extent.
_CAP_FERRET = [
    (-1.2640, 44.700),
    (-1.2615, 44.660),
    (-1.2585, 44.645),
    (-1.2540, 44.633),
    (-1.2495, 44.6265),
    (-1.2450, 44.6270),
    (-1.2410, 44.6310),
    (-1.2385, 44.6390),
    (-1.2365, 44.6500),
    (-1.2350, 44.6650),
    (-1.2340, 44.700),
]
_MAINLAND = [
    (-1.2480, 44.500),
    (-1.2420, 44.530),
    (-1.2330, 44.555),
    (-1.2250, 44.575),
    (-1.2200, 44.590),
    (-1.2165, 44.603),
    (-1.2085, 44.620),
    (-1.1990, 44.633),
    (-1.1900, 44.643),
    (-1.1780, 44.652),
    (-1.1650, 44.657),
    (-1.1400, 44.660),
    (-1.1400, 44.500),
]
_DUNE = [
    (-1.2262, 44.5740),
    (-1.2210, 44.5880),
    (-1.2175, 44.6000),
    (-1.2140, 44.6040),
    (-1.2085, 44.6010),
    (-1.2070, 44.5900),
    (-1.2120, 44.5790),
    (-1.2200, 44.5720),
]
_BUILT = [
    [  # Cap Ferret village
        (-1.2500, 44.6330),
        (-1.2420, 44.6315),
        (-1.2380, 44.6450),
        (-1.2360, 44.6700),
        (-1.2470, 44.6700),
        (-1.2490, 44.6500),
    ],
    [  # Pyla-sur-Mer / Le Moulleau
        (-1.2160, 44.6055),
        (-1.2080, 44.6210),
        (-1.1980, 44.6345),
        (-1.1860, 44.6450),
        (-1.1750, 44.6530),
        (-1.1700, 44.6450),
        (-1.1850, 44.6330),
        (-1.1960, 44.6200),
        (-1.2060, 44.6060),
    ],
]


def _utm_polygon(lonlat: list[tuple[float, float]]) -> Polygon:
    return Polygon([_utm(lo, la) for lo, la in lonlat])


def build_scene() -> dict:
    """The static scene: polygons (EPSG:32630 WKT), textures, spectra. JSON-able."""
    grid = scene_grid()
    land = shapely.union(_utm_polygon(_CAP_FERRET), _utm_polygon(_MAINLAND))
    dune = _utm_polygon(_DUNE).intersection(land)
    built = shapely.union_all([_utm_polygon(p) for p in _BUILT]).intersection(land)
    beach = land.difference(land.buffer(-70.0, quad_segs=4)).difference(dune).difference(built)
    cx, cy = _utm(*BANK_CENTRE)
    return {
        "crs": UTM,
        "extent": [grid.x0, grid.y0, grid.x1, grid.y1],
        "resolution": RES,
        "land_wkt": _wkt(land),
        "dune_wkt": _wkt(dune),
        "built_wkt": _wkt(built),
        "beach_wkt": _wkt(beach),
        # texture = sum of amp * sin(2 pi (x cos a + y sin a) / wavelength + phase), x/y in UTM metres
        "texture_smooth": [
            [0.40, 2900.0, 20.0, 0.3],
            [0.30, 1700.0, 75.0, 1.1],
            [0.20, 1100.0, 130.0, 2.0],
            [0.10, 700.0, 160.0, 0.7],
        ],
        "texture_fine": [
            [0.40, 150.0, 10.0, 0.5],
            [0.35, 97.0, 100.0, 1.7],
            [0.25, 63.0, 55.0, 2.3],
        ],
        # relative texture amplitude per class code: [smooth, fine]
        "texture_amp": [[0.0, 0.0], [0.008, 0.0], [0.04, 0.0], [0.03, 0.0], [0.04, 0.0], [0.015, 0.0], [0.04, 0.015]],
        # clear-sky reflectance DN (B03, B04, B08) per class code before texture
        "spectra": [
            [0.0, 0.0, 0.0],
            [480.0, 260.0, 140.0],
            [1500.0, 1750.0, 2150.0],
            [2150.0, 2450.0, 2850.0],
            [2450.0, 2750.0, 3200.0],
            [420.0, 300.0, 2400.0],
            [1000.0, 1050.0, 1700.0],
        ],
        # water: + turbidity_factor * T(x, y) * turbid_delta; + shallow_delta over the
        # submerged part of the low-tide sandbank
        "water_turbid_delta": [520.0, 480.0, 160.0],
        "water_shallow_delta": [420.0, 360.0, 60.0],
        # inlet channels (passe nord, passe sud): deeper, darker water; polylines in UTM,
        # water DN *= 1 - strength * exp(-d^2 / (2 width^2)), d distance to the polyline
        "channels": [
            {
                "name": "passe nord",
                "xy": [
                    _utm(lo, la)
                    for lo, la in [
                        (-1.300, 44.602),
                        (-1.262, 44.6165),
                        (-1.243, 44.6215),
                        (-1.232, 44.640),
                        (-1.228, 44.665),
                    ]
                ],
                "width_m": 260.0,
                "strength": 0.22,
            },
            {
                "name": "passe sud",
                "xy": [
                    _utm(lo, la)
                    for lo, la in [(-1.275, 44.535), (-1.246, 44.565), (-1.2305, 44.590), (-1.2245, 44.612)]
                ],
                "width_m": 200.0,
                "strength": 0.18,
            },
        ],
        # T(x, y) = min(1, sum w * exp(-d^2 / (2 s^2))), d distance to (x, y) in metres
        "turbidity_sources": [
            [*_utm(-1.240, 44.622), 4500.0, 0.75],
            [*_utm(-1.205, 44.655), 4000.0, 0.70],
            [*_utm(-1.228, 44.585), 3000.0, 0.25],
        ],
        "bank": {**BANK, "centre": [cx, cy]},
        "tide_constituents": [list(c) for c in TIDE_CONSTITUENTS],
        "tide_low_m": TIDE_LOW,
        "shrink_per_m": SHRINK_PER_M,
        "wet_width_m": WET_WIDTH,
    }


def _texture(components, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    out = np.zeros(np.shape(x), dtype=np.float64)
    for amp, wl, ang, ph in components:
        a = math.radians(ang)
        k = 2.0 * math.pi / wl
        out += amp * np.sin((x * (k * math.cos(a)) + y * (k * math.sin(a))) + ph)
    return out.astype(np.float32)


@functools.lru_cache(maxsize=64)
def _geom(wkt: str):
    g = shapely.from_wkt(wkt)
    shapely.prepare(g)
    return g


def static_fields(scene: dict, x: np.ndarray, y: np.ndarray) -> dict:
    """Time-invariant fields at UTM points x, y (any shape).

    Static class (no sandbank), textures, and the static part of the reflectance
    ``dn0`` (3, *shape); water points get the clear-water value, their turbidity
    term is kept apart (``turbw``) because it is scaled per acquisition.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    cls = np.full(x.shape, WATER, dtype=np.uint8)
    land = shapely.contains_xy(_geom(scene["land_wkt"]), x, y)
    cls[land] = FOREST
    for key, code in (("built_wkt", BUILT), ("beach_wkt", DRY_SAND), ("dune_wkt", DUNE)):
        g = _geom(scene[key])
        sel = land & _in_bounds(g, x, y)
        if sel.any():
            inside = shapely.contains_xy(g, x[sel], y[sel])
            sub = cls[sel]
            sub[inside] = code
            cls[sel] = sub
    ts = _texture(scene["texture_smooth"], x, y)
    tf = _texture(scene["texture_fine"], x, y)
    spectra = np.asarray(scene["spectra"], dtype=np.float32)
    amp = np.asarray(scene["texture_amp"], dtype=np.float32)
    factor = 1.0 + amp[cls, 0] * ts + amp[cls, 1] * tf
    dn0 = np.ascontiguousarray(np.moveaxis(spectra[cls], -1, 0) * factor)  # (3, *shape)
    water = cls == WATER
    widx = np.flatnonzero(water)
    xw, yw = x.ravel()[widx], y.ravel()[widx]
    if widx.size:
        deep = np.ones(xw.shape, dtype=np.float64)
        for ch in scene["channels"]:
            d2 = _polyline_distance2(np.asarray(ch["xy"], dtype=np.float64), xw, yw)
            deep *= 1.0 - ch["strength"] * np.exp(-d2 / (2.0 * ch["width_m"] ** 2))
        ff = factor.reshape(-1)
        ff[widx] *= deep.astype(np.float32)
        dn0.reshape(3, -1)[:, widx] *= deep.astype(np.float32)
    turb = np.zeros(xw.shape, dtype=np.float64)
    for sx, sy, s, w in scene["turbidity_sources"]:
        turb += w * np.exp(-((xw - sx) ** 2 + (yw - sy) ** 2) / (2.0 * s * s))
    # turbidity term of water points (0 elsewhere), scaled per acquisition
    turbw = np.zeros(x.shape, dtype=np.float32)
    turbw.reshape(-1)[widx] = np.minimum(turb, 1.0).astype(np.float32) * factor.reshape(-1)[widx]
    return {
        "cls": cls,
        "ts": ts,
        "tf": tf,
        "dn0": dn0,
        "widx": widx,
        "xw": xw,
        "yw": yw,
        "turbw": turbw,
        "forest": (cls == FOREST).astype(np.float32),
    }


def _polyline_distance2(xy: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Squared distance from points to a polyline (analytic, vectorised)."""
    best = np.full(x.shape, np.inf)
    for (ax, ay), (bx, by) in zip(xy[:-1], xy[1:]):
        dx, dy = bx - ax, by - ay
        t = np.clip(((x - ax) * dx + (y - ay) * dy) / (dx * dx + dy * dy), 0.0, 1.0)
        best = np.minimum(best, (x - ax - t * dx) ** 2 + (y - ay - t * dy) ** 2)
    return best


def _in_bounds(g, x, y) -> np.ndarray:
    if g.is_empty:
        return np.zeros(np.shape(x), dtype=bool)
    minx, miny, maxx, maxy = g.bounds
    return (x >= minx) & (x <= maxx) & (y >= miny) & (y <= maxy)


def render(scene: dict, acq: dict, st: dict, bands: bool = True):
    """Clear-sky scene for acquisition state ``acq`` at the points of ``st``.

    ``st`` is :func:`static_fields` at the points. Returns ``(classes, dn)`` with
    ``dn`` a float32 array of shape (3, *shape) for B03, B04, B08 (DN =
    reflectance * 10000, no offset), or None if ``bands`` is False.
    """
    cls = st["cls"].copy()
    clsf = cls.reshape(-1)
    lowtide = _geom(acq["lowtide_wkt"])
    sand = _geom(acq["sand_wkt"])
    dry = _geom(acq["dry_sand_wkt"])
    sel = _in_bounds(lowtide, st["xw"], st["yw"])
    ci = st["widx"][sel]
    xc, yc = st["xw"][sel], st["yw"][sel]
    in_low = shapely.contains_xy(lowtide, xc, yc) if ci.size else np.zeros(0, dtype=bool)
    in_sand = np.zeros_like(in_low)
    in_sand[in_low] = shapely.contains_xy(sand, xc[in_low], yc[in_low])
    in_dry = np.zeros_like(in_low)
    in_dry[in_sand] = shapely.contains_xy(dry, xc[in_sand], yc[in_sand])
    clsf[ci[in_sand]] = WET_SAND
    clsf[ci[in_dry]] = DRY_SAND
    if not bands:
        return cls, None
    spectra = np.asarray(scene["spectra"], dtype=np.float32)
    amp = np.asarray(scene["texture_amp"], dtype=np.float32)
    dn = np.empty(st["dn0"].shape, dtype=np.float32)
    tw = np.float32(acq["turbidity_factor"]) * st["turbw"]
    forest = st["forest"]
    for k, key in ((0, None), (1, "forest_red_factor"), (2, "forest_nir_factor")):
        np.multiply(tw, np.float32(scene["water_turbid_delta"][k]), out=dn[k])
        dn[k] += st["dn0"][k]
        if key:
            dn[k] *= 1.0 + np.float32(acq[key] - 1.0) * forest
    dnf = dn.reshape(3, -1)
    shallow = ci[in_low & ~in_sand]
    if shallow.size:
        fw = 1.0 + amp[WATER, 0] * st["ts"].reshape(-1)[shallow]
        for k in range(3):
            dnf[k, shallow] += np.float32(scene["water_shallow_delta"][k]) * fw
    sidx = ci[in_sand]
    if sidx.size:
        c = clsf[sidx]
        f = 1.0 + amp[c, 0] * st["ts"].reshape(-1)[sidx] + amp[c, 1] * st["tf"].reshape(-1)[sidx]
        dnf[:, sidx] = spectra[c].T * f
    return cls, dn
