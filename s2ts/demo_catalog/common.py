"""What the parts of the demo generator share: the CRS and the scene grid (with
the larger extents of ``extent_km``), seeded random generators, the seasonal
cycle, WKT and timestamp formats."""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import math
from dataclasses import dataclass

import numpy as np
import shapely
from pyproj import Transformer

EPSG = 32630
UTM = "EPSG:32630"
LONLAT_BOUNDS = (-1.30, 44.535, -1.18, 44.66)  # lon_min, lat_min, lon_max, lat_max
RES = 10
SNAP = 60


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


@contextlib.contextmanager
def scene_extent(extent_km: float | None):
    """Inside the block, :func:`scene_grid` is a square of ``extent_km`` around the
    default scene (None: the default Arcachon inlet box); restored afterwards."""
    global _lonlat_bounds
    _lonlat_bounds = LONLAT_BOUNDS if extent_km is None else extent_bounds(float(extent_km))
    scene_grid.cache_clear()
    try:
        yield
    finally:
        _lonlat_bounds = LONLAT_BOUNDS
        scene_grid.cache_clear()


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


def _wkt(geom) -> str:
    return shapely.to_wkt(geom, rounding_precision=2, trim=True)


def _iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _stamp(t: dt.datetime) -> str:
    return t.strftime("%Y%m%dT%H%M%S")


def _rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, *[int(k) for k in keys]])


def _season(t: dt.datetime, peak_doy: float) -> float:
    doy = t.timetuple().tm_yday + t.hour / 24.0
    return math.cos(2.0 * math.pi * (doy - peak_doy) / 365.25)
