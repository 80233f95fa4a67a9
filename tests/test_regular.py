"""Regular stage: the observations on regular time steps. Values are checked against
per-pixel references written here (np.interp on the observed times, np.median on each
window's observations) and analytic series, never against the code itself; on the demo
against the generator's clear-sky truth."""

from __future__ import annotations

import datetime as dt
import json
import sys
import tracemalloc
import warnings
from pathlib import Path
from types import SimpleNamespace

import netCDF4
import numpy as np
import pytest
import xarray as xr

sys.path.insert(0, str(Path(__file__).resolve().parent))

from test_gapfill import epoch_seconds, make_grid, make_masked_stores, random_masked_store  # noqa: E402

import s2ts.regular as rg  # noqa: E402
from s2ts.errors import UserError  # noqa: E402
from s2ts.regular import linear_steps, median_steps, regular, regular_dataset, step_times  # noqa: E402

DAY = 86400
FILL = -32768
BANDS = ["B03", "B04", "B08"]


def secs(iso: str) -> int:
    return int(np.datetime64(iso, "s").astype(np.int64))


# ----------------------------------------------------------------------------- the steps
def test_step_times_start_plus_k_steps_before_the_end():
    s = step_times("2021-01-01", "2021-02-01", 10)
    assert [str(t) for t in s] == [f"2021-01-{d:02d}T00:00:00" for d in (1, 11, 21, 31)]
    # the end is exclusive: a step on it is not made
    assert [str(t)[:10] for t in step_times("2021-01-01", "2021-01-21", 10)] == ["2021-01-01", "2021-01-11"]
    assert [str(t)[:10] for t in step_times("2021-01-01", "2021-01-02", 31)] == ["2021-01-01"]
    assert len(step_times("2016-01-01", "2025-01-01", 5)) == -(-3288 // 5)  # 3288 days, 658 steps
    with pytest.raises(UserError, match="step"):
        step_times("2021-01-01", "2021-02-01", 0)


# ----------------------------------------------------------------------------- linear, analytic
T_OBS = np.array([secs("2021-01-03T11:00:00"), secs("2021-01-08T11:00:00"), secs("2021-01-21T00:00:00")])
STEPS = np.array([secs(f"2021-01-{d:02d}T00:00:00") for d in (1, 6, 11, 16, 21, 26)])


def test_linear_steps_analytic():
    """Observations 100 (3 Jan 11:00), 600 (8 Jan 11:00), 1900 (21 Jan 00:00): the 6 Jan step
    is 61 of 120 hours in (100 + 500 * 61/120 = 354.2), 11 Jan 61 of 301 hours after 8 Jan
    (600 + 1300 * 61/301 = 863.5), 16 Jan 181 of 301 (1381.7); 21 Jan is an observation;
    1 Jan and 26 Jan hold the ends."""
    v = np.array([100, 600, 1900], np.int16)[:, None]
    out, flag = linear_steps(v, T_OBS, STEPS)
    expected = [100, 354, 863, 600 + 1300 * (7 * DAY + 13 * 3600) / (12 * DAY + 13 * 3600), 1900, 1900]
    assert out[:, 0].tolist() == [int(np.rint(e)) for e in expected] == [100, 354, 863, 1382, 1900, 1900]
    assert flag[:, 0].tolist() == [3, 2, 2, 2, 1, 3]
    out, flag = linear_steps(v, T_OBS, STEPS, fill_ends=False)
    assert out[:, 0].tolist() == [FILL, 354, 863, 1382, 1900, FILL] and flag[:, 0].tolist() == [0, 2, 2, 2, 1, 0]
    # max_gap_days: 8 -> 21 Jan is 12.54 days: its steps stay missing with 10; ends 2.46 and 5 days away
    out, flag = linear_steps(v, T_OBS, STEPS, max_gap_days=10)
    assert out[:, 0].tolist() == [100, 354, FILL, FILL, 1900, 1900] and flag[:, 0].tolist() == [3, 2, 0, 0, 1, 3]
    out, flag = linear_steps(v, T_OBS, STEPS, max_gap_days=3)  # 26 Jan is 5 days after the last
    assert flag[:, 0].tolist() == [3, 0, 0, 0, 1, 0]


def test_linear_steps_use_observations_only():
    """A missing value is skipped, never taken as a value: 100, (missing), 1900."""
    v = np.array([100, FILL, 1900], np.int16)[:, None]
    out, flag = linear_steps(v, T_OBS, STEPS)
    frac = (np.array(STEPS[1:4]) - T_OBS[0]) / (T_OBS[2] - T_OBS[0])
    assert out[1:4, 0].tolist() == np.rint(100 + 1800 * frac).astype(int).tolist()
    never = np.full((3, 1), FILL, np.int16)
    out, flag = linear_steps(never, T_OBS, STEPS)
    assert (out == FILL).all() and (flag == 0).all()


# ----------------------------------------------------------------------------- median, analytic
def test_median_steps_analytic():
    """Windows [step, step + 5 days): 1-5 Jan holds 3 Jan (100); 6-10 Jan holds 8 Jan (600)
    and 9 Jan (700): even count -> 650; 11-15 Jan none -> missing; 16-20 Jan: 17, 18, 19
    Jan with 19 Jan missing -> median of 1000 and 1301 = 1150.5 -> 1150 (half to even);
    21-25 Jan: 21 Jan (1900)."""
    t = np.array([secs(f"2021-01-{d:02d}T11:00:00") for d in (3, 8, 9, 17, 18, 19)] + [secs("2021-01-21T00:00:00")])
    v = np.array([100, 600, 700, 1000, 1301, FILL, 1900], np.int16)[:, None]
    out, flag = median_steps(v, t, STEPS, 5)
    assert out[:, 0].tolist() == [100, 650, FILL, 1150, 1900, FILL]
    assert flag[:, 0].tolist() == [4, 4, 0, 4, 4, 0]
    v2 = v.copy()
    v2[4] = 1303  # 1151.5 -> 1152 (half to even)
    assert median_steps(v2, t, STEPS, 5)[0][3, 0] == 1152


def test_one_flag_for_all_bands_the_least_trustworthy():
    """Bands whose masks differ: the flag is the least trustworthy band's (missing >
    end-filled > interpolated > observed; median steps: missing if a band has none)."""
    from s2ts.regular import regular_kernel

    t = np.array([secs("2021-01-06T00:00:00"), secs("2021-01-11T00:00:00"), secs("2021-01-21T00:00:00")], float)
    steps = np.array([secs("2021-01-06T00:00:00"), secs("2021-01-16T00:00:00")], float)
    block = np.array([[100, 200, 300], [FILL, 200, 300]], np.int16)[None, :, :]  # (pixel, band, time)
    values, flag = regular_kernel(block, t, steps, "linear", 10)
    assert values[0, 0].tolist() == [100, 250] and values[0, 1].tolist() == [200, 250]
    assert flag[0].tolist() == [3, 2]  # band 2 is end-filled on 6 Jan: the flag says end-filled
    gappy = np.array([[100, 200, 300], [100, FILL, 300]], np.int16)[None, :, :]
    values, flag = regular_kernel(gappy, t, steps, "linear", 10, max_gap_days=12)
    assert values[0, 0].tolist() == [100, 250] and values[0, 1].tolist() == [100, FILL]
    assert flag[0].tolist() == [1, 0]  # 16 Jan: band 2's gap is 15 days: missing wins
    values, flag = regular_kernel(block, t, steps, "median", 5)
    assert values[0, 0].tolist() == [100, FILL] and values[0, 1].tolist() == [FILL, FILL]
    assert flag[0].tolist() == [0, 0]  # band 2 has no observation in the first window
    values, flag = regular_kernel(block, t, steps, "median", 10)
    assert values[0, :, 0].tolist() == [150, 200] and flag[0].tolist() == [4, 4]


# ----------------------------------------------------------------------------- references
def reference_linear(cube, times, steps, fill_ends=True, max_gap_days=None):
    """Per pixel: np.interp on the observed (time, value) pairs at the steps, the end and gap
    rules of the gap-fill written out; returns (values, flags)."""
    n_s = len(steps)
    flat = cube.reshape(cube.shape[0], -1)
    ref = np.full((n_s, flat.shape[1]), FILL, dtype=np.int64)
    flag = np.zeros((n_s, flat.shape[1]), dtype=np.uint8)
    gap = None if max_gap_days is None else max_gap_days * DAY
    for p in range(flat.shape[1]):
        obs = flat[:, p] != FILL
        if not obs.any():
            continue
        to, vo = times[obs].astype(np.float64), flat[obs, p].astype(np.float64)
        for k, s in enumerate(steps):
            if s in to:
                ref[k, p], flag[k, p] = vo[list(to).index(s)], 1
            elif to[0] < s < to[-1]:
                j = np.searchsorted(to, s)
                if gap is None or to[j] - to[j - 1] <= gap:
                    ref[k, p], flag[k, p] = np.rint(np.interp(s, to, vo)), 2
            elif fill_ends:
                near = 0 if s < to[0] else -1
                if gap is None or abs(s - to[near]) <= gap:
                    ref[k, p], flag[k, p] = vo[near], 3
    return ref.reshape((n_s, *cube.shape[1:])), flag.reshape((n_s, *cube.shape[1:]))


def reference_median(cube, times, steps, step_days):
    n_s = len(steps)
    flat = cube.reshape(cube.shape[0], -1)
    ref = np.full((n_s, flat.shape[1]), FILL, dtype=np.int64)
    flag = np.zeros((n_s, flat.shape[1]), dtype=np.uint8)
    for k, s in enumerate(steps):
        win = (times >= s) & (times < s + step_days * DAY)
        for p in range(flat.shape[1]):
            vals = flat[win, p]
            vals = vals[vals != FILL]
            if vals.size:
                ref[k, p], flag[k, p] = np.rint(np.median(vals.astype(np.float64))), 4
    return ref.reshape((n_s, *cube.shape[1:])), flag.reshape((n_s, *cube.shape[1:]))


def the_config(method, step_days=10, **gap):
    return {
        "stac": {"catalog": "demo", "collection": "sentinel-2-l2a"},
        "dates": {"start": "2021-10-20", "end": "2022-10-01"},
        "bands": BANDS,
        "indices": ["NDWI", "NDVI"],
        "gapfill": {"fill_ends": True, "max_gap_days": None, **gap},
        "regular": {"step_days": step_days, "method": method},
    }


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("regular")
    grid = make_grid(150, 130)
    paths, cubes, strings, items, _ = make_masked_stores(tmp, grid, BANDS, n_dates=12, seed=7)
    manifest = tmp / "manifest.json"
    manifest.write_text(json.dumps({"aoi": "site_1", "catalog": "demo", "collection": "sentinel-2-l2a"}))
    times = np.array([epoch_seconds(s) for s in strings], dtype=np.int64)
    return tmp, paths, cubes, times, manifest


@pytest.mark.parametrize(
    "method, gap",
    [("linear", {}), ("linear", {"fill_ends": False, "max_gap_days": 20}), ("median", {})],
    ids=["linear", "linear-no-ends-max-gap", "median"],
)
def test_regular_product_matches_the_references(stores, tmp_path, monkeypatch, method, gap):
    """Through the dask driver in 64-pixel chunks (3 x 3 of them) with 2 threads: every band
    and the flag equal the per-pixel references; the indices follow their definitions from
    the file's reflectance; the steps are the configured ones."""
    monkeypatch.setattr(rg, "CHUNK", 64)
    _, paths, cubes, times, manifest = stores
    cfg = the_config(method, **gap)
    out = tmp_path / "site_1_2021-10-20_2022-10-01_10d.nc"
    regular(paths, manifest, cfg, out, threads=2)
    steps = step_times("2021-10-20", "2022-10-01", 10).astype(np.int64)
    with netCDF4.Dataset(out) as nc:
        nc.set_auto_maskandscale(False)
        assert nc["time"][:].astype(np.int64).tolist() == steps.tolist()
        got = {b: np.asarray(nc[b][:]) for b in [*BANDS, "flag"]}
        ndwi = np.asarray(nc["NDWI"][:])
        assert json.loads(nc.regular)["method"] == method
        assert json.loads(nc.configuration)["regular"] == cfg["regular"]
        assert nc["flag"].flag_meanings == ("missing median" if method == "median" else rg.FLAGS["linear"][1])
    flags = []
    for b in BANDS:
        if method == "median":
            ref, ref_flag = reference_median(cubes[b], times, steps, 10)
        else:
            ref, ref_flag = reference_linear(
                cubes[b], times, steps, gap.get("fill_ends", True), gap.get("max_gap_days")
            )
        np.testing.assert_array_equal(got[b], ref)
        flags.append(ref_flag)
    np.testing.assert_array_equal(got["flag"].view(np.uint8), flags[0])  # one cloud mask for all bands
    values = set(np.unique(flags[0]).tolist())
    assert values == ({0, 4} if method == "median" else ({0, 2} if gap else {2, 3}))
    b03, b08 = got["B03"].astype(np.float64), got["B08"].astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        expected = np.where((b03 == FILL) | (b08 == FILL) | (b03 + b08 == 0), np.nan, (b03 - b08) / (b03 + b08))
    np.testing.assert_allclose(ndwi, expected, rtol=2e-6, atol=1e-7)


def test_an_observation_at_a_step_is_taken_as_is(tmp_path):
    """Acquisitions at 00:00 UTC on a step's day: the step is that observation (flag 1)."""
    from conftest import write_batch_store

    grid = make_grid(6, 5)
    whens = ["2022-03-01T00:00:00Z", "2022-03-04T10:00:00Z", "2022-03-11T00:00:00Z"]
    cube = np.stack([np.full((5, 6), v, np.int16) for v in (100, 400, 900)])
    attrs = {"stage": "mask", "grid": grid, "bands": ["B04"]}
    p = write_batch_store(tmp_path / "m.zarr", grid, {"B04": cube}, attrs, whens, valid_fraction=[1.0] * 3)
    ds, *_ = regular_dataset([p], ["B04"], "2022-03-01", "2022-03-12", 5, "linear")
    # the 6 Mar step: between 4 Mar 10:00 (400) and 11 Mar (900), 38 of 158 hours in
    assert ds["B04"].values[:, 0, 0].tolist() == [100, int(np.rint(400 + 500 * 38 / 158)), 900]
    assert ds["flag"].values[:, 0, 0].tolist() == [1, 2, 1]


def test_regular_is_lazy_chunked_in_space_with_all_dates(stores, monkeypatch):
    monkeypatch.setattr(rg, "CHUNK", 64)
    _, paths, _, times, _ = stores
    ds, *_ = regular_dataset(paths, BANDS, "2021-10-20", "2022-10-01", 10, "linear")
    for name in [*BANDS, "flag"]:
        chunks = ds[name].chunks
        assert chunks is not None  # dask, not computed
        assert chunks[0] == (ds.sizes["time"],)  # every step of a pixel in one chunk
        assert max(chunks[1]) <= 64 and max(chunks[2]) <= 64 and len(chunks[1]) * len(chunks[2]) == 9


def regular_peak(tmp_path, n: int, n_t: int = 40) -> tuple[int, int]:
    """(cube bytes, peak Python-traced bytes) of the regular product of a random n x n cube
    of 2 bands with an index, 30 % missing, in 128-pixel chunks."""
    p, cube_bytes = random_masked_store(tmp_path, n, n_t)
    start = dt.datetime(2022, 1, 1, 11, tzinfo=dt.UTC)
    manifest = tmp_path / "manifest.json"
    manifest.write_text("{}")
    cfg = {
        "dates": {"start": "2022-01-01", "end": (start + dt.timedelta(days=5 * n_t)).date().isoformat()},
        "bands": ["B03", "B08"],
        "indices": ["NDWI"],
        "gapfill": {"fill_ends": True, "max_gap_days": None},
        "regular": {"step_days": 5, "method": "linear"},
    }
    tracemalloc.start()
    try:
        regular([p], manifest, cfg, tmp_path / f"r{n}.nc", threads=1)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    with xr.open_dataset(tmp_path / f"r{n}.nc") as ds:
        assert ds.sizes["time"] == n_t and np.isfinite(ds.B08.values[:, ::7, ::7]).mean() > 0.99
    return cube_bytes, peak


def test_memory_does_not_grow_with_the_cube(tmp_path, monkeypatch):
    """Memory bounded: from a 384 x 384 to a 768 x 768 cube (40 dates, 2 bands, an index;
    23.6 -> 94.4 MB of int16), written in 128-pixel chunks, the peak of Python-traced memory
    grows by a small part of the cube's growth (a few chunks are in memory at a time; a cube
    larger than memory works). Holding every chunk would add at least the 71 MB."""
    import s2ts.zarr_io as zio

    monkeypatch.setattr(rg, "CHUNK", 128)
    monkeypatch.setattr(zio, "CHUNK", 128)  # the masked store in chunks of the same size
    small, small_peak = regular_peak(tmp_path, 384)
    big, big_peak = regular_peak(tmp_path, 768)
    assert big_peak - small_peak < 0.1 * (big - small), (small_peak / 1e6, big_peak / 1e6)
    assert big_peak < 0.5 * big


def test_cf_1_8_no_errors(stores, tmp_path, no_network):
    from test_netcdf import check_cf_1_8

    _, paths, _, _, manifest = stores
    for method in ("linear", "median"):
        out = tmp_path / f"{method}.nc"
        regular(paths, manifest, the_config(method), out)
        check_cf_1_8(out, tmp_path, no_network)
        with xr.open_dataset(out) as ds:
            assert ds.rio.crs.to_epsg() == 3035
            if method == "median":
                assert ds.B04.attrs["cell_methods"] == "time: median"
                assert (ds.time_bnds.values[:, 1] - ds.time_bnds.values[:, 0] == np.timedelta64(10, "D")).all()


def test_errors_and_wrapper(stores, tmp_path):
    _, paths, _, _, manifest = stores
    cfg = the_config("linear")
    with pytest.raises(UserError, match="regular.method: 'mean'"):
        regular(paths, manifest, {**cfg, "regular": {"step_days": 10, "method": "mean"}}, tmp_path / "x.nc")
    with pytest.raises(UserError, match="no 'regular' settings"):
        regular(paths, manifest, {**cfg, "regular": None}, tmp_path / "x.nc")
    with pytest.raises(UserError, match="B11"):
        regular(paths, manifest, {**cfg, "bands": ["B03", "B11"], "indices": []}, tmp_path / "x.nc")
    assert not (tmp_path / "x.nc").exists()
    smk = SimpleNamespace(
        input=SimpleNamespace(masked=[str(p / "zarr.json") for p in paths], manifest_info=str(manifest)),
        output=SimpleNamespace(nc=str(tmp_path / "w.nc")),
        params=SimpleNamespace(config=the_config("median", step_days=30)),
        threads=1,
    )
    rg.regular_from_snakemake(smk)
    with xr.open_dataset(tmp_path / "w.nc") as ds:
        assert ds.sizes["time"] == 12 and str(ds.time.values[1])[:10] == "2021-11-19"


# ----------------------------------------------------------------------------- on the demo
def demo_observations(results):
    """The options run's masked stores as one (time, y, x) Dataset of DN (missing -32768)."""
    import glob

    from s2ts.zarr_io import open_dataset

    stores = [open_dataset(p).load() for p in sorted(glob.glob(str(results / "1" / "mask" / "*.zarr")))]
    return xr.concat(stores, "time").sortby("time")


def test_demo_median_steps_match_the_truth(options_run):
    """The options run's 10-day medians against the median of the generator's clear-sky
    truth over the same pixel's observed dates in each window: only the observation
    error remains (median 0, 99th percentile below 0.03 reflectance)."""
    from conftest import demo_truth_images

    obs = demo_observations(options_run)
    times = obs.time.values
    truth = demo_truth_images(options_run, times)
    inside = np.load(options_run / "1" / "aoi" / "inside.npy").astype(bool)
    reg = options_run / "1" / "1_2022-01-01_2022-04-01_10d.nc"
    with xr.open_dataset(reg) as ds:
        steps = ds.time.values
        assert [str(s)[:10] for s in steps] == [str(s)[:10] for s in step_times("2022-01-01", "2022-04-01", 10)]
        errors, n_steps = [], 0
        for k, s in enumerate(steps):
            window = [i for i, t in enumerate(times) if s <= t < s + np.timedelta64(10, "D")]
            flag = ds.flag.values[k]
            if not window:
                assert (flag[inside] == 0).all()
                continue
            n_steps += 1
            for b in BANDS:
                seen = obs[b].values[window] != FILL  # (dates, y, x)
                stack = np.where(seen, np.stack([truth[times[i]][b] for i in window]), np.nan)
                with warnings.catch_warnings():  # all-NaN pixels: no observation in the window
                    warnings.simplefilter("ignore", RuntimeWarning)
                    expected = np.nanmedian(stack, axis=0)
                has = seen.any(axis=0)
                np.testing.assert_array_equal(flag[inside] == 4, has[inside])
                errors.append(np.abs(ds[b].values[k] - expected)[has & inside])
    errors = np.concatenate(errors)
    assert n_steps >= 7 and errors.size > 100_000
    assert np.median(errors) < 0.001 and np.percentile(errors, 99) < 0.03, np.percentile(errors, [50, 90, 99, 100])


def test_demo_linear_steps_match_the_truth(options_run, tmp_path):
    """The linear regular product of the options run's observations (made here) against
    the generator's truth interpolated in time the same way, at each pixel between its
    observed dates: the observation error only."""
    import glob

    from conftest import OPTIONS, demo_truth_images

    obs = demo_observations(options_run)
    times = obs.time.values
    truth = demo_truth_images(options_run, times)
    inside = np.load(options_run / "1" / "aoi" / "inside.npy").astype(bool)
    cfg = {**OPTIONS, "bands": BANDS, "regular": {"step_days": 7, "method": "linear"}}
    cfg["gapfill"] = {"fill_ends": True, "max_gap_days": None}
    out = tmp_path / "linear_7d.nc"
    stores = sorted(glob.glob(str(options_run / "1" / "mask" / "*.zarr")))
    regular(stores, options_run / "1" / "manifest.json", cfg, out)
    t_s = (times - times[0]) / np.timedelta64(1, "s")
    errors = []
    with xr.open_dataset(out) as ds:
        for k, s in enumerate(ds.time.values):
            ts = (s - times[0]) / np.timedelta64(1, "s")
            interior = ds.flag.values[k] == 2
            for b in BANDS:
                seen = obs[b].values != FILL
                # previous / next observed date of each pixel, and the truth there
                before = np.where(seen & (t_s[:, None, None] <= ts), np.arange(len(times))[:, None, None], -1).max(0)
                after = np.where(seen & (t_s[:, None, None] >= ts), np.arange(len(times))[:, None, None], 99).min(0)
                sel = interior & inside & (before >= 0) & (after < 99)
                tr = np.stack([truth[t][b] for t in times])
                y0 = np.take_along_axis(tr, before.clip(0)[None], 0)[0]
                y1 = np.take_along_axis(tr, after.clip(max=len(times) - 1)[None], 0)[0]
                with np.errstate(divide="ignore", invalid="ignore"):  # pixels without a bracket: left out below
                    w = np.where(
                        after > before,
                        (ts - t_s[before.clip(0)]) / (t_s[after.clip(max=len(times) - 1)] - t_s[before.clip(0)]),
                        0.0,
                    )
                    expected = y0 + (y1 - y0) * w
                errors.append(np.abs(ds[b].values[k] - expected)[sel])
    errors = np.concatenate(errors)
    assert errors.size > 100_000
    assert np.median(errors) < 0.002 and np.percentile(errors, 99) < 0.03, np.percentile(errors, [50, 90, 99, 100])


def test_demo_run_lists_the_regular_product(options_run):
    """The run's closing summary (s2ts.outputs) names the regular product with the NetCDF."""
    err = (options_run / "snakemake.stderr").read_text()
    nc = options_run / "1" / "1_2022-01-01_2022-04-01.nc"
    assert f"    NetCDF  {nc}\n    regular {nc.with_name('1_2022-01-01_2022-04-01_10d.nc')}\n" in err
    bench = (options_run / "benchmarks" / "summary.csv").read_text()
    assert "\n1,regular,1," in bench  # the stage's benchmark is in the summary, after netcdf
    assert bench.index(",netcdf,") < bench.index(",regular,") < bench.index(",figures,")
