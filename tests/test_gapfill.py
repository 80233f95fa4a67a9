"""Gap-fill stage: values checked against plain NumPy references written here
(np.interp on the real acquisition times, per pixel), never against the code itself."""

from __future__ import annotations

import datetime as dt
import json
import logging
import tracemalloc

import numpy as np
import pyproj
import pytest

import s2ts.gapfill as gf
from s2ts.errors import UserError
from s2ts.gapfill import gapfill, gapfill_series
from s2ts.zarr_io import open_dataset, read_attrs, to_seconds

DAY = 86400
FILL = -32768


# ----------------------------------------------------------------------------- references
def reference_series(values, times, fill_ends=True, max_gap_days=None):
    """Loop reference: per pixel np.interp on the observed (time, value) pairs, which is
    linear in real time between observations and constant beyond them (= the end rule).
    Returns (reference float values, flags)."""
    n_t = values.shape[0]
    flat = values.reshape(n_t, -1)
    ref = np.full(flat.shape, np.nan)
    flag = np.zeros(flat.shape, dtype=np.uint8)
    times = np.asarray(times, dtype=np.float64)
    for p in range(flat.shape[1]):
        s = flat[:, p]
        obs = s != FILL
        if not obs.any():
            continue
        to, vo = times[obs], s[obs].astype(np.float64)
        interp = np.interp(times, to, vo)
        for i in range(n_t):
            if obs[i]:
                ref[i, p], flag[i, p] = s[i], 1
            elif to[0] < times[i] < to[-1]:
                j = np.searchsorted(to, times[i])
                if max_gap_days is None or to[j] - to[j - 1] <= max_gap_days * DAY:
                    ref[i, p], flag[i, p] = interp[i], 2
            elif fill_ends:
                nearest = to[0] if times[i] < to[0] else to[-1]
                if max_gap_days is None or abs(times[i] - nearest) <= max_gap_days * DAY:
                    ref[i, p], flag[i, p] = interp[i], 3
    return ref.reshape(values.shape), flag.reshape(values.shape)


def assert_matches(filled, flag, ref, ref_flag):
    """Exact equality with the rounded reference; a difference of 1 DN is tolerated only
    where the float reference sits at .5 (np.interp's own rounding may tip it)."""
    assert filled.dtype == np.int16 and flag.dtype == np.uint8
    np.testing.assert_array_equal(flag, ref_flag)
    known = ~np.isnan(ref)
    np.testing.assert_array_equal(filled[~known], FILL)
    diff = np.abs(filled[known].astype(np.int64) - np.rint(ref[known]).astype(np.int64))
    at_half = np.abs(np.abs(ref[known] - np.floor(ref[known])) - 0.5) < 1e-6
    assert diff.max(initial=0) <= 1
    assert np.all(diff[~at_half] == 0), "gap-fill differs from the np.interp reference"


