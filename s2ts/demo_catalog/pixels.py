"""The pixels of one datatake over the whole extent: the clear-sky scene with
clouds, shadows, cirrus, sensor noise and a few saturated pixels, and its SCL."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np

from s2ts.demo_catalog.clouds import CIRRUS_DN, CLOUD_CELL, CLOUD_DN, CLOUD_PAD, SHADOW_DARKENING, cloud_fields
from s2ts.demo_catalog.common import RES, _rng, _utm, scene_grid
from s2ts.demo_catalog.plan import SWATH_EDGE_AZIMUTH_DEG, SWATH_EDGE_LONLAT
from s2ts.demo_catalog.scene import CLASS_SCL, FOREST, render, static_fields

SAT_MAX = 65535
NOISE_SIGMA = 0.3  # DN, Gaussian sensor noise on item pixels only (budget: see docs)
NOISE_PAD = 64


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
