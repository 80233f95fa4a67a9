"""End to end on the embedded demo (the run `make demo` does): the NetCDF's grid,
CRS and dates are exactly those predicted independently from the catalog and the
tutorial's figures, and its pixels match the generator's clear-sky truth.

Figures (stated in the README, measured on the default demo): observed clear
pixels vs the truth averaged over each 40 m pixel: median |error| < 0.001 and
99th percentile < 0.03 reflectance; gap-filled pixels: median < 0.01, 90th
percentile < 0.05 (filled values are interpolated between other dates: the
sandbank, the tide and the vegetation move in between). The observed 99th
percentile is 0.024 with the default tiles.overviews: matching (the 4x overview
resampled onto the EPSG:3035 grid blurs class edges), 0.011 with finer (the 2x
overview, twice the bytes): docs/performance.md."""

import datetime as dt
import json

import netCDF4
import numpy as np
import pytest
import shapely.geometry
import xarray as xr
from conftest import ROOT

from s2ts.demo_catalog import load_truth

CATALOG = ROOT / "resources" / "demo-catalog"
BANDS = ["B03", "B04", "B08"]


@pytest.fixture(scope="module")
def nc(demo_run):
    path = demo_run / "1" / "1_2021-01-01_2023-01-01.nc"
    assert path.exists()
    return path


def expected_dates() -> list[str]:
    """Read the catalog's item JSON directly (no project code): cloud filter, period,
    footprint over the polygon's bbox, reprocessings reduced, local solar day."""
    poly = json.loads((ROOT / "resources" / "banc_arguin.geojson").read_text())["features"][0]["geometry"]
    geom = shapely.geometry.shape(poly)
    box, lon = shapely.geometry.box(*geom.bounds), geom.centroid.x
    best = {}
    for f in (CATALOG / "sentinel-2-l2a").glob("*/*.json"):
        it = json.loads(f.read_text())
        p = it["properties"]
        t = dt.datetime.fromisoformat(p["datetime"].replace("Z", "+00:00"))
        if p["eo:cloud_cover"] < 20 and "2021-01-01" <= p["datetime"][:10] < "2023-01-01":
            if shapely.geometry.shape(it["geometry"]).intersects(box):
                best[it["id"].rsplit("_", 1)[0]] = (t + dt.timedelta(hours=lon / 15)).date().isoformat()
    return sorted(set(best.values()))


def test_grid_crs_and_dates_are_the_predicted_ones(nc):
    ds = xr.open_dataset(nc)
    assert ds.rio.crs.to_epsg() == 3035
    # the tutorial's cube: 259 rows x 207 columns at 40 m, edges on multiples of 40 m
    assert (ds.sizes["y"], ds.sizes["x"]) == (259, 207)
    np.testing.assert_array_equal(ds.x.values, 3426440 + 20 + 40 * np.arange(207))
    np.testing.assert_array_equal(ds.y.values, 2458760 - 20 - 40 * np.arange(259))
    dates = [str(t)[:10] for t in ds.time.values]
    assert dates == expected_dates()
    assert len(dates) > 100
    raw = netCDF4.Dataset(nc)
    assert raw["B08"].dtype == np.int16 and raw["B08"].scale_factor == pytest.approx(1e-4)


def area_truth(truth, t, x, y, k=4):
    """Clear-sky truth averaged over each 40 m pixel (k x k sub-samples)."""
    off = (np.arange(k) + 0.5) / k * 40 - 20
    xx = x[None, :, None, None] + off[None, None, None, :] + 0 * y[:, None, None, None]
    yy = y[:, None, None, None] - off[None, None, :, None] + 0 * x[None, :, None, None]
    xx, yy = np.broadcast_arrays(xx, yy)
    tr = truth.reflectance(t, xx, yy, "EPSG:3035")
    return {b: np.nanmean(tr[b], axis=(2, 3)) / 10000 for b in BANDS}


def test_pixels_match_the_generators_truth(nc, demo_run):
    ds = xr.open_dataset(nc)
    truth = load_truth(CATALOG)
    inside = np.load(demo_run / "1" / "aoi" / "inside.npy").astype(bool)
    obs, filled = [], []
    for ti in range(0, ds.sizes["time"], 4):  # every 4th date keeps the test short
        t = ds.time.values[ti]
        tb = area_truth(truth, t, ds.x.values, ds.y.values)
        flag = ds.flag.isel(time=ti).values
        for b in BANDS:
            err = np.abs(ds[b].isel(time=ti).values - tb[b])
            obs.append(err[(flag == 1) & inside])
            filled.append(err[(flag > 1) & inside])
    obs, filled = np.concatenate(obs), np.concatenate(filled)
    assert obs.size > 100_000 and filled.size > 10_000
    assert np.median(obs) < 0.001 and np.percentile(obs, 99) < 0.03, np.percentile(obs, [50, 99, 100])
    assert np.median(filled) < 0.01 and np.percentile(filled, 90) < 0.05, np.percentile(filled, [50, 90, 100])


def test_offset_removed_across_the_baseline_change(nc):
    """Stable land (dune, forest, built-up) keeps its level across 2022-01-25: no +1000 DN jump."""
    ds = xr.open_dataset(nc)
    truth = load_truth(CATALOG)
    xx, yy = np.meshgrid(ds.x.values, ds.y.values)
    t0 = ds.time.values[0]
    forest = np.isin(truth.classes(t0, xx, yy, "EPSG:3035"), [4, 5, 6])
    before = ds.B04.sel(time=slice("2021-10-01", "2022-01-24")).where(
        ds.flag.sel(time=slice("2021-10-01", "2022-01-24")) == 1
    )
    after = ds.B04.sel(time=slice("2022-01-26", "2022-04-30")).where(
        ds.flag.sel(time=slice("2022-01-26", "2022-04-30")) == 1
    )
    assert forest.sum() > 50
    jump = float(np.nanmean(after.values[:, forest]) - np.nanmean(before.values[:, forest]))
    assert abs(jump) < 0.01  # an uncorrected offset would be +0.1


def test_two_tile_jobs_share_the_two_cores(demo_run):
    """The demo's two year batches on 2 cores (`--cores 2`): one thread each, side by
    side, so neither job splits its dates among processes (tests/test_console.py has
    the run whose single tile job takes both cores and two worker processes)."""
    logs = sorted((demo_run / "logs" / "tile" / "1").glob("*.log"))
    assert [p.stem for p in logs] == ["2021", "2022"]
    for log in logs:
        text = log.read_text()
        assert "to read; 1 thread(s)" in text and "worker processes" not in text, log
