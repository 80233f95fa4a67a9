"""Seeded clouds, their shadows and thin cirrus of one datatake, as opacity
fields on the 10 m grid, and how they look in the bands."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np

from s2ts.demo_catalog.common import _rng, _season

CLOUD_CELL = 120.0  # m, resolution at which clouds are simulated
CLOUD_PAD = 6000.0  # m, margin around the extent so clouds outside it can cast shadows into it
CLOUD_EDGE = 0.04  # width of the cloud edge ramp, in standard deviations of the cloud field


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
