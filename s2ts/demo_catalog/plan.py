"""Acquisition plan: platforms, relative orbits (one a partial swath), sensing
dates and times, processing baselines, reprocessings and the neighbouring MGRS
tile, as datatakes with their items and ids; the sun at each sensing time."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field

import numpy as np

from s2ts.demo_catalog.common import RES, _rng, _stamp, scene_grid

MGRS_TILE = "30TXQ"
NORTH_TILE = "30TXR"  # neighbouring MGRS tile, covers the northern part of the extent
NORTH_TILE_SOUTH_EDGE = 4941000.0  # northing of the 30TXR item's southern edge (multiple of 60)
OFFSET_BASELINE = (4, 0)  # PB >= 04.00 carries DN = reflectance * 10000 + 1000
BOA_OFFSET = 1000

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