def random_series(rng, n_t, shape, p_missing=0.5):
    times = np.cumsum(rng.integers(2, 31, n_t)) * DAY + rng.integers(0, DAY, n_t)
    times = np.sort(times).astype(np.float64)
    assert np.all(np.diff(times) > 0)
    values = rng.integers(-1000, 12000, (n_t, *shape)).astype(np.int16)
    values[rng.random(values.shape) < p_missing] = FILL
    flat = values.reshape(n_t, -1)
    flat[:, 0] = FILL  # never observed
    flat[:, 1] = FILL  # observed once only
    flat[n_t // 2, 1] = 777
    flat[:3, 2] = FILL  # gaps at both ends
    flat[-3:, 2] = FILL
    flat[:, 3] = FILL  # observed at the first and last date only
    flat[0, 3], flat[-1, 3] = 100, -900
    return values, times


# ----------------------------------------------------------------------------- the series
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(
    "fill_ends,max_gap_days",
    [(True, None), (False, None), (True, 20), (False, 45), (True, 1000)],
)
def test_series_equals_numpy_reference(seed, fill_ends, max_gap_days):
    rng = np.random.default_rng(seed)
    values, times = random_series(rng, 23, (17, 13))
    before = values.copy()
    filled, flag = gapfill_series(values, times, fill_ends=fill_ends, max_gap_days=max_gap_days)
    np.testing.assert_array_equal(values, before)  # input untouched
    assert filled.shape == values.shape and flag.shape == values.shape
    ref, ref_flag = reference_series(values, times, fill_ends, max_gap_days)
    assert_matches(filled, flag, ref, ref_flag)
    assert (flag == 2).any() and (flag == 0).any()
    if fill_ends:
        assert (flag == 3).any()


def test_series_blocks_do_not_change_results(monkeypatch):
    rng = np.random.default_rng(5)
    values, times = random_series(rng, 11, (9, 31), p_missing=0.6)
    ref, ref_flag = reference_series(values, times)
    monkeypatch.setattr(gf, "_BLOCK_ELEMENTS", 7 * 11)  # 7 pixels per block
    assert_matches(*gapfill_series(values, times), ref, ref_flag)


def test_linear_is_not_back_or_forward_fill():
    """The original package's "linear" gap-fill was a back/forward fill (interpolate_na()
    without dim did nothing): 0 at day 0 and 1000 at day 10 must give 200 at day 2 and
    500 at day 5, not 0 or 1000."""
    values = np.array([0, FILL, FILL, 1000], dtype=np.int16)[:, None]
    times = np.array([0, 2, 5, 10], dtype=np.float64) * DAY
    filled, flag = gapfill_series(values, times)
    assert filled[:, 0].tolist() == [0, 200, 500, 1000]
    assert flag[:, 0].tolist() == [1, 2, 2, 1]


def test_uneven_gaps_weigh_by_real_time():
    """t = 0, 5, 55 days, middle missing: 1/11 of the way, not 1/2 (index interpolation)."""
    values = np.array([0, FILL, 1100], dtype=np.int16)[:, None]
    filled, flag = gapfill_series(values, np.array([0, 5, 55], dtype=np.float64) * DAY)
    assert filled[1, 0] == 100
    assert flag[1, 0] == 2


def test_ends_and_max_gap_rules():
    t = np.array([0, 10, 20, 60, 70, 75], dtype=np.float64) * DAY
    v = np.array([FILL, 100, FILL, FILL, 500, FILL], dtype=np.int16)[:, None]
    filled, flag = gapfill_series(v, t)
    assert filled[:, 0].tolist() == [100, 100, 167, 433, 500, 500]  # 100 + 400 * 10/60, 100 + 400 * 50/60
    assert flag[:, 0].tolist() == [3, 1, 2, 2, 1, 3]
    # gap 10 -> 70 is 60 days: stays missing with max_gap_days=30; ends are 10 and 5 days away
    filled, flag = gapfill_series(v, t, max_gap_days=30)
    assert filled[:, 0].tolist() == [100, 100, FILL, FILL, 500, 500]
    assert flag[:, 0].tolist() == [3, 1, 0, 0, 1, 3]
    filled, flag = gapfill_series(v, t, max_gap_days=7)  # the first date is 10 days from day 10
    assert filled[:, 0].tolist() == [FILL, 100, FILL, FILL, 500, 500]
    filled, flag = gapfill_series(v, t, max_gap_days=60)  # exactly 60: allowed
    assert flag[:, 0].tolist() == [3, 1, 2, 2, 1, 3]
    filled, flag = gapfill_series(v, t, fill_ends=False)
    assert filled[:, 0].tolist() == [FILL, 100, 167, 433, 500, FILL]
    assert flag[:, 0].tolist() == [0, 1, 2, 2, 1, 0]


def test_negative_and_extreme_values_round_to_nearest():
    t = np.array([0, 1, 3], dtype=np.float64) * DAY
    v = np.array([[-1000, 32767], [FILL, FILL], [-999, -32767]], dtype=np.int16)
    filled, _ = gapfill_series(v, t)
    assert filled[1].tolist() == [int(np.rint(-1000 + 1 / 3)), int(np.rint(32767 - 65534 / 3))]


def test_series_validates_input():
    t = np.array([0.0, 1.0])
    with pytest.raises(TypeError):
        gapfill_series(np.zeros((2, 3), dtype=np.float64), t)
    with pytest.raises(ValueError):
        gapfill_series(np.zeros((2, 3), dtype=np.int16), np.array([1.0, 1.0]))
    with pytest.raises(ValueError):
        gapfill_series(np.zeros((2, 3), dtype=np.int16), np.array([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError):
        gapfill_series(np.zeros((2, 3), dtype=np.int16), t, max_gap_days=0)


def test_no_float64_cube_in_memory():
    """Peak temporary memory stays well below one float64 copy of the cube: beyond the
    outputs (the filled int16 copy and the uint8 flags) it is bounded by one block of
    ``_BLOCK_ELEMENTS`` (date, pixel) elements, whatever the cube's size (measured:
    about 4.7 bytes per block element; a float64 temporary of a block would be 8)."""
    rng = np.random.default_rng(3)
    values, times = random_series(rng, 60, (512, 512))
    assert values.size > 3 * gf._BLOCK_ELEMENTS  # several blocks
    tracemalloc.start()
    try:
        filled, flag = gapfill_series(values, times)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert filled.dtype == np.int16 and flag.dtype == np.uint8
    assert peak < 0.75 * values.size * 8, f"peak {peak / 1e6:.1f} MB"
    temporaries = peak - filled.nbytes - flag.nbytes
    assert temporaries < 6 * gf._BLOCK_ELEMENTS, f"temporaries {temporaries / 1e6:.1f} MB"


# ----------------------------------------------------------------------------- the driver
def make_grid(width, height, crs="EPSG:3035", x0=3426400.0, y0=2448400.0, r=40.0):
    c = pyproj.CRS.from_user_input(crs)
    return {
        "crs": crs,
        "epsg": c.to_epsg(),
        "crs_wkt": c.to_wkt(),
        "resolution": r,
        "bounds": [x0, y0, x0 + r * width, y0 + r * height],
        "width": width,
        "height": height,
        "transform": [r, 0.0, x0, 0.0, -r, y0 + r * height],
    }


def iso(d: dt.datetime) -> str:
    return d.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def make_masked_stores(root, grid, bands, n_dates=12, seed=0, all_cloud=3, clear=7):
    """Synthetic masked batch stores (three batches of consecutive dates, as the mask
    stage writes them); returns (paths in a shuffled order, cube dict by band in time
    order, datetime strings in time order, item records in time order, valid fractions)."""
    import json

    from conftest import write_batch_store

    rng = np.random.default_rng(seed)
    h, w = grid["height"], grid["width"]
    start = dt.datetime(2021, 11, 3, 11, 7, 29, 24000, tzinfo=dt.UTC)
    days = np.cumsum(rng.integers(2, 31, n_dates))
    whens = [start + dt.timedelta(days=int(d), seconds=int(rng.integers(-600, 600))) for d in days]
    cubes = {b: rng.integers(-1000, 12000, (n_dates, h, w)).astype(np.int16) for b in bands}
    clouds = rng.random((n_dates, h, w)) < 0.45
    clouds[all_cloud] = True
    clouds[clear] = False
    clouds[:, 5:9, 250:262] = True  # never observed, across a chunk edge
    clouds[:, 270:275, 10:14] = True
    clouds[2, 270:275, 10:14] = False  # observed once
    for b in bands:
        cubes[b][clouds] = FILL
    strings = [iso(when) for when in whens]
    items = [
        json.dumps(
            [
                {"id": f"S2B_MSIL2A_{s[:10].replace('-', '')}_T30TXQ", "datetime": s, "processing_baseline": "04.00"},
                {"id": f"S2B_MSIL2A_{s[:10].replace('-', '')}_T30TXR", "datetime": s, "processing_baseline": "04.00"},
            ]
        )
        for s in strings
    ]
    valid = (1 - clouds.mean(axis=(1, 2))).astype(np.float32)
    attrs = {"stage": "mask", "aoi": "site_1", "grid": grid, "bands": bands, "mask_band": "SCL"}
    paths = []
    for k, sel in enumerate(np.array_split(np.arange(n_dates), 3)):
        p = root / "masked" / f"b{k}.zarr"
        write_batch_store(
            p,
            grid,
            {b: cubes[b][sel] for b in bands},
            attrs,
            [strings[i] for i in sel],
            valid_fraction=valid[sel],
            item_records=[items[i] for i in sel],
        )
        paths.append(p)
    return [paths[i] for i in rng.permutation(3)], cubes, strings, items, valid


def epoch_seconds(iso_string: str) -> int:
    return int(np.datetime64(iso_string.rstrip("Z"), "us").astype("datetime64[s]").astype(np.int64))


def reference_cube(cube, times):
    """Per pixel np.interp (linear in real time, constant beyond the first and last
    observations = fill_ends without max_gap_days); flags from the observation times."""
    n_t = cube.shape[0]
    flat = cube.reshape(n_t, -1)
    ref = np.full(flat.shape, np.nan)
    flag = np.zeros(flat.shape, dtype=np.uint8)
    t = times.astype(np.float64)
    for p in range(flat.shape[1]):
        obs = flat[:, p] != FILL
        if not obs.any():
            continue
        to = t[obs]
        ref[:, p] = np.interp(t, to, flat[obs, p].astype(np.float64))
        flag[:, p] = np.where(obs, 1, np.where((t > to[0]) & (t < to[-1]), 2, 3))
    return ref.reshape(cube.shape), flag.reshape(cube.shape)


@pytest.mark.parametrize("threads", [1, 2])  # 1 spatial chunk at a time or 2
def test_gapfill_driver_matches_reference(tmp_path, threads, monkeypatch):
    monkeypatch.setattr(gf, "CHUNK", 256)  # several chunks on a small grid
    bands = ["B03", "B04", "B08"]
    grid = make_grid(280, 300)
    paths, cubes, strings, items, valid = make_masked_stores(tmp_path, grid, bands)
    out = tmp_path / "site_1" / "gapfill.zarr"
    attrs = gapfill(paths, out, bands, threads=threads)
    times = np.array([epoch_seconds(s) for s in strings], dtype=np.int64)

    g = open_dataset(out)
    n_t = len(strings)
    np.testing.assert_array_equal(to_seconds(g["time"].values), times)
    f = g["flag"].values
    for b in bands:
        a = g[b]
        assert a.dtype == np.int16 and a.attrs["_FillValue"] == FILL
        assert a.shape == (n_t, 300, 280)
        assert a.encoding["chunks"] == (gf.TIME_CHUNK, 256, 256)  # stored by 16 dates: an update rewrites a few
        ref, ref_flag = reference_cube(cubes[b], times)
        assert_matches(a.values, f, ref, ref_flag)
    assert g["flag"].dtype == np.uint8 and g["flag"].encoding["chunks"] == (gf.TIME_CHUNK, 256, 256)
    assert not (f[3] == 1).any()  # all-cloud date: nothing observed
    assert (f[3] == 2).any()
    clear = f[7].copy()
    assert (clear[5:9, 250:262] == 0).all() and (clear[270:275, 10:14] == 3).all()
    clear[5:9, 250:262] = clear[270:275, 10:14] = 1
    assert (clear == 1).all()  # clear date: every other pixel observed
    assert (f[:, 5:9, 250:262] == 0).all()  # never observed: stays missing
    once = f[:, 270:275, 10:14]
    assert (once[2] == 1).all() and (once[np.arange(n_t) != 2] == 3).all()
    np.testing.assert_array_equal(g["x"].values, 3426400.0 + 40.0 * (np.arange(280) + 0.5))
    np.testing.assert_array_equal(g["y"].values, 2448400.0 + 40.0 * 300 - 40.0 * (np.arange(300) + 0.5))
    assert g.rio.crs.to_epsg() == 3035

    stored = read_attrs(out)
    assert stored == json.loads(json.dumps(attrs))
    assert [str(d) for d in g["solar_day"].values] == [s[:10] for s in strings]
    assert list(g["item_records"].values) == items
    np.testing.assert_array_equal(g["valid_fraction"].values, valid)
    assert valid[3] == 0.0 and valid[7] > 0.99
    assert stored["grid"] == grid and stored["bands"] == bands
    assert stored["gapfill"]["method"] == "linear"
    assert stored["gapfill"]["fill_ends"] is True and stored["gapfill"]["max_gap_days"] is None


def test_gapfill_driver_exact_where_not_a_tie(tmp_path):
    """Same as above on a single band, checking exact equality away from .5 ties."""
    grid = make_grid(270, 260)
    paths, cubes, strings, _, _ = make_masked_stores(tmp_path, grid, ["B04"], n_dates=9, seed=4, all_cloud=0, clear=8)
    out = tmp_path / "cube.zarr"
    gapfill(paths, out, ["B04"], fill_ends=True, max_gap_days=40)
    times = np.array([epoch_seconds(s) for s in strings], dtype=np.float64)
    g = open_dataset(out)
    ref, ref_flag = reference_series(cubes["B04"][:, ::7, ::5], times, True, 40)
    assert_matches(g["B04"].values[:, ::7, ::5], g["flag"].values[:, ::7, ::5], ref, ref_flag)


def kernel_calls(monkeypatch) -> list[tuple[int, int]]:
    """The (rows, columns) of every non-empty block the gap-fill kernel is called on,
    appended as the stage runs."""
    calls = []
    kernel = gf.fill_kernel

    def counted(block, *args, **kwargs):
        if block.size:
            calls.append(block.shape[:2])
        return kernel(block, *args, **kwargs)

    monkeypatch.setattr(gf, "fill_kernel", counted)
    return calls


@pytest.mark.parametrize("threads", [1, 2])
def test_each_chunk_is_filled_once(tmp_path, threads, monkeypatch, caplog):
    """One kernel call per spatial chunk gives the filled bands and the flag; the
    logged flag counts are read back from the written store (computed beside the
    write, dask fused a second copy of the kernel into the counts' graph, which
    doubled the stage's work)."""
    monkeypatch.setattr(gf, "CHUNK", 256)
    grid = make_grid(280, 300)  # 2 x 2 chunks of 256 x 256 pixels
    paths, cubes, strings, *_ = make_masked_stores(tmp_path, grid, ["B03", "B04"])
    calls = kernel_calls(monkeypatch)
    with caplog.at_level(logging.INFO, logger="gapfill"):
        gapfill(paths, tmp_path / "out.zarr", ["B03", "B04"], threads=threads)
    assert sorted(calls) == [(44, 24), (44, 256), (256, 24), (256, 256)]
    # the logged counts, against the flags of an independent per-pixel reference
    # (the two bands share their clouds, so their flags are the same)
    times = np.array([epoch_seconds(s) for s in strings], dtype=np.int64)
    _, ref_flag = reference_cube(cubes["B03"], times)
    n = np.bincount(ref_flag.ravel(), minlength=4)
    assert n[0] > 0 and n[2] > 0 and n[3] > 0
    expected = f"{n[1]} observed, {n[2]} interpolated, {n[3]} end-filled, {n[0]} still missing pixel-dates"
    assert expected in caplog.text


@pytest.mark.parametrize(
    "threads, blocks", [(1, [(31, 40)]), (2, [(15, 40), (16, 40)]), (3, [(9, 40), (11, 40), (11, 40)])]
)
def test_a_small_grid_is_split_so_that_every_thread_has_a_chunk(tmp_path, threads, blocks, monkeypatch, caplog):
    """A 40 x 31 grid is one stored 512 x 512 chunk: filled as one block it would leave
    all threads but one idle. It is split in rows, ceil(31 / threads) at most per
    chunk, every chunk filled once; the log states the chunks really used."""
    grid = make_grid(40, 31)
    paths, cubes, strings, *_ = make_masked_stores(tmp_path, grid, ["B04"])
    calls = kernel_calls(monkeypatch)
    with caplog.at_level(logging.INFO, logger="gapfill"):
        gapfill(paths, tmp_path / "out.zarr", ["B04"], threads=threads)
    assert sorted(calls) == blocks
    rows = -(-31 // threads)
    assert f"in {threads} chunk(s) of up to {rows} x 40 pixels on {threads} thread(s)" in caplog.text
    # the split changes nothing in the result: the independent per-pixel reference
    times = np.array([epoch_seconds(s) for s in strings], dtype=np.int64)
    ref, ref_flag = reference_cube(cubes["B04"], times)
    g = open_dataset(tmp_path / "out.zarr")
    assert_matches(g["B04"].values, g["flag"].values, ref, ref_flag)


def test_gapfill_flag_combines_bands(tmp_path):
    from conftest import write_batch_store

    grid = make_grid(20, 10)
    a = np.full((10, 20), 100, np.int16)
    b = a.copy()
    b[0, 0] = FILL  # one band missing at one pixel on the middle date
    whens = [f"2022-03-0{day}T10:00:00Z" for day in (1, 5, 9)]
    attrs = {"stage": "mask", "grid": grid, "bands": ["B03", "B04"]}
    arrays = {"B03": np.stack([a, a, a]), "B04": np.stack([a, b, a])}
    write_batch_store(tmp_path / "m.zarr", grid, arrays, attrs, whens, valid_fraction=[1.0, 1.0, 1.0])
    gapfill([tmp_path / "m.zarr"], tmp_path / "out.zarr", ["B03", "B04"])
    f = open_dataset(tmp_path / "out.zarr")["flag"].values
    assert f[1, 0, 0] == 2 and (f[1].ravel()[1:] == 1).all()


def test_gapfill_errors(tmp_path):

    with pytest.raises(UserError, match="no masked store"):
        gapfill([], tmp_path / "out.zarr", ["B04"])
    p = one_date_store(tmp_path / "m.zarr", "2022-01-01T11:00:00Z")
    with pytest.raises(UserError, match="B08"):
        gapfill([p], tmp_path / "out.zarr", ["B04", "B08"])
    assert not (tmp_path / "out.zarr").exists()
    q = one_date_store(tmp_path / "q.zarr", "2022-01-01T11:30:00Z")
    with pytest.raises(UserError, match="share the date"):
        gapfill([p, q], tmp_path / "out.zarr", ["B04"])


def one_date_store(path, when: str):
    """A mask-stage store of one date (``when``) on an 8 x 8 grid, band B04 all ones."""
    from conftest import write_batch_store

    grid = make_grid(8, 8)
    attrs = {"stage": "mask", "grid": grid, "bands": ["B04"]}
    return write_batch_store(path, grid, {"B04": np.ones((1, 8, 8), np.int16)}, attrs, [when], valid_fraction=[1.0])


def test_a_failed_write_leaves_no_store(tmp_path, monkeypatch):
    """Stores are written under a temporary name and renamed: an error midway leaves nothing."""
    import xarray as xr

    p = one_date_store(tmp_path / "m.zarr", "2022-01-01T11:00:00Z")
    real = xr.Dataset.to_zarr

    def interrupted(self, store, *a, **k):
        real(self, store, *a, **k)
        raise RuntimeError("interrupted")

    monkeypatch.setattr(xr.Dataset, "to_zarr", interrupted)
    with pytest.raises(RuntimeError):
        gapfill([p], tmp_path / "out.zarr", ["B04"])
    assert sorted(x.name for x in tmp_path.iterdir()) == ["m.zarr"]


# ----------------------------------------------------------------------------- nearest and pchip
def reference_method(values, times, method, fill_ends=True, max_gap_days=None):
    """Per-pixel loop reference of the other methods on the observed (time, value) pairs:
    pchip = scipy.interpolate.PchipInterpolator (the independent implementation), nearest =
    the observation with the smallest |t - t_obs| (a tie: the earlier one); ends and gaps by
    the rules of reference_series (whose flags are reused)."""
    from scipy.interpolate import PchipInterpolator

    _, flag = reference_series(values, times, fill_ends, max_gap_days)
    n_t = values.shape[0]
    flat = values.reshape(n_t, -1)
    ref = np.full(flat.shape, np.nan)
    ff = flag.reshape(n_t, -1)
    t = np.asarray(times, dtype=np.float64)
    for p in range(flat.shape[1]):
        obs = flat[:, p] != FILL
        if not obs.any():
            continue
        to, vo = t[obs], flat[obs, p].astype(np.float64)
        for i in range(n_t):
            if ff[i, p] == 1:
                ref[i, p] = flat[i, p]
            elif ff[i, p] == 3:
                ref[i, p] = vo[0] if t[i] < to[0] else vo[-1]
            elif ff[i, p] == 2:
                if method == "nearest":
                    d = np.abs(to - t[i])
                    ref[i, p] = vo[np.flatnonzero(d == d.min())[0]]  # first of a tie: the earlier
                else:
                    ref[i, p] = PchipInterpolator(to, vo)(t[i])
    return ref.reshape(values.shape), flag


@pytest.mark.parametrize("method", ["nearest", "pchip"])
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("fill_ends,max_gap_days", [(True, None), (False, None), (True, 20), (False, 45)])
def test_methods_equal_independent_reference(method, seed, fill_ends, max_gap_days):
    """pchip against scipy's PchipInterpolator on random series (irregular times, half the
    values missing, series of 0, 1, 2 observations), nearest against a brute-force search."""
    rng = np.random.default_rng(seed)
    values, times = random_series(rng, 23, (17, 13))
    filled, flag = gapfill_series(values, times, fill_ends, max_gap_days, method=method)
    ref, ref_flag = reference_method(values, times, method, fill_ends, max_gap_days)
    assert_matches(filled, flag, ref, ref_flag)
    assert (flag == 2).sum() > 40  # many values filled by the method itself


@pytest.mark.parametrize("method", ["linear", "nearest", "pchip"])
@pytest.mark.parametrize("shared_mask", [True, False])
@pytest.mark.parametrize("fill_ends,max_gap_days", [(True, None), (False, 30)])
def test_kernel_fills_each_band_as_its_own_series(method, shared_mask, fill_ends, max_gap_days):
    """The stage's kernel (three bands, time-last views: the kernel takes any memory
    order) fills every band as the per-pixel references do, whether the bands share
    one cloud mask (filled together) or not; its flag is the least trustworthy of the
    bands' reference flags (missing > end-filled > interpolated > observed)."""
    rng = np.random.default_rng(7)
    values, times = random_series(rng, 31, (9, 11))
    bands = [values.copy()]
    for k in (1, 2):
        b = rng.integers(-1000, 12000, values.shape).astype(np.int16)
        b[values == FILL] = FILL  # the same mask...
        if not shared_mask:  # ...or a few pixel-dates missing in this band only
            b[rng.random(values.shape) < 0.1 * k] = FILL
        bands.append(b)
    assert shared_mask == all(np.array_equal(b == FILL, values == FILL) for b in bands)
    originals = [b.copy() for b in bands]
    views = [np.moveaxis(b, 0, -1) for b in bands]  # (y, x, time), the axis order apply_ufunc passes
    *filled, flag = gf.fill_kernel(*views, times=times, fill_ends=fill_ends, max_gap_days=max_gap_days, method=method)
    rank = {1: 0, 2: 1, 3: 2, 0: 3}  # trust order, least trustworthy last
    worst = np.zeros(values.shape, dtype=np.int64)
    for b, f in zip(bands, filled):
        if method == "linear":
            ref, ref_flag = reference_series(b, times, fill_ends, max_gap_days)
        else:
            ref, ref_flag = reference_method(b, times, method, fill_ends, max_gap_days)
        assert f.shape == b.shape[1:] + (len(times),)
        assert_matches(np.moveaxis(f, -1, 0), ref_flag, ref, ref_flag)
        worst = np.maximum(worst, np.vectorize(rank.get)(ref_flag))
    expected = np.array([1, 2, 3, 0], dtype=np.uint8)[worst]
    np.testing.assert_array_equal(np.moveaxis(flag, -1, 0), expected)
    assert (expected == 2).sum() > 100  # many values filled by the method itself
    for b, o in zip(bands, originals):  # the inputs (dask's chunks) are left as they were
        np.testing.assert_array_equal(b, o)


def test_pchip_random_long_series_against_scipy():
    """Long series with few observations (each gap's cubic uses 4 observations spread far
    apart), exact to the DN away from .5 ties."""
    rng = np.random.default_rng(11)
    values, times = random_series(rng, 90, (40, 25), p_missing=0.8)
    filled, flag = gapfill_series(values, times, method="pchip")
    ref, ref_flag = reference_method(values, times, "pchip")
    assert_matches(filled, flag, ref, ref_flag)


def test_pchip_analytic_values_and_no_overshoot():
    """(0, 0), (10, 1000), (20, 0) days: at day 10 a local maximum, so its derivative is 0;
    at day 0 scipy's end rule gives ((2h0 + h1) m0 - h0 m1) / (h0 + h1) = 200 DN/day; the
    Hermite cubic at day 5 is 10 * 200 * 0.125 + 1000 * 0.5 = 750 (linear: 500), and no value
    exceeds the maximum 1000 (a natural cubic spline would)."""
    t = np.arange(21, dtype=np.float64) * DAY
    v = np.full((21, 1), FILL, np.int16)
    v[[0, 10, 20], 0] = [0, 1000, 0]
    filled, flag = gapfill_series(v, t, method="pchip")
    assert filled[5, 0] == 750 and filled[15, 0] == 750
    assert filled[:, 0].max() == 1000 and filled[:, 0].min() == 0
    assert flag[:, 0].tolist() == [1] + [2] * 9 + [1] + [2] * 9 + [1]
    # monotone data stay monotone: no overshoot at a step (linear interpolation of the
    # same points would too, a cubic spline would not)
    v = np.full((31, 1), FILL, np.int16)
    v[[0, 10, 20, 30], 0] = [0, 0, 1000, 1000]
    filled, _ = gapfill_series(v, np.arange(31, dtype=np.float64) * DAY, method="pchip")
    assert np.all(np.diff(filled[:, 0].astype(int)) >= 0)
    assert filled[:11, 0].tolist() == [0] * 11 and filled[20:, 0].tolist() == [1000] * 11


def test_pchip_never_leaves_the_bracketing_observations():
    rng = np.random.default_rng(7)
    values, times = random_series(rng, 60, (50, 40), p_missing=0.6)
    filled, flag = gapfill_series(values, times, method="pchip")
    n_t = values.shape[0]
    flat, out, fl = values.reshape(n_t, -1), filled.reshape(n_t, -1), flag.reshape(n_t, -1)
    for p in range(flat.shape[1]):
        idx = np.flatnonzero(flat[:, p] != FILL)
        for i in np.flatnonzero(fl[:, p] == 2):
            j = np.searchsorted(idx, i)
            a, b = flat[idx[j - 1], p], flat[idx[j], p]
            assert min(a, b) <= out[i, p] <= max(a, b)


def test_nearest_ties_go_to_the_earlier_observation():
    t = np.array([0, 4, 5, 6, 10], dtype=np.float64) * DAY
    v = np.array([100, FILL, FILL, FILL, 900], dtype=np.int16)[:, None]
    filled, flag = gapfill_series(v, t, method="nearest")
    assert filled[:, 0].tolist() == [100, 100, 100, 900, 900]  # day 5 is a tie: day 0's value
    assert flag[:, 0].tolist() == [1, 2, 2, 2, 1]


@pytest.mark.parametrize("method", ["nearest", "pchip"])
def test_ends_and_max_gap_apply_to_every_method(method):
    t = np.array([0, 10, 20, 60, 70, 75], dtype=np.float64) * DAY
    v = np.array([FILL, 100, FILL, FILL, 500, FILL], dtype=np.int16)[:, None]
    filled, flag = gapfill_series(v, t, max_gap_days=30, method=method)
    assert filled[:, 0].tolist() == [100, 100, FILL, FILL, 500, 500]
    assert flag[:, 0].tolist() == [3, 1, 0, 0, 1, 3]
    filled, flag = gapfill_series(v, t, fill_ends=False, method=method)
    assert flag[:, 0].tolist() == [0, 1, 2, 2, 1, 0] and filled[0, 0] == FILL and filled[5, 0] == FILL


def test_unknown_method_is_refused(tmp_path):
    with pytest.raises(ValueError, match="linear, nearest, pchip"):
        gapfill_series(np.zeros((2, 1), np.int16), np.array([0.0, 1.0]), method="cubic")
    with pytest.raises(UserError, match="gapfill.method"):
        gapfill([tmp_path / "x.zarr"], tmp_path / "out.zarr", ["B04"], method="spline")


@pytest.mark.parametrize("method", ["nearest", "pchip"])
def test_gapfill_driver_other_methods(tmp_path, method, monkeypatch):
    """Through the dask driver (several spatial chunks), against the per-pixel reference."""
    monkeypatch.setattr(gf, "CHUNK", 128)
    grid = make_grid(150, 140)
    paths, cubes, strings, _, _ = make_masked_stores(tmp_path, grid, ["B04", "B08"], n_dates=10, seed=3)
    out = tmp_path / "cube.zarr"
    attrs = gapfill(paths, out, ["B04", "B08"], method=method, threads=2)
    assert attrs["gapfill"]["method"] == method and read_attrs(out)["gapfill"]["method"] == method
    times = np.array([epoch_seconds(s) for s in strings], dtype=np.float64)
    g = open_dataset(out)
    for b in ("B04", "B08"):
        ref, ref_flag = reference_method(cubes[b][:, ::3, ::4], times, method)
        assert_matches(g[b].values[:, ::3, ::4], g["flag"].values[:, ::3, ::4], ref, ref_flag)


# ----------------------------------------------------------------------------- on the demo
def test_demo_every_method_against_the_truth(options_run, tmp_path):
    """Each method gap-fills the options run's masked stores; the filled pixels are compared
    with the generator's clear-sky truth (as tests/test_demo_e2e.py does): every method within
    the README's bounds for filled pixels (median < 0.01, 90th percentile < 0.05). Measured on
    the whole demo (134 dates): median 0.0021 / 0.0019 / 0.0023 and 90th percentile 0.0153 /
    0.0154 / 0.0156 reflectance for linear / nearest / pchip."""
    import glob

    import xarray as xr
    from conftest import demo_truth_images

    stores = sorted(glob.glob(str(options_run / "1" / "mask" / "*.zarr")))
    inside = np.load(options_run / "1" / "aoi" / "inside.npy").astype(bool)
    cubes = {}
    for method in ("linear", "nearest", "pchip"):
        gapfill(stores, tmp_path / f"{method}.zarr", ["B03", "B04", "B08"], method=method)
        cubes[method] = open_dataset(tmp_path / f"{method}.zarr").load()
    ref = cubes["linear"]
    truth = demo_truth_images(options_run, ref.time.values)
    for method, cube in cubes.items():
        np.testing.assert_array_equal(cube["flag"].values, ref["flag"].values)  # same rules, same flags
        errors = []
        for i, t in enumerate(cube.time.values):
            filled = (cube["flag"].values[i] > 1) & inside
            for b in ("B03", "B04", "B08"):
                errors.append(np.abs(cube[b].values[i] / 1e4 - truth[t][b])[filled])
        e = np.concatenate(errors)
        assert e.size > 50_000
        assert np.median(e) < 0.01 and np.percentile(e, 90) < 0.05, (method, np.percentile(e, [50, 90, 99]))
    # the run itself used pchip: its NetCDF holds the pchip values
    with xr.open_dataset(options_run / "1" / "1_2022-01-01_2022-04-01.nc") as ds:
        np.testing.assert_allclose(
            ds.B08.values,
            np.where(cubes["pchip"].B08.values == FILL, np.nan, cubes["pchip"].B08.values / 1e4),
            atol=1e-6,
        )


def random_masked_store(tmp_path, n: int, n_t: int):
    """A mask-stage batch store of a random n x n cube of bands B03 and B08 over n_t dates
    5 days apart from 2022-01-01, 30 % missing: (store, cube bytes)."""
    from conftest import write_batch_store

    grid = make_grid(n, n)
    rng = np.random.default_rng(0)
    start = dt.datetime(2022, 1, 1, 11, tzinfo=dt.UTC)
    whens = [(start + dt.timedelta(days=5 * i)).strftime("%Y-%m-%dT%H:%M:%SZ") for i in range(n_t)]
    cubes = {b: rng.integers(0, 5000, (n_t, n, n)).astype(np.int16) for b in ("B03", "B08")}
    for b in cubes:
        cubes[b][rng.random(cubes[b].shape) < 0.3] = FILL
    attrs = {"stage": "mask", "grid": grid, "bands": ["B03", "B08"]}
    p = write_batch_store(tmp_path / f"m{n}.zarr", grid, cubes, attrs, whens, valid_fraction=[0.7] * n_t)
    return p, sum(c.nbytes for c in cubes.values())


def gapfill_peak(tmp_path, n: int, n_t: int = 40, threads: int = 2) -> tuple[int, int]:
    """(cube bytes, peak Python-traced bytes) of gap-filling a random n x n cube of 2
    bands, 30 % missing, stored one date per chunk (as a large grid's mask store is)."""
    p, cube_bytes = random_masked_store(tmp_path, n, n_t)
    tracemalloc.start()
    try:
        gapfill([p], tmp_path / f"g{n}.zarr", ["B03", "B08"], threads=threads)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (open_dataset(tmp_path / f"g{n}.zarr")["flag"].values[:, ::9, ::9] > 0).mean() > 0.99
    return cube_bytes, peak


def test_memory_does_not_grow_with_the_cube(tmp_path, monkeypatch):
    """A cube larger than memory completes: from a 384 x 384 to a 768 x 768 cube (40
    dates, 2 bands; 23.6 -> 94.4 MB of int16) stored one date per 128-pixel chunk, the
    peak of Python-traced memory grows by a small part of the cube's growth (a few
    chunks' series are in memory at a time). Gap-filling through a rechunking graph held
    pieces of many stored chunks at once (5.8 GB on the 40 km scale run)."""
    import s2ts.zarr_io as zio

    monkeypatch.setattr(zio, "CHUNK", 128)
    monkeypatch.setattr(zio, "GROUP_BYTES", 1)  # stores of one date per chunk
    monkeypatch.setattr(gf, "CHUNK", 128)
    monkeypatch.setattr(gf, "TASK_BYTES", 2 * 2 * 40 * 128 * 64)  # 64 rows: a stored chunk read in halves
    small, small_peak = gapfill_peak(tmp_path, 384)
    big, big_peak = gapfill_peak(tmp_path, 768)
    assert big_peak - small_peak < 0.1 * (big - small), (small_peak / 1e6, big_peak / 1e6)
    assert big_peak < 0.3 * big


# ----------------------------------------------------------------------------- updates
def write_series_stores(root, grid, cubes, strings, dates, batch=10):
    """Masked batch stores of ``dates`` (indices into ``strings``), in batches of
    ``batch`` consecutive dates as the mask stage writes them, with their per-date
    digests (s2ts.mask.date_digests)."""
    from conftest import write_batch_store

    from s2ts.mask import date_digests

    paths = []
    for k in range(0, max(dates) + 1, batch):
        sel = [i for i in dates if k <= i < k + batch]
        if not sel:
            continue
        arrays = {b: np.ascontiguousarray(c[sel]) for b, c in cubes.items()}
        valid = [float((arrays[next(iter(arrays))][j] != FILL).mean()) for j in range(len(sel))]
        write_batch_store(
            root / f"b{k}.zarr",
            grid,
            arrays,
            {"stage": "mask", "aoi": "site_1", "grid": grid, "bands": list(cubes), "mask_band": "SCL"},
            [strings[i] for i in sel],
            valid_fraction=np.array(valid, np.float32),
            digest=date_digests(arrays),
        )
        paths.append(root / f"b{k}.zarr")
    return paths


def series_scene(seed, n_t=30, width=24, height=20, shared=True):
    """Three bands over ``n_t`` irregular dates, 55 % cloud, a corner never observed, a
    pixel observed once; with ``shared=False`` one band also misses pixel-dates of its own."""
    rng = np.random.default_rng(seed)
    start = dt.datetime(2022, 1, 4, 11, 0, tzinfo=dt.UTC)
    whens = [
        start + dt.timedelta(days=int(d), seconds=int(rng.integers(-900, 900)))
        for d in np.cumsum(rng.integers(2, 25, n_t))
    ]
    clouds = rng.random((n_t, height, width)) < 0.55
    clouds[:, :3, :3] = True
    clouds[:, 10, 10] = True
    clouds[n_t // 3, 10, 10] = False
    cubes = {}
    for k, b in enumerate(("B03", "B04", "B08")):
        c = rng.integers(-1000, 12000, (n_t, height, width)).astype(np.int16)
        c[clouds] = FILL
        if not shared and k == 2:
            c[rng.random(c.shape) < 0.15] = FILL
        cubes[b] = c
    return make_grid(width, height), cubes, [iso(w) for w in whens]


#: (dates of the earlier run, dates of the update, a date whose values the earlier run had otherwise)
UPDATES = {
    "one-new-date": (range(29), range(30), None),
    "new-dates-across-time-chunks": (range(23), range(30), None),
    "a-changed-date": (range(30), range(30), 20),
    "dates-dropped": (range(30), range(26), None),
    "nothing-changed": (range(30), range(30), None),
}


def reference_flag(bands, times, method, fill_ends, max_gap_days):
    """Each band's reference (values, flags) and the combined flag (the least
    trustworthy state of the bands wins)."""
    rank = {1: 0, 2: 1, 3: 2, 0: 3}
    refs, worst = [], None
    for b in bands:
        r = (
            reference_series(b, times, fill_ends, max_gap_days)
            if method == "linear"
            else reference_method(b, times, method, fill_ends, max_gap_days)
        )
        refs.append(r)
        w = np.vectorize(rank.get)(r[1])
        worst = w if worst is None else np.maximum(worst, w)
    return refs, np.array([1, 2, 3, 0], dtype=np.uint8)[worst]


@pytest.mark.parametrize("method", ["linear", "nearest", "pchip"])
@pytest.mark.parametrize("scenario", list(UPDATES))
@pytest.mark.parametrize(
    "fill_ends,max_gap_days,shared", [(True, None, True), (False, 30, False)], ids=["shared-mask", "own-masks"]
)
def test_an_update_equals_a_fill_from_scratch(
    tmp_path, monkeypatch, caplog, method, scenario, fill_ends, max_gap_days, shared
):
    """The cube of an earlier run updated for other masked stores: the update path is
    taken (log), the values and flags are the per-pixel references' on the new series
    (np.interp, scipy's PchipInterpolator, brute-force nearest), and the store equals a
    fill from scratch of the same stores, value for value, per-date records and attributes
    included. Small spatial and time chunks, so that chunks are linked and rewritten."""
    monkeypatch.setattr(gf, "CHUNK", 8)
    monkeypatch.setattr(gf, "TIME_CHUNK", 4)
    grid, cubes, strings = series_scene(3, shared=shared)
    bands = list(cubes)
    before, after, changed = UPDATES[scenario]
    earlier = cubes
    if changed is not None:  # the earlier run saw other values on that date (e.g. another item)
        earlier = {b: c.copy() for b, c in cubes.items()}
        for c in earlier.values():
            c[changed] = np.where(c[changed] == FILL, 4321, FILL)
    kw = {"method": method, "fill_ends": fill_ends, "max_gap_days": max_gap_days, "threads": 2}
    out = tmp_path / "gapfill.zarr"
    gapfill(write_series_stores(tmp_path / "earlier", grid, earlier, strings, list(before)), out, bands, **kw)
    stores = write_series_stores(tmp_path / "now", grid, cubes, strings, list(after))
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="gapfill"):
        gapfill(stores, out, bands, **kw)
    assert "updated" in caplog.text and "gap-filling" not in caplog.text
    scratch = tmp_path / "scratch.zarr"
    gapfill(stores, scratch, bands, **kw)

    g, s = open_dataset(out).load(), open_dataset(scratch).load()
    dates = list(after)
    times = np.array([epoch_seconds(strings[i]) for i in dates], dtype=np.float64)
    refs, flag = reference_flag([cubes[b][dates] for b in bands], times, method, fill_ends, max_gap_days)
    np.testing.assert_array_equal(g["flag"].values, flag)
    for b, (ref, ref_flag) in zip(bands, refs):
        assert_matches(g[b].values, ref_flag, ref, ref_flag)
    for name in g.variables:
        np.testing.assert_array_equal(g[name].values, s[name].values, err_msg=name)
    assert g.attrs == s.attrs
    assert (flag == 2).sum() > 500  # many values filled by the method


def stored_files(store):
    """Stored chunk files of the cube's gridded arrays: {relative path: (inode, SHA-1)}."""
    import hashlib
    import os

    return {
        str(p.relative_to(store)): (os.stat(p).st_ino, hashlib.sha1(p.read_bytes()).hexdigest())
        for v in ("B03", "B04", "B08", "flag")
        for p in (store / v).iterdir()
        if p.name != "zarr.json"
    }


def test_an_update_links_the_time_chunks_no_change_reaches(tmp_path, monkeypatch, caplog):
    """One new date: the stored chunks of the earlier dates that no change reaches are
    the earlier cube's files, as they were (the same inodes and bytes: nothing
    re-encoded, copied or written in place); the chunks that hold changed values are
    new files, from the time chunk of the earliest change on."""
    monkeypatch.setattr(gf, "CHUNK", 8)
    monkeypatch.setattr(gf, "TIME_CHUNK", 4)
    grid, cubes, strings = series_scene(5)
    out = tmp_path / "gapfill.zarr"
    gapfill(write_series_stores(tmp_path / "earlier", grid, cubes, strings, list(range(29))), out, list(cubes))
    was = stored_files(out)
    with caplog.at_level(logging.INFO, logger="gapfill"):
        gapfill(write_series_stores(tmp_path / "now", grid, cubes, strings, list(range(30))), out, list(cubes))
    now = stored_files(out)
    same = {k for k in now if k in was and now[k][0] == was[k][0]}
    assert all(now[k] == was[k] for k in same)  # linked files: the earlier bytes
    # the truth from the scene: in each 8 x 8 spatial chunk, a pixel observed on the new
    # date 29 changes from its last observation before it (linear), so the chunk is
    # rewritten from the time chunk (4 dates) that holds the earliest such observation
    obs = np.stack([c != FILL for c in cubes.values()]).all(axis=0)
    flag = open_dataset(out)["flag"].values
    expected, counts = set(), np.zeros(4, np.int64)
    for r, c in np.ndindex(3, 3):
        o = obs[:, 8 * r : 8 * r + 8, 8 * c : 8 * c + 8].reshape(30, -1)
        steps = np.arange(29)[:, None]
        last = np.where(o[:29], steps, -1).max(axis=0)
        start = np.where(o[29], np.maximum(last, 0), 29).min()
        counts += np.bincount(flag[start // 4 * 4 :, 8 * r : 8 * r + 8, 8 * c : 8 * c + 8].ravel(), minlength=4)
        expected |= {
            k
            for k in now
            if k.split("/")[1].split(".")[1:] == [str(r), str(c)] and int(k.split("/")[1].split(".")[0]) >= start // 4
        }
    assert set(now) - same == expected
    assert 0 < len(expected) < len(now)
    # the log counts the rewritten pixel-dates per flag value
    observed, interpolated, end_filled, missing = counts[1], counts[2], counts[3], counts[0]
    assert (
        f"{observed} observed, {interpolated} interpolated, {end_filled} end-filled, {missing} still missing "
        "pixel-dates rewritten" in caplog.text
    )


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"method": "pchip"}, "earlier cube made with other gapfill"),
        ({"code": "edited"}, "earlier cube made with other code"),
        ({"bands": ["B03", "B04"]}, "earlier cube made with other bands"),
        ({"digests": False}, "no per-date digests of the masked bands"),
        ({"first": True}, "its first date differs"),
        ({"time_chunk": 8}, "earlier cube stored in other chunks"),
    ],
    ids=lambda v: v if isinstance(v, str) else next(iter(v)),
)
def test_a_cube_that_cannot_be_updated_is_filled_from_scratch(tmp_path, monkeypatch, caplog, change, reason):
    """Another method, code digest, band list, stored chunks, masked stores without
    digests (an earlier version) or a changed first date: a full fill (the log says
    why), equal to a fill from scratch."""
    import xarray as xr

    monkeypatch.setattr(gf, "CHUNK", 8)
    monkeypatch.setattr(gf, "TIME_CHUNK", 4)
    grid, cubes, strings = series_scene(8)
    earlier = {b: c.copy() for b, c in cubes.items()}
    if change.get("first"):
        earlier["B04"][0, 5, 5] = 1234 if earlier["B04"][0, 5, 5] == FILL else FILL
    old = write_series_stores(tmp_path / "earlier", grid, earlier, strings, list(range(29)))
    gapfill(old, tmp_path / "g.zarr", list(change.get("bands", cubes)), code="c1")
    monkeypatch.setattr(gf, "TIME_CHUNK", change.get("time_chunk", 4))
    now = write_series_stores(tmp_path / "now", grid, cubes, strings, list(range(30)))
    if change.get("digests") is False:
        for p in now:  # masked stores of an earlier version: no digest variable
            ds = xr.open_zarr(p, mask_and_scale=False).drop_vars("digest").load()
            import shutil

            shutil.rmtree(p)
            ds.to_zarr(p, zarr_format=3, consolidated=True)
    kw = {"method": change.get("method", "linear"), "code": change.get("code", "c1")}
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="gapfill"):
        gapfill(now, tmp_path / "g.zarr", list(cubes), **kw)
    assert reason in caplog.text and "updated" not in caplog.text
    gapfill(now, tmp_path / "scratch.zarr", list(cubes), **kw)
    g, s = open_dataset(tmp_path / "g.zarr").load(), open_dataset(tmp_path / "scratch.zarr").load()
    assert set(g.variables) == set(s.variables)
    for name in g.variables:
        np.testing.assert_array_equal(g[name].values, s[name].values, err_msg=name)


def test_a_failed_update_leaves_the_earlier_cube(tmp_path, monkeypatch):
    """An update that fails midway (here: its third spatial chunk) leaves the earlier
    cube as it was, file for file, and no temporary store; the next run updates it."""
    monkeypatch.setattr(gf, "CHUNK", 8)
    monkeypatch.setattr(gf, "TIME_CHUNK", 4)
    grid, cubes, strings = series_scene(9)
    out = tmp_path / "gapfill.zarr"
    gapfill(write_series_stores(tmp_path / "earlier", grid, cubes, strings, list(range(29))), out, list(cubes))
    was = {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    real, calls = gf._update_chunk, []

    def failing(*a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise OSError("disk full")
        return real(*a, **k)

    monkeypatch.setattr(gf, "_update_chunk", failing)
    now = write_series_stores(tmp_path / "now", grid, cubes, strings, list(range(30)))
    with pytest.raises(OSError, match="disk full"):
        gapfill(now, out, list(cubes), threads=1)
    assert {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()} == was
    assert sorted(p.name for p in tmp_path.iterdir()) == ["earlier", "gapfill.zarr", "now"]
    monkeypatch.setattr(gf, "_update_chunk", real)
    gapfill(now, out, list(cubes))
    gapfill(now, tmp_path / "scratch.zarr", list(cubes))
    np.testing.assert_array_equal(
        open_dataset(out)["B08"].values, open_dataset(tmp_path / "scratch.zarr")["B08"].values
    )
    assert open_dataset(out).sizes["time"] == 30


@pytest.mark.parametrize("c0", [1, 7, 16, 29, 40])
@pytest.mark.parametrize("p_observed", [0.05, 0.5])
def test_last_observations_are_those_of_a_scan_of_every_date(c0, p_observed):
    """An update's search for each pixel's last observations before c0, reading back a
    few stored time chunks at a time: the wanted ones are those of a brute-force scan
    of every date; it stops as soon as every pixel has them (here: a clear date just
    before c0 stops it in the first time chunk)."""
    rng = np.random.default_rng(c0)
    flag = rng.choice([0, 1, 2, 3], size=(40, 6, 5), p=[0.2, p_observed, 0.8 - p_observed - 0.1, 0.1]).astype(np.uint8)
    flag[:, 0, 0] = 2  # never observed
    flag[5, 0, 1] = 1  # observed once, early
    flag[:, 0, 1][np.arange(40) != 5] = 3
    wanted = rng.integers(1, 4, 30)
    ys, xs = slice(0, 6), slice(0, 5)
    found, lo = gf.last_observations_before(flag, c0, ys, xs, wanted, 4, 3)
    obs = (flag[:c0] == 1).reshape(c0, -1)
    for p in range(30):
        truth = list(np.flatnonzero(obs[:, p])[::-1][:3]) + [-1, -1, -1]
        for i in range(wanted[p]):
            assert found[i][p] == truth[i], (p, i)
    assert lo == 0  # a pixel never observed: read back to the first date
    if c0 < 3:
        return
    clear = flag.copy()
    clear[c0 - 3 : c0] = 1  # three clear dates just before c0
    found, lo = gf.last_observations_before(clear, c0, ys, xs, wanted, 4, 3)
    first = (c0 - 1) // 4 * 4  # the first block: from the time chunk that holds c0 - 1
    assert lo == (first if c0 - 3 >= first else max(0, first - 8))  # then a block twice as long
    assert all(found[i][p] == c0 - 1 - i for p in range(30) for i in range(wanted[p]))
