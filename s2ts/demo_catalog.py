"""Embedded, offline demo catalog: synthetic Sentinel-2 L2A items over the Arcachon inlet.

:func:`generate_demo_catalog` writes a static STAC catalog that behaves like the
Planetary Computer ``sentinel-2-l2a`` collection (item ids, properties, COG
assets B03/B04/B08 at 10 m and SCL at 20 m, processing baselines and the
PB >= 04.00 radiometric offset, two relative orbits, one of them a partial
swath, reprocessing duplicates, a neighbouring MGRS tile on a few dates, clouds,
shadows and cirrus) plus the clear-sky ground truth the pixels were rendered
from (``truth/truth.json``). :func:`load_truth` reads it back;
:class:`Truth` renders the clear-sky scene at arbitrary points with the very
code that rendered the item pixels.

Layout of ``out_dir``::

    catalog.json                       STAC Catalog "s2ts-demo"
    sentinel-2-l2a/collection.json     STAC Collection "sentinel-2-l2a"
    sentinel-2-l2a/<id>/<id>.json      STAC Items (relative links and hrefs)
    sentinel-2-l2a/<id>/{B03,B04,B08,SCL}.tif   COGs
    truth/truth.json                   scene definition + per-acquisition state

Land-cover class codes of the clear-sky scene (:meth:`Truth.classes`):
0 outside the scene extent, 1 water (ocean, inlet, lagoon), 2 wet sand,
3 dry sand (sandbank core, beaches), 4 dune sand (Dune du Pilat),
5 pine forest, 6 built-up. See ``docs/demo_catalog.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import json
import logging
import math
import multiprocessing
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import shapely
from pyproj import CRS, Transformer
from shapely.geometry import Polygon, box
from shapely.geometry.polygon import orient

from s2ts.errors import UserError
from s2ts.io import atomic_path, dumps_json

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------
# Constants
# ---------------------------------------------------------------------------

EPSG = 32630
UTM = "EPSG:32630"
MGRS_TILE = "30TXQ"
NORTH_TILE = "30TXR"  # neighbouring MGRS tile, covers the northern part of the extent
LONLAT_BOUNDS = (-1.30, 44.535, -1.18, 44.66)  # lon_min, lat_min, lon_max, lat_max
RES = 10
SNAP = 60
NORTH_TILE_SOUTH_EDGE = 4941000.0  # northing of the 30TXR item's southern edge (multiple of 60)
COLLECTION_ID = "sentinel-2-l2a"
CATALOG_ID = "s2ts-demo"
STAC_VERSION = "1.0.0"
COG_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"
BANDS = ("B03", "B04", "B08")
OFFSET_BASELINE = (4, 0)  # PB >= 04.00 carries DN = reflectance * 10000 + 1000
BOA_OFFSET = 1000
SAT_MAX = 65535

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

# Rendering/encoding knobs (see docs/demo_catalog.md for the budget trade-offs)
NOISE_SIGMA = 0.3  # DN, Gaussian sensor noise on item pixels only (budget: see docs)
DEFLATE_LEVEL = 3  # libdeflate: level 3 ~6 % smaller than 1 for ~20 % more write time; 6 is 3x slower
COG_BLOCK = 512
CLOUD_CELL = 120.0  # m, resolution at which clouds are simulated
CLOUD_PAD = 6000.0  # m, margin around the extent so clouds outside it can cast shadows into it
CLOUD_EDGE = 0.04  # width of the cloud edge ramp, in standard deviations of the cloud field
NOISE_PAD = 64

# Sentinel-2 platforms with an orbit-number anchor (an acquisition: sensing time,
# absolute orbit, relative orbit; real for S2A and S2B) so that the absolute orbit
# numbers in datatake/granule ids are consistent with the relative orbit.
PLATFORMS = {
    "S2A": {"name": "Sentinel-2A", "anchor": ("2020-07-31T08:06:11", 26673, 78)},
    "S2B": {"name": "Sentinel-2B", "anchor": ("2024-12-03T17:46:29", 40450, 98)},
    "S2C": {"name": "Sentinel-2C", "anchor": ("2025-01-24T11:04:41", 2020, 94)},
}
S2A_FIRST = dt.date(2015, 6, 27)
S2B_FIRST = dt.date(2017, 7, 6)
S2C_TAKEOVER = dt.date(2025, 1, 21)  # S2C takes over S2A's orbital phase
# Relative orbits: R094 covers the whole extent; R137 passes 2 days after R094 and
# only covers the eastern part (partial swath).
ORBITS = {
    94: {"day_offset": 0, "time": (11, 4, 41), "partial": False},
    137: {"day_offset": 2, "time": (10, 56, 21), "partial": True},
}
# S2A (then S2C) and S2B have a 10-day repeat each, offset by 5 days.
PHASE_ANCHORS = {"A": dt.date(2021, 1, 3), "B": dt.date(2021, 1, 8)}
# Partial swath of R137: straight edge at an angle, covered side = east of it.
SWATH_EDGE_LONLAT = (-1.240, 44.60)
SWATH_EDGE_AZIMUTH_DEG = 12.5  # edge direction, degrees clockwise from grid north

# Processing baseline by sensing date (first date of each baseline), approximately as
# in the Copernicus ground segment; before 2017-04-27: 02.04.
BASELINES = [
    (dt.date(2015, 1, 1), "02.04"),
    (dt.date(2017, 4, 27), "02.05"),
    (dt.date(2017, 10, 23), "02.06"),
    (dt.date(2018, 11, 6), "02.07"),
    (dt.date(2019, 7, 8), "02.08"),
    (dt.date(2020, 1, 28), "02.09"),
    (dt.date(2021, 6, 30), "03.00"),
    (dt.date(2021, 11, 16), "03.01"),
    (dt.date(2022, 1, 25), "04.00"),
    (dt.date(2022, 12, 6), "05.09"),
    (dt.date(2023, 12, 13), "05.10"),
    (dt.date(2024, 7, 23), "05.11"),
]
PB_SWITCH_DATE = dt.date(2022, 1, 25)
COLLECTION1_BASELINE = "05.00"  # Collection-1 reprocessing of pre-2022 data
DUPLICATE_PROBABILITY = 0.02
NORTH_TILE_PROBABILITY = 0.04

# Tide (harmonic constituents, amplitude m, period h, phase rad at TIDE_EPOCH)
TIDE_EPOCH = dt.datetime(2021, 1, 1, tzinfo=dt.UTC)
TIDE_CONSTITUENTS = [
    ("M2", 1.55, 12.4206012, 0.40),
    ("S2", 0.52, 12.0, 1.90),
    ("N2", 0.31, 12.65834751, 5.10),
    ("K1", 0.07, 23.93447213, 2.20),
    ("O1", 0.06, 25.81934171, 0.80),
]
TIDE_LOW = -sum(c[1] for c in TIDE_CONSTITUENTS)  # lowest possible level, m
SHRINK_PER_M = 150.0  # m of horizontal retreat of the waterline per m of tide
WET_WIDTH = 100.0  # m, wet margin of the emerged sandbank


# ---------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Grid:
    x0: float
    y0: float
    x1: float
    y1: float
    res: float = RES

    @property
    def width(self) -> int:
        return int(round((self.x1 - self.x0) / self.res))

    @property
    def height(self) -> int:
        return int(round((self.y1 - self.y0) / self.res))

    def centres(self, res: float | None = None):
        res = res or self.res
        xs = self.x0 + (np.arange(int(round((self.x1 - self.x0) / res))) + 0.5) * res
        ys = self.y1 - (np.arange(int(round((self.y1 - self.y0) / res))) + 0.5) * res
        return xs, ys


@functools.cache
def _transformer(src: str, dst: str) -> Transformer:
    return Transformer.from_crs(src, dst, always_xy=True)


_lonlat_bounds = LONLAT_BOUNDS  # the generated extent (generate_demo_catalog's extent_km)


def extent_bounds(extent_km: float) -> tuple[float, float, float, float]:
    """A square of ``extent_km`` (UTM 30N) centred on the default scene, as lon/lat
    bounds: larger scenes for scale benchmarks (the land cover polygons reach
    beyond the default extent; further out everything is open water)."""
    t = _transformer("EPSG:4326", UTM)
    xmin, ymin, xmax, ymax = t.transform_bounds(*LONLAT_BOUNDS, densify_pts=21)
    cx, cy, h = (xmin + xmax) / 2, (ymin + ymax) / 2, extent_km * 500.0
    return _transformer(UTM, "EPSG:4326").transform_bounds(cx - h, cy - h, cx + h, cy + h, densify_pts=21)


@functools.lru_cache(maxsize=1)
def scene_grid() -> Grid:
    """The UTM 30N grid of the scene: the lon/lat box snapped outward to 60 m."""
    t = _transformer("EPSG:4326", UTM)
    xmin, ymin, xmax, ymax = t.transform_bounds(*_lonlat_bounds, densify_pts=21)
    return Grid(
        float(math.floor(xmin / SNAP) * SNAP),
        float(math.floor(ymin / SNAP) * SNAP),
        float(math.ceil(xmax / SNAP) * SNAP),
        float(math.ceil(ymax / SNAP) * SNAP),
    )


def _utm(lon: float, lat: float) -> tuple[float, float]:
    return _transformer("EPSG:4326", UTM).transform(lon, lat)


def _utm_polygon(lonlat: list[tuple[float, float]]) -> Polygon:
    return Polygon([_utm(lo, la) for lo, la in lonlat])


def _wkt(geom) -> str:
    return shapely.to_wkt(geom, rounding_precision=2, trim=True)


def pb_tuple(pb: str) -> tuple[int, ...]:
    return tuple(int(p) for p in pb.split("."))


def has_offset(pb: str) -> bool:
    """True if pixels of this processing baseline carry the +1000 DN offset."""
    return pb_tuple(pb) >= OFFSET_BASELINE


def baseline_for(date: dt.date) -> str:
    pb = BASELINES[0][1]
    for first, name in BASELINES:
        if date >= first:
            pb = name
    return pb


def _parse_date(value, name: str) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value)[:10])
    except ValueError:
        raise UserError(f"demo catalog: {name}={value!r} is not an ISO date; use YYYY-MM-DD") from None


def _iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _stamp(t: dt.datetime) -> str:
    return t.strftime("%Y%m%dT%H%M%S")


def _rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, *[int(k) for k in keys]])


def _year_fraction(t: dt.datetime) -> float:
    return (t - TIDE_EPOCH).total_seconds() / (365.25 * 86400.0)


def _season(t: dt.datetime, peak_doy: float) -> float:
    doy = t.timetuple().tm_yday + t.hour / 24.0
    return math.cos(2.0 * math.pi * (doy - peak_doy) / 365.25)


def tide_level(t: dt.datetime) -> float:
    """Tide level (m above mean sea level) at the inlet at time ``t`` (UTC)."""
    hours = (t - TIDE_EPOCH).total_seconds() / 3600.0
    return float(sum(a * math.cos(2.0 * math.pi * hours / period - ph) for _, a, period, ph in TIDE_CONSTITUENTS))


def sun_position(t: dt.datetime, lon: float, lat: float) -> tuple[float, float]:
    """Solar zenith and azimuth (degrees, azimuth clockwise from north), NOAA approximation."""
    doy = t.timetuple().tm_yday
    hour = t.hour + t.minute / 60.0 + t.second / 3600.0
    g = 2.0 * math.pi / 365.0 * (doy - 1 + (hour - 12.0) / 24.0)
    eqtime = 229.18 * (
        0.000075
        + 0.001868 * math.cos(g)
        - 0.032077 * math.sin(g)
        - 0.014615 * math.cos(2 * g)
        - 0.040849 * math.sin(2 * g)
    )
    decl = (
        0.006918
        - 0.399912 * math.cos(g)
        + 0.070257 * math.sin(g)
        - 0.006758 * math.cos(2 * g)
        + 0.000907 * math.sin(2 * g)
        - 0.002697 * math.cos(3 * g)
        + 0.00148 * math.sin(3 * g)
    )
    tst = hour * 60.0 + eqtime + 4.0 * lon
    ha = math.radians(tst / 4.0 - 180.0)
    la = math.radians(lat)
    cosz = math.sin(la) * math.sin(decl) + math.cos(la) * math.cos(decl) * math.cos(ha)
    zen = math.degrees(math.acos(max(-1.0, min(1.0, cosz))))
    az = math.degrees(math.atan2(math.sin(ha), math.cos(ha) * math.sin(la) - math.tan(decl) * math.cos(la))) + 180.0
    return zen, az % 360.0


def _reflectance_conversion_factor(t: dt.datetime) -> float:
    doy = t.timetuple().tm_yday
    return 1.0 / (1.0 - 0.01673 * math.cos(0.0172 * (doy - 4))) ** 2


# ---------------------------------------------------------------------------
# Scene definition (saved verbatim in truth.json; rendering reads only this)
# ---------------------------------------------------------------------------

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
# Sandbank (Banc d'Arguin) reference centre and motion
_BANK_CENTRE = (-1.2505, 44.5905)
BANK = {
    "semi_major_m": 2150.0,  # along the bank, at the lowest tide
    "semi_minor_m": 1000.0,
    "orientation_deg": -15.0,  # long axis, degrees clockwise from north
    "orientation_amp_deg": 6.0,
    "orientation_period_yr": 7.3,
    "major_amp": 0.06,
    "major_period_yr": 4.1,
    "minor_amp": 0.08,
    "minor_period_yr": 3.3,
    # slow migration on a 30-year loop of radius 700 m (~150 m/yr), bounded for any date
    "loop_radius_m": 700.0,
    "loop_period_yr": 30.0,
    "loop_phase_deg": 200.0,
    # shape harmonics: (k, amplitude, phase at epoch, period of phase drift in years)
    "harmonics": [(2, 0.05, 0.6, 9.0), (3, 0.06, 2.2, 6.5), (5, 0.025, 4.0, 5.3)],
    "vertices": 96,
}


def build_scene() -> dict:
    """The static scene: polygons (EPSG:32630 WKT), textures, spectra. JSON-able."""
    grid = scene_grid()
    land = shapely.union(_utm_polygon(_CAP_FERRET), _utm_polygon(_MAINLAND))
    dune = _utm_polygon(_DUNE).intersection(land)
    built = shapely.union_all([_utm_polygon(p) for p in _BUILT]).intersection(land)
    beach = land.difference(land.buffer(-70.0, quad_segs=4)).difference(dune).difference(built)
    cx, cy = _utm(*_BANK_CENTRE)
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


# ---------------------------------------------------------------------------
# Per-acquisition scene state: tide, sandbank, seasonal factors
# ---------------------------------------------------------------------------


def _bank_lowtide(bank: dict, t: dt.datetime) -> Polygon:
    yr = _year_fraction(t)
    w = 2.0 * math.pi / bank["loop_period_yr"]
    ph0 = math.radians(bank["loop_phase_deg"])
    r = bank["loop_radius_m"]
    cx = bank["centre"][0] + r * (math.cos(w * yr + ph0) - math.cos(ph0))
    cy = bank["centre"][1] + r * (math.sin(w * yr + ph0) - math.sin(ph0))
    rot = math.radians(
        bank["orientation_deg"]
        + bank["orientation_amp_deg"] * math.sin(2 * math.pi * yr / bank["orientation_period_yr"])
    )
    a = bank["semi_major_m"] * (1 + bank["major_amp"] * math.sin(2 * math.pi * yr / bank["major_period_yr"] + 1.0))
    b = bank["semi_minor_m"] * (1 + bank["minor_amp"] * math.sin(2 * math.pi * yr / bank["minor_period_yr"] + 2.0))
    phi = np.linspace(0.0, 2.0 * math.pi, bank["vertices"], endpoint=False)
    pert = np.ones_like(phi)
    for k, amp, ph, period in bank["harmonics"]:
        pert += amp * np.cos(k * phi + ph + 2 * math.pi * yr / period)
    # local frame: u along the long axis (north at rot=0), v across
    u = a * np.cos(phi) * pert
    v = b * np.sin(phi) * pert
    xs = cx + v * math.cos(rot) + u * math.sin(rot)
    ys = cy - v * math.sin(rot) + u * math.cos(rot)
    return Polygon(np.column_stack([xs, ys]))


def _largest(geom) -> Polygon:
    if geom.geom_type == "Polygon":
        return geom
    parts = [g for g in getattr(geom, "geoms", []) if g.geom_type == "Polygon" and not g.is_empty]
    return max(parts, key=lambda g: g.area) if parts else Polygon()


def acquisition_state(scene: dict, t: dt.datetime, seed: int, key: tuple[int, ...]) -> dict:
    """Scene state at sensing time ``t``: tide, sandbank polygons, seasonal factors."""
    bank = scene["bank"]
    low = _bank_lowtide(bank, t)
    tide = tide_level(t)
    shrink = max(0.0, (tide - scene["tide_low_m"]) * scene["shrink_per_m"])
    sand = _largest(low.buffer(-shrink, quad_segs=4)) if shrink > 0 else low
    dry = sand.buffer(-scene["wet_width_m"], quad_segs=4)
    rng = _rng(seed, *key, 2)
    turb = 0.85 + 0.30 * _season(t, 20.0) + 0.12 * float(rng.standard_normal())
    low_wkt, sand_wkt = _wkt(low), _wkt(sand)
    sand_rt = shapely.from_wkt(sand_wkt)
    return {
        "tide_m": round(tide, 4),
        "lowtide_wkt": low_wkt,
        "sand_wkt": sand_wkt,
        "dry_sand_wkt": _wkt(dry),
        "sand_area_km2": round(sand_rt.area / 1e6, 6),
        "sand_centroid": [round(sand_rt.centroid.x, 2), round(sand_rt.centroid.y, 2)],
        "turbidity_factor": round(min(1.5, max(0.3, turb)), 4),
        "forest_nir_factor": round(1.0 + 0.12 * _season(t, 196.0), 4),
        "forest_red_factor": round(1.0 - 0.10 * _season(t, 196.0), 4),
    }


# ---------------------------------------------------------------------------
# Acquisition plan: datatakes, items, ids, baselines
# ---------------------------------------------------------------------------


@dataclass
class ItemPlan:
    id: str
    tile: str
    baseline: str
    generation: dt.datetime
    row0: int = 0  # first 10 m row of the item's window in the scene grid
    rows: int = 0  # number of 10 m rows
    reprocessing: bool = False


@dataclass
class Datatake:
    platform: str
    orbit: int
    sensing: dt.datetime
    abs_orbit: int
    items: list[ItemPlan] = field(default_factory=list)
    key: tuple[int, int] = (0, 0)
    state: dict = field(default_factory=dict)
    sun: tuple[float, float] = (0.0, 0.0)

    @property
    def partial(self) -> bool:
        return ORBITS[self.orbit]["partial"]


def _abs_orbit(platform: str, t: dt.datetime, rel: int) -> int:
    at, aabs, arel = PLATFORMS[platform]["anchor"]
    at = dt.datetime.fromisoformat(at).replace(tzinfo=dt.UTC)
    est = aabs + (t - at).total_seconds() / (86400.0 * 10.0 / 143.0)
    # relative orbit = ((abs + k) mod 143) + 1 with k fixed by the anchor
    k = (arel - 1 - aabs) % 143
    target = (rel - 1 - k) % 143
    n = round((est - target) / 143.0)
    return max(1, int(n * 143 + target))


def _site(platform: str, pb: str) -> str:
    return "ESRI" if pb_tuple(pb) < (3, 0) else f"{platform[1:]}PS"


def _product_ids(dtk: Datatake, item: ItemPlan) -> dict:
    pb = item.baseline
    gen2 = item.generation + dt.timedelta(seconds=7)
    site = _site(dtk.platform, pb)
    ds_start = dtk.sensing + dt.timedelta(seconds=64)
    return {
        "s2:product_uri": (
            f"{dtk.platform}_MSIL2A_{_stamp(dtk.sensing)}_N{pb.replace('.', '')}_R{dtk.orbit:03d}_T{item.tile}_"
            f"{_stamp(item.generation)}.SAFE"
        ),
        "s2:datatake_id": f"G{dtk.platform}_{_stamp(dtk.sensing)}_{dtk.abs_orbit:06d}_N{pb}",
        "s2:granule_id": f"{dtk.platform}_OPER_MSI_L2A_TL_{site}_{_stamp(gen2)}_A{dtk.abs_orbit:06d}_T{item.tile}_N{pb}",
        "s2:datastrip_id": f"{dtk.platform}_OPER_MSI_L2A_DS_{site}_{_stamp(gen2)}_S{_stamp(ds_start)}_N{pb}",
    }


def item_id(platform: str, sensing: dt.datetime, orbit: int, tile: str, generation: dt.datetime) -> str:
    return f"{platform}_MSIL2A_{_stamp(sensing)}_R{orbit:03d}_T{tile}_{_stamp(generation)}"


def _generation(pb: str, sensing: dt.datetime, rng: np.random.Generator) -> dt.datetime:
    if pb_tuple(pb) < (3, 0):  # bulk-processed later
        delta = dt.timedelta(days=float(rng.uniform(1.0, 20.0)))
    else:
        delta = dt.timedelta(hours=float(rng.uniform(2.0, 16.0)))
    return (sensing + delta).replace(microsecond=0)


def _r094_date_near(day: dt.date, after: bool) -> dt.date:
    """First R094 acquisition date on/after ``day`` (or last one before it)."""
    best = []
    for anchor in PHASE_ANCHORS.values():
        k = (day - anchor).days / 10.0
        k = math.ceil(k) if after else math.floor(k - 1e-9)
        best.append(anchor + dt.timedelta(days=10 * k))
    return min(best) if after else max(best)


def plan_datatakes(start: dt.date, end: dt.date, seed: int) -> list[Datatake]:
    """All datatakes with sensing date in [start, end), in time order, with their items."""
    grid = scene_grid()
    north_rows = int(round((grid.y1 - NORTH_TILE_SOUTH_EDGE) / RES))
    out: list[Datatake] = []
    for phase, anchor in PHASE_ANCHORS.items():
        for orbit, spec in ORBITS.items():
            first = anchor + dt.timedelta(days=spec["day_offset"])
            k0 = math.floor((start - first).days / 10)
            k1 = math.ceil((end - first).days / 10)
            for k in range(k0, k1 + 1):
                day = first + dt.timedelta(days=10 * k)
                if not (start <= day < end):
                    continue
                if phase == "A":
                    if day < S2A_FIRST:
                        continue
                    platform = "S2A" if day < S2C_TAKEOVER else "S2C"
                else:
                    if day < S2B_FIRST:
                        continue
                    platform = "S2B"
                key = (day.toordinal(), orbit)
                rng = _rng(seed, *key, 1)
                h, m, s = spec["time"]
                sensing = dt.datetime(day.year, day.month, day.day, h, m, s, 24000, tzinfo=dt.UTC)
                sensing += dt.timedelta(seconds=int(rng.integers(0, 20)))
                out.append(
                    Datatake(
                        platform=platform,
                        orbit=orbit,
                        sensing=sensing,
                        abs_orbit=_abs_orbit(platform, sensing, orbit),
                        key=key,
                    )
                )
    out.sort(key=lambda d: d.sensing)

    # the first full-swath datatake on/after the baseline switch gets a two-tile pair
    # with different baselines (03.01 on the neighbouring tile, 04.00 on ours)
    # (both chosen on the global schedule, so the item set does not depend on the period)
    forced_pair = _r094_date_near(PB_SWITCH_DATE, after=True)
    # the last full-swath datatake before the switch always has a Collection-1 reprocessing
    forced_c1 = _r094_date_near(PB_SWITCH_DATE, after=False)

    for d in out:
        rng = _rng(seed, *d.key, 1)
        rng.integers(0, 20)  # the sensing jitter drawn above
        pb = baseline_for(d.sensing.date())
        gen = _generation(pb, d.sensing, rng)
        main = ItemPlan(item_id(d.platform, d.sensing, d.orbit, MGRS_TILE, gen), MGRS_TILE, pb, gen, 0, grid.height)
        d.items.append(main)
        # duplicates and two-tile dates: a seeded Weyl sequence over the datatakes, so the
        # shares are close to the nominal ones in any period (not just on average)
        idx = 2 * d.key[0] + (d.orbit == 137)
        u_dup = (idx * 0.6180339887498949 + seed * 0.7548776662466927) % 1.0
        u_north = (idx * 0.4142135623730951 + seed * 0.5698402909980532 + 0.5) % 1.0
        u_c1 = rng.random()
        is_c1 = d.orbit == 94 and d.sensing.date() == forced_c1
        is_pair = d.orbit == 94 and d.sensing.date() == forced_pair
        if u_dup < DUPLICATE_PROBABILITY or is_c1:
            collection1 = d.sensing.date() < PB_SWITCH_DATE and (u_c1 < 0.5 or is_c1)
            if collection1:
                pb2 = COLLECTION1_BASELINE
                gen2 = dt.datetime(2023, 6, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=float(rng.uniform(0, 300 * 86400)))
            else:
                pb2 = pb
                gen2 = gen + dt.timedelta(seconds=float(rng.uniform(2 * 86400, 40 * 86400)))
            gen2 = gen2.replace(microsecond=0)
            d.items.append(
                ItemPlan(
                    item_id(d.platform, d.sensing, d.orbit, MGRS_TILE, gen2),
                    MGRS_TILE,
                    pb2,
                    gen2,
                    0,
                    grid.height,
                    reprocessing=True,
                )
            )
        if u_north < NORTH_TILE_PROBABILITY or is_pair:
            pb3 = "03.01" if is_pair else pb
            gen3 = (gen + dt.timedelta(seconds=float(rng.uniform(60, 3600)))).replace(microsecond=0)
            d.items.append(
                ItemPlan(
                    item_id(d.platform, d.sensing, d.orbit, NORTH_TILE, gen3), NORTH_TILE, pb3, gen3, 0, north_rows
                )
            )
    return out


# ---------------------------------------------------------------------------
# Rendering of one datatake (runs in worker processes)
# ---------------------------------------------------------------------------

_STATIC: dict = {}


def _prepare_static(scene: dict, seed: int) -> dict:
    """Fields computed once per run and shared with forked workers."""
    grid = scene_grid()
    xs10, ys10 = grid.centres(RES)
    xs20, ys20 = grid.centres(2 * RES)
    x10, y10 = np.meshgrid(xs10, ys10)
    x20, y20 = np.meshgrid(xs20, ys20)
    assert x10.shape == (2 * x20.shape[0], 2 * x20.shape[1])
    st10 = static_fields(scene, x10, y10)
    st20 = static_fields(scene, x20, y20)
    # partial swath masks (R137): covered side of a straight edge
    ex, ey = _utm(*SWATH_EDGE_LONLAT)
    az = math.radians(SWATH_EDGE_AZIMUTH_DEG)
    nx, ny = math.cos(az), -math.sin(az)  # normal pointing east of the edge
    # validity is decided at 20 m and shared by the four 10 m pixels, so SCL == 0
    # exactly where the reflectance bands are 0
    swath20 = ((x20 - ex) * nx + (y20 - ey) * ny) >= 0.0
    swath10 = np.repeat(np.repeat(swath20, 2, axis=0), 2, axis=1)
    # bilinear upsampling indices from the padded cloud grid to the 10 m grid
    px0, py1 = grid.x0 - CLOUD_PAD, grid.y1 + CLOUD_PAD
    ncx = int(math.ceil((grid.x1 - grid.x0 + 2 * CLOUD_PAD) / CLOUD_CELL))
    ncy = int(math.ceil((grid.y1 - grid.y0 + 2 * CLOUD_PAD) / CLOUD_CELL))
    fc = (xs10 - px0) / CLOUD_CELL - 0.5
    fr = (py1 - ys10) / CLOUD_CELL - 0.5
    c0 = np.floor(fc).astype(np.intp)
    r0 = np.floor(fr).astype(np.intp)
    # cloud-grid cells overlapping the extent (for coverage quantiles)
    ext_rows = slice(int(CLOUD_PAD // CLOUD_CELL), int(math.ceil((CLOUD_PAD + grid.y1 - grid.y0) / CLOUD_CELL)))
    ext_cols = slice(int(CLOUD_PAD // CLOUD_CELL), int(math.ceil((CLOUD_PAD + grid.x1 - grid.x0) / CLOUD_CELL)))
    # integer-valued Gaussian noise bank; each datatake uses a seeded window of it
    noise = np.rint(
        _rng(seed, 7).standard_normal((3, grid.height + NOISE_PAD, grid.width + NOISE_PAD), dtype=np.float32)
        * np.float32(NOISE_SIGMA)
    )
    return {
        "scene": scene,
        "grid": grid,
        "st10": st10,
        "st20": st20,
        "swath10": swath10,
        "swath20": swath20,
        "cloud_shape": (ncy, ncx),
        "up_c0": c0,
        "up_wc": (fc - c0).astype(np.float32),
        "up_r0": r0,
        "up_wr": (fr - r0).astype(np.float32),
        "ext_rows": ext_rows,
        "ext_cols": ext_cols,
        "noise": noise,
        "seed": seed,
    }


def _gaussian_field(rng: np.random.Generator, shape, scale_m: float) -> np.ndarray:
    ny, nx = shape
    fy = 1 << (ny - 1).bit_length()
    fx = 1 << (nx - 1).bit_length()
    white = rng.standard_normal((fy, fx))
    ky = np.fft.fftfreq(fy, d=CLOUD_CELL)[:, None]
    kx = np.fft.rfftfreq(fx, d=CLOUD_CELL)[None, :]
    k2 = (kx * kx + ky * ky) * scale_m * scale_m
    f = np.fft.irfft2(np.fft.rfft2(white) * (1.0 + k2) ** -1.5, s=(fy, fx))[:ny, :nx]
    return (f - f.mean()) / (f.std() + 1e-12)


def _upsample(s: dict, a: np.ndarray) -> np.ndarray:
    """Bilinear interpolation of a cloud-grid field at the 10 m pixel centres."""
    r0, wr, c0, wc = s["up_r0"], s["up_wr"][:, None], s["up_c0"], s["up_wc"][None, :]
    a = a.astype(np.float32)
    rows = a[r0] * (1.0 - wr) + a[r0 + 1] * wr
    return rows[:, c0] * (1.0 - wc) + rows[:, c0 + 1] * wc


def _shift(a: np.ndarray, dr: int, dc: int, fill: float = 0.0) -> np.ndarray:
    out = np.full_like(a, fill)
    ny, nx = a.shape
    rs, rd = (slice(0, ny - dr), slice(dr, ny)) if dr >= 0 else (slice(-dr, ny), slice(0, ny + dr))
    cs, cd = (slice(0, nx - dc), slice(dc, nx)) if dc >= 0 else (slice(-dc, nx), slice(0, nx + dc))
    out[rd, cd] = a[rs, cs]
    return out


def cloud_fields(s: dict, seed: int, key, t: dt.datetime, sun: tuple[float, float]) -> dict:
    """Seeded cloud opacity, cirrus and shadow fields on the 10 m grid (None = absent)."""
    rng = _rng(seed, *key, 3)
    shape = s["cloud_shape"]
    er, ec = s["ext_rows"], s["ext_cols"]
    season = _season(t, 200.0)  # +1 mid-July
    p_clear = 0.36 + 0.12 * season
    p_few = 0.19
    p_partly = 0.22
    u = rng.random()
    if u < p_clear:
        regime, cov = "clear", (rng.uniform(0.0, 0.03) if rng.random() < 0.35 else 0.0)
    elif u < p_clear + p_few:
        regime, cov = "few", rng.uniform(0.03, 0.16)
    elif u < p_clear + p_few + p_partly:
        regime, cov = "partly", rng.uniform(0.2, 0.75)
    else:
        regime, cov = "overcast", rng.uniform(0.8, 1.0)
    scale = rng.uniform(2500.0, 7000.0)
    brightness = rng.uniform(0.85, 1.1)
    cirrus_p = rng.random()
    cirrus_cov = rng.uniform(0.1, 0.8)
    cirrus_scale = rng.uniform(4000.0, 10000.0)
    cirrus_max = rng.uniform(0.15, 0.4)
    height = rng.uniform(800.0, 2500.0)
    out = {"regime": regime, "alpha": None, "beta": None, "shadow": None, "brightness": brightness}
    if cov > 0.0:
        f = _gaussian_field(rng, shape, scale)
        q = np.quantile(f[er, ec], 1.0 - cov)
        # the smooth field is interpolated to 10 m *before* thresholding, so cloud
        # edges are sharp (a few pixels) rather than 120 m ramps: cheaper to compress
        zen, az = sun
        length = height * math.tan(math.radians(min(zen, 75.0)))
        dx = -math.sin(math.radians(az)) * length
        dy = -math.cos(math.radians(az)) * length
        shadow = _shift(f - q, int(round(-dy / CLOUD_CELL)), int(round(dx / CLOUD_CELL)), fill=-10.0)
        out["alpha"] = np.clip(_upsample(s, f - q) * np.float32(1.0 / CLOUD_EDGE), 0.0, 1.0)
        out["shadow"] = np.clip(_upsample(s, shadow) * np.float32(1.0 / CLOUD_EDGE), 0.0, 1.0)
    if cirrus_p < 0.18:
        g = _gaussian_field(rng, shape, cirrus_scale)
        q2 = np.quantile(g[er, ec], 1.0 - cirrus_cov)
        out["beta"] = _upsample(s, np.clip((g - q2) / 1.0, 0.0, 1.0) * cirrus_max)
    return out


CLOUD_DN = np.array([7000.0, 7200.0, 7600.0], dtype=np.float32)
CIRRUS_DN = np.array([3000.0, 3000.0, 3100.0], dtype=np.float32)
SHADOW_DARKENING = 0.6


def _block(a: np.ndarray, how: str) -> np.ndarray:
    q = (a[0::2, 0::2], a[0::2, 1::2], a[1::2, 0::2], a[1::2, 1::2])
    if how == "max":
        return np.maximum(np.maximum(q[0], q[1]), np.maximum(q[2], q[3]))
    return ((q[0] + q[1]) + (q[2] + q[3])) * np.float32(0.25)


def render_datatake(s: dict, dtk_state: dict) -> tuple[np.ndarray, np.ndarray]:
    """Pixels of one datatake over the whole extent.

    Returns float32 DN (3, H, W) with clouds and noise but without baseline offset
    (rounded per item, after the offset), and the SCL (H/2, W/2).
    """
    scene, seed = s["scene"], s["seed"]
    key = tuple(dtk_state["key"])
    t = dt.datetime.fromisoformat(dtk_state["datetime"].replace("Z", "+00:00"))
    acq = dtk_state["state"]
    sun = tuple(dtk_state["sun"])
    _, dn = render(scene, acq, s["st10"])
    cls20, _ = render(scene, acq, s["st20"], bands=False)
    scl = CLASS_SCL[cls20]
    if sun[0] > 65.0:  # low winter sun: some forest pixels classified as dark areas
        scl[(cls20 == FOREST) & (s["st20"]["tf"] < -0.75)] = 2
    cf = cloud_fields(s, seed, key, t, sun)
    if cf["shadow"] is not None:
        dn *= 1.0 - SHADOW_DARKENING * cf["shadow"]
        scl[_block(cf["shadow"], "max") > 0] = 3
    if cf["alpha"] is not None:
        a = cf["alpha"]
        dn *= 1.0 - a
        dn += (CLOUD_DN * np.float32(cf["brightness"]))[:, None, None] * a
    if cf["beta"] is not None:
        b = cf["beta"]
        dn *= 1.0 - 0.3 * b
        dn += CIRRUS_DN[:, None, None] * b
        scl[_block(b, "max") > 0] = 10
    if cf["alpha"] is not None:
        amax = _block(cf["alpha"], "max")
        amean = _block(cf["alpha"], "mean")
        scl[amax > 0] = 8
        scl[amean >= 0.45] = 9
    rng = _rng(seed, *key, 4)
    oy, ox = (int(v) for v in rng.integers(0, NOISE_PAD, 2))
    h, w = dn.shape[1:]
    dn += s["noise"][:, oy : oy + h, ox : ox + w]
    np.rint(dn, out=dn)  # integer DN before any offset, so every baseline shares the same pixels
    if rng.random() < 0.04:  # a few saturated / defective pixels
        n = int(rng.integers(3, 25))
        rr = rng.integers(0, scl.shape[0], n)
        cc = rng.integers(0, scl.shape[1], n)
        scl[rr, cc] = 1
        for dr in (0, 1):
            for dc in (0, 1):
                dn[:, 2 * rr + dr, 2 * cc + dc] = SAT_MAX
    return dn, scl


def _overview_factors(height: int, width: int) -> list[int]:
    """At least one level; halve until the image fits in one block."""
    factors, f = [], 2
    while True:
        factors.append(f)
        if max(height, width) / f <= COG_BLOCK:
            return factors
        f *= 2


def _write_cog(path: Path, arr: np.ndarray, transform, kind: str) -> None:
    """Write a COG: tiled, DEFLATE (+ horizontal predictor for uint16), internal
    overviews (AVERAGE for reflectance, NEAREST for classes), nodata 0.

    Overviews are built in an in-memory dataset and copied as they are: about
    twice as fast as letting the COG driver build them.
    """
    import rasterio
    import rasterio.shutil
    from rasterio.crs import CRS
    from rasterio.enums import Resampling

    h, w = arr.shape
    options = {
        "compress": "DEFLATE",
        "level": DEFLATE_LEVEL,
        "blocksize": COG_BLOCK,
        "overviews": "FORCE_USE_EXISTING",
        **({"predictor": "STANDARD"} if arr.dtype == np.uint16 else {}),
    }
    resampling = Resampling.average if kind == "reflectance" else Resampling.nearest
    with rasterio.Env(GDAL_NUM_THREADS="1"):
        with rasterio.open(
            f"/vsimem/s2ts-demo-{os.getpid()}.tif",
            "w",
            driver="MEM",
            width=w,
            height=h,
            count=1,
            dtype=arr.dtype.name,
            crs=CRS.from_epsg(EPSG),
            transform=transform,
            nodata=0,
        ) as mem:
            mem.write(arr, 1)
            mem.build_overviews(_overview_factors(h, w), resampling)
            rasterio.shutil.copy(mem, str(path), driver="COG", **options)


def _scl_stats(scl: np.ndarray) -> dict:
    counts = np.bincount(scl.ravel(), minlength=12).astype(np.float64)
    total = float(scl.size)
    valid = total - counts[0]
    pct = (lambda c: round(100.0 * c / valid, 6)) if valid else (lambda c: 0.0)
    return {
        "eo:cloud_cover": pct(counts[8] + counts[9] + counts[10]),
        "s2:nodata_pixel_percentage": round(100.0 * counts[0] / total, 6),
        "s2:saturated_defective_pixel_percentage": pct(counts[1]),
        "s2:dark_features_percentage": pct(counts[2]),
        "s2:cloud_shadow_percentage": pct(counts[3]),
        "s2:vegetation_percentage": pct(counts[4]),
        "s2:not_vegetated_percentage": pct(counts[5]),
        "s2:water_percentage": pct(counts[6]),
        "s2:unclassified_percentage": pct(counts[7]),
        "s2:medium_proba_clouds_percentage": pct(counts[8]),
        "s2:high_proba_clouds_percentage": pct(counts[9]),
        "s2:thin_cirrus_percentage": pct(counts[10]),
        "s2:snow_ice_percentage": pct(counts[11]),
    }


def _datatake_job(task: dict) -> list[dict]:
    """Render one datatake and write the COGs of all its items. Returns per-item stats."""
    from affine import Affine

    s = _STATIC
    grid: Grid = s["grid"]
    dn, scl = render_datatake(s, task)
    results = []
    written: dict[tuple, Path] = {}
    for item in task["items"]:
        r0, nrows = item["row0"], item["rows"]
        sl10 = slice(r0, r0 + nrows)
        sl20 = slice(r0 // 2, (r0 + nrows) // 2)
        valid10 = s["swath10"][sl10] if task["partial"] else None
        valid20 = s["swath20"][sl20] if task["partial"] else None
        offset = BOA_OFFSET if has_offset(item["baseline"]) else 0
        ytop = grid.y1 - r0 * RES
        idir = Path(task["out"]) / item["id"]
        idir.mkdir(parents=True, exist_ok=True)
        for k, band in enumerate(BANDS):
            cache_key = (band, r0, nrows, offset)
            if cache_key in written:
                shutil.copyfile(written[cache_key], idir / f"{band}.tif")
                continue
            a = dn[k, sl10] + np.float32(offset)
            a = np.clip(a, 1, SAT_MAX, out=a).astype(np.uint16)  # a valid pixel is never 0 (no data)
            if valid10 is not None:
                a[~valid10] = 0
            _write_cog(idir / f"{band}.tif", a, Affine(RES, 0.0, grid.x0, 0.0, -RES, ytop), "reflectance")
            written[cache_key] = idir / f"{band}.tif"
        sc = scl[sl20].copy()
        if valid20 is not None:
            sc[~valid20] = 0
        cache_key = ("SCL", r0, nrows)
        if cache_key in written:
            shutil.copyfile(written[cache_key], idir / "SCL.tif")
        else:
            _write_cog(idir / "SCL.tif", sc, Affine(2 * RES, 0.0, grid.x0, 0.0, -2 * RES, ytop), "classification")
            written[cache_key] = idir / "SCL.tif"
        results.append({"id": item["id"], "stats": _scl_stats(sc)})
    return results


# ---------------------------------------------------------------------------
# STAC documents
# ---------------------------------------------------------------------------

EO_BANDS = {
    "B03": {
        "name": "B03",
        "common_name": "green",
        "description": "Band 3 - Green",
        "center_wavelength": 0.56,
        "full_width_half_max": 0.045,
    },
    "B04": {
        "name": "B04",
        "common_name": "red",
        "description": "Band 4 - Red",
        "center_wavelength": 0.665,
        "full_width_half_max": 0.038,
    },
    "B08": {
        "name": "B08",
        "common_name": "nir",
        "description": "Band 8 - NIR",
        "center_wavelength": 0.842,
        "full_width_half_max": 0.145,
    },
}
ASSET_TITLES = {
    "B03": "Band 3 - Green - 10m",
    "B04": "Band 4 - Red - 10m",
    "B08": "Band 8 - NIR - 10m",
    "SCL": "Scene classfication map (SCL)",  # sic, as on the Planetary Computer
}
ITEM_EXTENSIONS = [
    "https://stac-extensions.github.io/eo/v1.0.0/schema.json",
    "https://stac-extensions.github.io/sat/v1.0.0/schema.json",
    "https://stac-extensions.github.io/projection/v1.0.0/schema.json",
]


def _footprint(row0: int, rows: int, partial: bool) -> Polygon:
    """Valid-data footprint of an item window in UTM."""
    g = scene_grid()
    ytop = g.y1 - row0 * RES
    fp = box(g.x0, ytop - rows * RES, g.x1, ytop)
    if partial:
        ex, ey = _utm(*SWATH_EDGE_LONLAT)
        az = math.radians(SWATH_EDGE_AZIMUTH_DEG)
        dx, dy = math.sin(az), math.cos(az)  # along the edge
        nx, ny = math.cos(az), -math.sin(az)  # towards the covered side
        big = 1e5
        half = Polygon(
            [
                (ex - big * dx, ey - big * dy),
                (ex + big * dx, ey + big * dy),
                (ex + big * dx + big * nx, ey + big * dy + big * ny),
                (ex - big * dx + big * nx, ey - big * dy + big * ny),
            ]
        )
        fp = fp.intersection(half)
    return orient(fp, 1.0)


def _to_lonlat(poly: Polygon) -> dict:
    t = _transformer(UTM, "EPSG:4326")
    coords = [[round(c, 8) for c in t.transform(x, y)] for x, y in poly.exterior.coords]
    return {"type": "Polygon", "coordinates": [coords]}


def _bbox(geom: dict) -> list[float]:
    xs = [c[0] for c in geom["coordinates"][0]]
    ys = [c[1] for c in geom["coordinates"][0]]
    return [min(xs), min(ys), max(xs), max(ys)]


def _asset(band: str, row0: int, rows: int) -> dict:
    g = scene_grid()
    res = RES if band != "SCL" else 2 * RES
    ytop = g.y1 - row0 * RES
    shape = [rows * RES // res, g.width * RES // res]
    a = {
        "href": f"./{band}.tif",
        "type": COG_TYPE,
        "roles": ["data"],
        "title": ASSET_TITLES[band],
        "gsd": float(res),
        "proj:bbox": [g.x0, ytop - rows * RES, g.x1, ytop],
        "proj:shape": shape,
        "proj:transform": [float(res), 0.0, g.x0, 0.0, -float(res), ytop],
    }
    if band in EO_BANDS:
        a["eo:bands"] = [dict(EO_BANDS[band])]
    return a


def _item_doc(dtk: Datatake, item: ItemPlan, stats: dict) -> dict:
    geom = _to_lonlat(_footprint(item.row0, item.rows, dtk.partial))
    props = {
        "datetime": _iso(dtk.sensing),
        "platform": PLATFORMS[dtk.platform]["name"],
        "constellation": "Sentinel 2",
        "instruments": ["msi"],
        "proj:epsg": EPSG,
        "s2:mgrs_tile": item.tile,
        "s2:processing_baseline": item.baseline,
        "s2:product_type": "S2MSI2A",
        "s2:datatake_type": "INS-NOBS",
        "s2:generation_time": _iso(item.generation),
        "s2:mean_solar_zenith": round(dtk.sun[0], 6),
        "s2:mean_solar_azimuth": round(dtk.sun[1], 6),
        "s2:reflectance_conversion_factor": round(_reflectance_conversion_factor(dtk.sensing), 12),
        "s2:degraded_msi_data_percentage": 0.0,
        "sat:orbit_state": "descending",
        "sat:relative_orbit": dtk.orbit,
        **_product_ids(dtk, item),
        **stats,
    }
    return {
        "type": "Feature",
        "stac_version": STAC_VERSION,
        "stac_extensions": list(ITEM_EXTENSIONS),
        "id": item.id,
        "collection": COLLECTION_ID,
        "geometry": geom,
        "bbox": _bbox(geom),
        "properties": props,
        "links": [
            {"rel": "collection", "href": "../collection.json", "type": "application/json"},
            {"rel": "parent", "href": "../collection.json", "type": "application/json"},
            {"rel": "root", "href": "../../catalog.json", "type": "application/json"},
        ],
        "assets": {b: _asset(b, item.row0, item.rows) for b in (*BANDS, "SCL")},
    }


def _collection_doc(datatakes: list[Datatake], item_ids: list[str], start: dt.date, end: dt.date) -> dict:
    t = _transformer(UTM, "EPSG:4326")
    g = scene_grid()
    lon0, lat0, lon1, lat1 = t.transform_bounds(g.x0, g.y0, g.x1, g.y1, densify_pts=21)
    if datatakes:
        interval = [_iso(datatakes[0].sensing), _iso(datatakes[-1].sensing)]
    else:
        interval = [f"{start.isoformat()}T00:00:00Z", f"{end.isoformat()}T00:00:00Z"]
    baselines = sorted({i.baseline for d in datatakes for i in d.items}, key=pb_tuple)
    platforms = sorted({PLATFORMS[d.platform]["name"] for d in datatakes})
    tiles = sorted({i.tile for d in datatakes for i in d.items})
    item_assets = {
        b: {k: v for k, v in _asset(b, 0, g.height).items() if k in ("type", "roles", "title", "gsd", "eo:bands")}
        for b in (*BANDS, "SCL")
    }
    return {
        "type": "Collection",
        "id": COLLECTION_ID,
        "stac_version": STAC_VERSION,
        "stac_extensions": ["https://stac-extensions.github.io/item-assets/v1.0.0/schema.json"],
        "title": "Sentinel-2 Level-2A (synthetic offline demo, Arcachon inlet)",
        "description": (
            "SYNTHETIC Sentinel-2 L2A items over the Arcachon inlet (France) generated by s2ts.demo_catalog, "
            "laid out like the Microsoft Planetary Computer sentinel-2-l2a collection: B03, B04, B08 (10 m) and "
            "SCL (20 m) as cloud-optimized GeoTIFFs, processing baselines and the PB >= 04.00 +1000 DN offset. "
            "Not real data."
        ),
        "license": "proprietary",
        "keywords": ["Sentinel", "Copernicus", "ESA", "Satellite", "Reflectance", "Synthetic", "Demo"],
        "providers": [
            {"name": "s2ts demo generator", "roles": ["producer", "processor", "host"]},
        ],
        "extent": {
            "spatial": {"bbox": [[round(lon0, 8), round(lat0, 8), round(lon1, 8), round(lat1, 8)]]},
            "temporal": {"interval": [interval]},
        },
        "summaries": {
            "gsd": [10, 20],
            "eo:bands": [{"gsd": 10, **EO_BANDS[b]} for b in BANDS],
            "platform": platforms,
            "constellation": ["sentinel-2"],
            "instruments": ["msi"],
            "proj:epsg": [EPSG],
            "s2:mgrs_tile": tiles,
            "s2:processing_baseline": baselines,
            "sat:relative_orbit": sorted({d.orbit for d in datatakes}),
        },
        "item_assets": item_assets,
        "links": [
            {"rel": "root", "href": "../catalog.json", "type": "application/json"},
            {"rel": "parent", "href": "../catalog.json", "type": "application/json"},
        ]
        + [{"rel": "item", "href": f"./{i}/{i}.json", "type": "application/geo+json"} for i in item_ids],
    }


def _catalog_doc() -> dict:
    return {
        "type": "Catalog",
        "id": CATALOG_ID,
        "stac_version": STAC_VERSION,
        "title": "s2ts offline demo catalog",
        "description": "Static STAC catalog of synthetic Sentinel-2 L2A items over the Arcachon inlet (s2ts demo).",
        "links": [
            {"rel": "root", "href": "./catalog.json", "type": "application/json"},
            {
                "rel": "child",
                "href": f"./{COLLECTION_ID}/collection.json",
                "type": "application/json",
                "title": "Sentinel-2 Level-2A (synthetic)",
            },
        ],
    }


# ---------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------

_OWNED = {"catalog.json", COLLECTION_ID, "truth"}


def generate_demo_catalog(out_dir, start="2021-01-01", end="2023-01-01", seed=0, workers=2, extent_km=None) -> Path:
    """Write the synthetic demo catalog and its ground truth under ``out_dir``.

    ``extent_km`` (default: the Arcachon inlet box, about 10 x 14 km) generates a
    square scene of that size around it instead (benchmarks/scale.py).

    ``start`` is inclusive, ``end`` exclusive (ISO dates). The catalog is built in a
    temporary sibling directory and renamed into place, so an interrupted run never
    leaves a half catalog under ``out_dir``. Same arguments -> byte-identical JSON.
    Returns the path of ``catalog.json``.
    """
    out_dir = Path(out_dir)
    d0, d1 = _parse_date(start, "start"), _parse_date(end, "end")
    if d1 <= d0:
        raise UserError(f"demo catalog: end ({d1}) must be after start ({d0}); end is exclusive")
    try:
        seed = int(seed)
        workers = max(1, int(workers))
    except (TypeError, ValueError):
        raise UserError(f"demo catalog: seed ({seed!r}) and workers ({workers!r}) must be integers") from None
    if out_dir.exists() and (not out_dir.is_dir() or set(os.listdir(out_dir)) - _OWNED):
        raise UserError(
            f"demo catalog: {out_dir} exists and holds files that are not a demo catalog; "
            "it would be replaced as a whole: choose an empty or new directory"
        )
    global _lonlat_bounds
    _lonlat_bounds = LONLAT_BOUNDS if extent_km is None else extent_bounds(float(extent_km))
    scene_grid.cache_clear()
    try:
        return _generate(out_dir, d0, d1, seed, workers)
    finally:
        _lonlat_bounds = LONLAT_BOUNDS
        scene_grid.cache_clear()


def _generate(out_dir: Path, d0: dt.date, d1: dt.date, seed: int, workers: int) -> Path:
    global _STATIC
    t0 = time.perf_counter()
    # render from exactly what truth.json will hold (JSON round trip), like Truth does
    scene = json.loads(json.dumps(build_scene()))
    datatakes = plan_datatakes(d0, d1, seed)
    for d in datatakes:
        d.sun = sun_position(d.sensing, -1.24, 44.60)
        d.state = acquisition_state(scene, d.sensing, seed, d.key)
    n_items = sum(len(d.items) for d in datatakes)
    log.info("demo catalog %s..%s: %d datatakes, %d items, seed %d", d0, d1, len(datatakes), n_items, seed)

    with atomic_path(out_dir) as tmp:
        coll_dir = tmp / COLLECTION_ID
        coll_dir.mkdir(parents=True)
        tasks = [
            {
                "key": list(d.key),
                "datetime": _iso(d.sensing),
                "sun": list(d.sun),
                "state": d.state,
                "partial": d.partial,
                "out": str(coll_dir),
                "items": [{"id": i.id, "baseline": i.baseline, "row0": i.row0, "rows": i.rows} for i in d.items],
            }
            for d in datatakes
        ]
        _STATIC = _prepare_static(scene, seed)
        results: dict[str, dict] = {}
        try:
            if workers > 1 and "fork" not in multiprocessing.get_all_start_methods():
                log.warning("no 'fork' start method on this platform: rendering in one process")
                workers = 1
            if workers == 1 or len(tasks) <= 1:
                for task in tasks:
                    for r in _datatake_job(task):
                        results[r["id"]] = r["stats"]
            else:
                ctx = multiprocessing.get_context("fork")
                with ctx.Pool(workers) as pool:
                    for i, res in enumerate(pool.imap(_datatake_job, tasks, chunksize=1)):
                        for r in res:
                            results[r["id"]] = r["stats"]
                        if (i + 1) % 50 == 0:
                            log.info("rendered %d/%d datatakes", i + 1, len(tasks))
        finally:
            _STATIC = {}

        item_ids = []
        for d in datatakes:
            for item in d.items:
                doc = _item_doc(d, item, results[item.id])
                (coll_dir / item.id / f"{item.id}.json").write_text(dumps_json(doc))
                item_ids.append(item.id)
        (coll_dir / "collection.json").write_text(dumps_json(_collection_doc(datatakes, item_ids, d0, d1)))
        (tmp / "catalog.json").write_text(dumps_json(_catalog_doc()))
        truth_dir = tmp / "truth"
        truth_dir.mkdir()
        (truth_dir / "truth.json").write_text(dumps_json(_truth_doc(scene, datatakes, seed, d0, d1)))
    log.info("demo catalog written to %s in %.1f s", out_dir, time.perf_counter() - t0)
    return out_dir / "catalog.json"


def _truth_doc(scene: dict, datatakes: list[Datatake], seed: int, d0: dt.date, d1: dt.date) -> dict:
    acqs = []
    for d in datatakes:
        acqs.append(
            {
                "datetime": _iso(d.sensing),
                "solar_day": (d.sensing + dt.timedelta(hours=-1.24 / 15.0)).date().isoformat(),
                "platform": PLATFORMS[d.platform]["name"],
                "relative_orbit": d.orbit,
                "partial_swath": d.partial,
                "item_ids": [i.id for i in d.items],
                "processing_baselines": [i.baseline for i in d.items],
                "sun_zenith_deg": round(d.sun[0], 6),
                "sun_azimuth_deg": round(d.sun[1], 6),
                "key": list(d.key),
                **d.state,
            }
        )
    return {
        "format": "s2ts-demo-truth/1",
        "description": (
            "Clear-sky ground truth of the s2ts synthetic demo catalog: the static scene and the per-acquisition "
            "state (tide, sandbank polygons in EPSG:32630, seasonal factors) the item pixels were rendered from. "
            "Reflectance DN = reflectance * 10000, no baseline offset, no clouds, no noise."
        ),
        "seed": seed,
        "start": d0.isoformat(),
        "end": d1.isoformat(),
        "class_codes": {str(k): v for k, v in CLASS_NAMES.items()},
        "bands": list(BANDS),
        "scene": scene,
        "acquisitions": acqs,
    }


def _as_utc(value) -> dt.datetime | dt.date:
    if isinstance(value, np.datetime64):
        value = value.astype("datetime64[us]").item()
    elif hasattr(value, "to_pydatetime"):
        value = value.to_pydatetime()
    elif isinstance(value, str):
        value = value.strip()
        if len(value) == 10:
            return dt.date.fromisoformat(value)
        value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
    if isinstance(value, dt.date):
        return value
    raise TypeError(f"not a datetime: {value!r}")


class Truth:
    """Clear-sky ground truth of a demo catalog (see :func:`load_truth`)."""

    TOLERANCE_S = 120.0

    def __init__(self, doc: dict):
        self.doc = doc
        self.scene = doc["scene"]
        self._acq = doc["acquisitions"]
        self._times = [dt.datetime.fromisoformat(a["datetime"].replace("Z", "+00:00")) for a in self._acq]
        ex = self.scene["extent"]
        self.extent = tuple(ex)

    @property
    def acquisitions(self) -> list[dt.datetime]:
        """Acquisition (sensing) datetimes, UTC, in time order."""
        return list(self._times)

    @property
    def dates(self) -> list[dt.date]:
        """Solar days of the acquisitions."""
        return [dt.date.fromisoformat(a["solar_day"]) for a in self._acq]

    def acquisition(self, item_datetime) -> dict:
        """The saved per-acquisition record (tide_m, sand_wkt, item_ids, ...)."""
        t = _as_utc(item_datetime)
        if not isinstance(t, dt.datetime):
            for a in self._acq:
                if a["solar_day"] == t.isoformat():
                    return a
            raise KeyError(f"no demo acquisition on {t}")
        best = min(range(len(self._times)), key=lambda i: abs((self._times[i] - t).total_seconds()), default=None)
        if best is None or abs((self._times[best] - t).total_seconds()) > self.TOLERANCE_S:
            raise KeyError(f"no demo acquisition at {t.isoformat()}")
        return self._acq[best]

    def _points(self, xs, ys, crs):
        xs = np.asarray(xs, dtype=np.float64)
        ys = np.asarray(ys, dtype=np.float64)
        if xs.shape != ys.shape:
            raise ValueError("xs and ys must have the same shape")
        src = CRS.from_user_input(crs)
        if src.to_epsg() != EPSG:
            xs, ys = _transformer(src.to_wkt(), UTM).transform(xs, ys)
            xs, ys = np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)
        x0, y0, x1, y1 = self.extent
        inside = np.isfinite(xs) & np.isfinite(ys) & (xs >= x0) & (xs < x1) & (ys > y0) & (ys <= y1)
        return xs, ys, inside

    def _render(self, item_datetime, xs, ys, crs, bands: bool):
        acq = self.acquisition(item_datetime)
        x, y, inside = self._points(xs, ys, crs)
        xi, yi = x[inside], y[inside]
        st = static_fields(self.scene, xi, yi)
        cls, dn = render(self.scene, acq, st, bands=bands)
        return x.shape, inside, cls, dn

    def reflectance(self, item_datetime, xs, ys, crs=UTM) -> dict[str, np.ndarray]:
        """Clear-sky surface reflectance DN (scale 10000, no offset) of B03, B04, B08 at the points."""
        shape, inside, _, dn = self._render(item_datetime, xs, ys, crs, True)
        out = {}
        for k, b in enumerate(BANDS):
            a = np.full(shape, np.nan, dtype=np.float64)
            a[inside] = dn[k]
            out[b] = a
        return out

    def classes(self, item_datetime, xs, ys, crs=UTM) -> np.ndarray:
        """Land-cover class codes (uint8, see CLASS_NAMES; 0 outside the extent) at the points."""
        shape, inside, cls, _ = self._render(item_datetime, xs, ys, crs, False)
        out = np.zeros(shape, dtype=np.uint8)
        out[inside] = cls
        return out

    def sand_polygon(self, item_datetime) -> Polygon:
        """Emerged Banc d'Arguin at that acquisition (EPSG:32630)."""
        return shapely.from_wkt(self.acquisition(item_datetime)["sand_wkt"])

    def tide(self, item_datetime) -> float:
        return float(self.acquisition(item_datetime)["tide_m"])


