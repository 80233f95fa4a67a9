"""Per-acquisition scene state: tide, the Banc d'Arguin's shape and position,
seasonal factors (water turbidity, forest red and NIR)."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import shapely
from shapely.geometry import Polygon

from s2ts.demo_catalog.common import _rng, _season, _wkt

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


# Sandbank (Banc d'Arguin) reference centre and motion
BANK_CENTRE = (-1.2505, 44.5905)
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


def _year_fraction(t: dt.datetime) -> float:
    return (t - TIDE_EPOCH).total_seconds() / (365.25 * 86400.0)


def tide_level(t: dt.datetime) -> float:
    """Tide level (m above mean sea level) at the inlet at time ``t`` (UTC)."""
    hours = (t - TIDE_EPOCH).total_seconds() / 3600.0
    return float(sum(a * math.cos(2.0 * math.pi * hours / period - ph) for _, a, period, ph in TIDE_CONSTITUENTS))


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
