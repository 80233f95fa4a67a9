"""The gap-fill kernel on an AOI's masked cube, per method, against scipy per pixel.

Reads the AOI's masked batch stores (``<results>/<aoi>/mask/*.zarr``) into memory as
one C-ordered ``(y, x, time)`` block per band: the layout in which the gap-fill
stage's ``xarray.apply_ufunc`` hands its blocks over (dask transposes while it gathers
a chunk's dates). Then it times :func:`s2ts.gapfill.fill_kernel` on the whole blocks,
single-threaded, for each method (best of ``--repeat``; the first call of each method is not timed).
The per-pixel alternative is timed on ``--sample`` series with gaps:
``scipy.interpolate.PchipInterpolator`` built and evaluated once per pixel and band,
scaled to the cube's series. ``--block`` also times the kernel with other
``_BLOCK_ELEMENTS`` (e.g. ``--block 20,22``: 2**20 and 2**22), each checked equal to
the first.

    .venv/bin/python benchmarks/gapfill_kernel.py [--results results/demo --aoi 1]
        [--bands B03,B04,B08] [--repeat 3] [--sample 2000] [--block 20,22] [--json F]

It prints figures; it asserts nothing about speed (docs/performance.md, README).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def load_cube(results: Path, aoi: str, bands: list[str]) -> tuple[list[np.ndarray], np.ndarray]:
    """The masked cube, one C-ordered int16 ``(y, x, time)`` array per band, and the
    acquisition times (s)."""
    import s2ts.gapfill as gf
    from s2ts.zarr_io import to_seconds

    stores = sorted((results / aoi / "mask").glob("*.zarr"))
    if not stores:
        raise SystemExit(f"no masked store under {results / aoi / 'mask'}: run the workflow first (make demo)")
    ds, _ = gf.read_masked(stores, len(bands), threads=1, rows=10**9, cols=10**9)
    cube = [np.ascontiguousarray(ds[b].transpose("y", "x", "time").values) for b in bands]
    return cube, to_seconds(ds["time"].values).astype(np.float64)


def best_of(fn, repeat: int) -> tuple[float, object]:
    out = fn()  # not timed: first-call costs
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def scipy_per_series(cube: list[np.ndarray], times: np.ndarray, sample: int, seed: int = 0) -> float | None:
    """Seconds per series with gaps: PchipInterpolator on its observations, evaluated
    at its missing dates (the per-pixel loop the vectorised kernel replaces)."""
    from scipy.interpolate import PchipInterpolator

    from s2ts.zarr_io import FILL_INT16

    series = np.concatenate([b.reshape(-1, b.shape[-1]) for b in cube])
    obs = series != FILL_INT16
    n_obs = obs.sum(axis=1)
    usable = np.flatnonzero((n_obs >= 2) & (n_obs < series.shape[1]))
    if not usable.size:
        return None
    pick = np.random.default_rng(seed).choice(usable, min(sample, usable.size), replace=False)
    t0 = time.perf_counter()
    for i in pick:
        o = obs[i]
        PchipInterpolator(times[o], series[i, o].astype(np.float64))(times[~o])
    return (time.perf_counter() - t0) / len(pick)


def main(argv=None) -> dict:
    import s2ts.gapfill as gf

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", type=Path, default=ROOT / "results" / "demo")
    ap.add_argument("--aoi", default="1")
    ap.add_argument("--bands", default="B03,B04,B08")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--sample", type=int, default=2000, help="series timed with scipy (0: none)")
    ap.add_argument("--block", default="", help="also these log2(_BLOCK_ELEMENTS), e.g. 20,22")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)

    bands = [b for b in a.bands.split(",") if b]
    cube, times = load_cube(a.results, a.aoi, bands)
    missing = float(np.mean([np.mean(b == gf.FILL_INT16) for b in cube]))
    y, x, n_t = cube[0].shape
    fig: dict = {
        "cube": {"y": y, "x": x, "bands": bands, "dates": n_t},
        "missing_share": round(missing, 3),
        "block_elements": gf._BLOCK_ELEMENTS,
        "kernel_s": {},
    }
    print(
        f"cube: {n_t} dates x {y} x {x} pixels x {len(bands)} bands, "
        f"{missing * 100:.0f} % missing; one thread, best of {a.repeat}"
    )
    for method in gf.METHODS:
        s, _ = best_of(lambda m=method: gf.fill_kernel(*cube, times=times, method=m), a.repeat)
        fig["kernel_s"][method] = s
        print(f"kernel, {method}: {s:.3f} s")
    if a.block:
        default = gf._BLOCK_ELEMENTS
        fig["by_block"] = {}
        try:
            first = {}  # each method's output with the first block size
            for k in (int(v) for v in a.block.split(",")):
                gf._BLOCK_ELEMENTS = 2**k
                row = {}
                for method in gf.METHODS:
                    s, out = best_of(lambda m=method: gf.fill_kernel(*cube, times=times, method=m), a.repeat)
                    row[method] = s
                    ref = first.setdefault(method, out)
                    if not all(np.array_equal(x, y) for x, y in zip(out, ref)):
                        raise SystemExit(f"2**{k} blocks: {method} differs from the first block size")
                fig["by_block"][f"2**{k}"] = row
                print(f"blocks of 2**{k}: " + ", ".join(f"{m} {v:.3f} s" for m, v in row.items()))
        finally:
            gf._BLOCK_ELEMENTS = default
    if a.sample:
        per = scipy_per_series(cube, times, a.sample)
        if per is not None:
            n_series = y * x * len(bands)
            fig["scipy_pchip_per_series_us"] = round(per * 1e6, 1)
            fig["scipy_pchip_cube_s"] = round(per * n_series, 1)
            print(
                f"scipy PchipInterpolator per series: {per * 1e6:.0f} us, so {per * n_series:.0f} s "
                f"for the cube's {n_series} series"
            )
    if a.json:
        a.json.write_text(json.dumps(fig, indent=1))
    return fig


if __name__ == "__main__":
    main()