def load_truth(catalog_dir) -> Truth:
    """Read ``<catalog_dir>/truth/truth.json`` (``catalog_dir`` may also be the catalog.json path)."""
    p = Path(catalog_dir)
    if p.is_file():
        p = p.parent
    f = p / "truth" / "truth.json"
    if not f.exists():
        raise UserError(f"demo truth not found: {f}; generate the catalog with s2ts.demo_catalog first")
    return Truth(json.loads(f.read_text()))


def demo_catalog_from_snakemake(smk) -> None:
    out = Path(smk.output.catalog)
    generate_demo_catalog(
        out.parent,
        start=str(smk.params.start),
        end=str(smk.params.end),
        seed=int(smk.params.seed),
        workers=int(smk.threads),
    )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m s2ts.demo_catalog", description=__doc__.split("\n\n")[0])
    p.add_argument("out_dir", help="output directory (replaced as a whole)")
    p.add_argument("--start", default="2021-01-01", help="first sensing date, inclusive (YYYY-MM-DD)")
    p.add_argument("--end", default="2023-01-01", help="last sensing date, exclusive (YYYY-MM-DD)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--extent-km", type=float, help="a square scene of this size (default: the Arcachon inlet box)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        path = generate_demo_catalog(args.out_dir, args.start, args.end, args.seed, args.workers, args.extent_km)
    except UserError as exc:
        print(f"ERROR: {exc}", flush=True)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
