"""Tile stage: odc-stac reads real item metadata (both projection forms) with small
local COGs of known values onto a target grid; same-day mosaics are deterministic;
SCL never gets a class that was not in the input."""

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    demo_items,
    load_features,
    local_item,
    read_store,
    tile_store,
    utm_grid,
    write_grid_json,
    write_items_file,
)

from s2ts.errors import UserError
from s2ts.tile import mosaic, signing_mode
from s2ts.zarr_io import NO_SOURCE, read_attrs

X0, Y1 = 450000.0, 4420000.0  # inside MGRS tile 13TDE (EPSG:32613)
N = 64  # 10 m pixels -> 640 m


@pytest.fixture(scope="module")
def base():
    return next(
        f for f in load_features("tile-13TDE-2024.json") if f["properties"]["s2:processing_baseline"] == "05.11"
    )


def ramp(seed=0):
    rng = np.random.default_rng(seed)
    return {b: rng.integers(500, 5000, (N, N), dtype=np.uint16) for b in ("B03", "B04", "B08")}


def all_classes_scl(seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(1, 12, (N // 2, N // 2), dtype=np.uint8)


def run_tile(tmp_path, items, grid, name="t", **kw):
    store = tile_store(tmp_path, items, grid, out=name, **kw)
    return read_attrs(store), read_store(store)


@pytest.mark.parametrize("loader", ["odc-stac", "stackstac"])
@pytest.mark.parametrize("proj_form", ["epsg", "code"])
def test_aligned_10m_grid_reads_exact_values(tmp_path, base, loader, proj_form):
    bands, scl = ramp(), all_classes_scl()
    it = local_item(base, tmp_path / "cog", bands, scl, X0, Y1, proj_form=proj_form)
    attrs, out = run_tile(tmp_path, [it], utm_grid(32613, X0, Y1, N, N, 10), loader=loader)
    for b in bands:
        assert out[b].dtype == np.uint16
        np.testing.assert_array_equal(out[b], bands[b])
    np.testing.assert_array_equal(out["SCL"], np.repeat(np.repeat(scl, 2, 0), 2, 1))
    assert (out["source"] == 0).all()
    assert attrs["items"][0]["processing_baseline"] == "05.11" and attrs["offset_corrected"] is False


@pytest.mark.parametrize("loader", ["odc-stac", "stackstac"])
def test_20m_grid_averages_reflectance_and_keeps_scl_classes(tmp_path, base, loader):
    bands, scl = ramp(1), all_classes_scl(1)
    it = local_item(base, tmp_path / "cog", bands, scl, X0, Y1)
    _, out = run_tile(tmp_path, [it], utm_grid(32613, X0, Y1, N // 2, N // 2, 20), loader=loader)
    for b in bands:
        block_mean = bands[b].reshape(N // 2, 2, N // 2, 2).astype(float).mean(axis=(1, 3))
        assert np.abs(out[b].astype(float) - block_mean).max() <= 1.0
    np.testing.assert_array_equal(out["SCL"], scl)


@pytest.mark.parametrize("loader", ["odc-stac", "stackstac"])
def test_scl_any_holds_every_class_of_the_footprint(tmp_path, base, loader):
    scl = all_classes_scl(5)
    it = local_item(base, tmp_path / "cog", ramp(5), scl, X0, Y1)
    _, out = run_tile(tmp_path, [it], utm_grid(32613, X0, Y1, N // 4, N // 4, 40), loader=loader)
    # independent: OR of the bits of the 2 x 2 SCL cells (20 m) under each 40 m pixel
    blocks = scl.reshape(N // 4, 2, N // 4, 2)
    expected = np.zeros((N // 4, N // 4), np.uint16)
    for i in range(2):
        for j in range(2):
            expected |= (1 << blocks[:, i, :, j].astype(np.uint16)).astype(np.uint16)
    np.testing.assert_array_equal(out["SCL_any"], expected)
    # and SCL itself is one of the covered cells
    assert all((1 << int(c)) & int(e) for c, e in zip(out["SCL"].ravel(), expected.ravel()))


@pytest.mark.parametrize("loader", ["odc-stac", "stackstac"])
def test_offgrid_target_scl_classes_come_from_input(tmp_path, base, loader):
    """A grid shifted by a fraction of a pixel and at 30 m: nearest only, no invented class."""
    scl = np.zeros((N // 2, N // 2), np.uint8)
    scl[:, : N // 4] = 4  # two classes whose average (7) would be a third one
    scl[:, N // 4 :] = 10
    it = local_item(base, tmp_path / "cog", ramp(2), scl, X0, Y1)
    _, out = run_tile(tmp_path, [it], utm_grid(32613, X0 + 7, Y1 - 7, 20, 20, 30), loader=loader)
    assert set(np.unique(out["SCL"])) <= {0, 4, 10}
    assert {4, 10} <= set(np.unique(out["SCL"]))


def test_overviews_are_read_when_the_resolution_allows(tmp_path, base):
    bands = {b: np.full((N, N), 1000, np.uint16) for b in ("B03", "B04", "B08")}
    marker = {b: np.full((N, N), 7777, np.uint16) for b in bands}  # only in the overviews
    it = local_item(base, tmp_path / "cog", bands, all_classes_scl(), X0, Y1, overview_marker=marker)
    _, at40 = run_tile(tmp_path, [it], utm_grid(32613, X0, Y1, N // 4, N // 4, 40), "a")
    _, at10 = run_tile(tmp_path, [it], utm_grid(32613, X0, Y1, N, N, 10), "b")
    assert (at40["B08"] == 7777).all()  # the 4x overview was read
    assert (at10["B08"] == 1000).all()  # full resolution where needed


@pytest.mark.parametrize("loader", ["odc-stac", "stackstac"])
def test_same_day_items_mosaic_deterministically(tmp_path, base, loader):
    a_bands = ramp(3)
    for b in a_bands:
        a_bands[b][:, N // 2 :] = 0  # item A covers the west half only
    b_bands = ramp(4)
    scl = all_classes_scl()
    t = "2024-06-01T17:49:00.024Z"
    a = local_item(
        base, tmp_path / "cog", a_bands, scl, X0, Y1, item_id="S2B_MSIL2A_20240601T174900_R141_T13TDE_A", datetime=t
    )
    b = local_item(
        base, tmp_path / "cog", b_bands, scl, X0, Y1, item_id="S2B_MSIL2A_20240601T174900_R141_T13TDE_B", datetime=t
    )
    grid = utm_grid(32613, X0, Y1, N, N, 10)
    attrs1, out1 = run_tile(tmp_path, [b, a], grid, "1", loader=loader)
    attrs2, out2 = run_tile(tmp_path, [a, b], grid, "2", loader=loader)
    assert [i["id"] for i in attrs1["items"]] == [a["id"], b["id"]]  # id order, whatever the file order
    for b_ in a_bands:
        np.testing.assert_array_equal(out1[b_], out2[b_])
        np.testing.assert_array_equal(out1[b_][:, : N // 2], a_bands[b_][:, : N // 2])
        np.testing.assert_array_equal(out1[b_][:, N // 2 :], b_bands[b_][:, N // 2 :])
    assert (out1["source"][:, : N // 2] == 0).all() and (out1["source"][:, N // 2 :] == 1).all()


def test_mosaic_unit():
    per_item = {"B03": np.array([[[0, 5]], [[7, 8]]], np.uint16), "B04": np.array([[[1, 0]], [[0, 9]]], np.uint16)}
    scl = np.array([[[4, 5]], [[6, 6]]], np.uint8)
    out, out_scl, source = mosaic(per_item, scl)
    # pixel 0: item 0 lacks B03, item 1 lacks B04 -> no source; pixel 1: item 0 lacks B04 -> item 1
    np.testing.assert_array_equal(source, [[NO_SOURCE, 1]])
    np.testing.assert_array_equal(out["B03"], [[0, 8]])
    np.testing.assert_array_equal(out_scl, [[0, 6]])


def test_mosaic_takes_each_pixel_from_its_first_valid_item():
    """Three overlapping items with no-data here and there, against a pixel-by-pixel
    truth: the first item (in priority order) with every band non-zero gives the bands,
    SCL, SCL_any and its index; a pixel that no item covers is 0, NO_SOURCE and 1."""
    rng = np.random.default_rng(3)
    n, shape = 3, (30, 40)
    per_item = {
        b: np.where(rng.random((n, *shape)) < 0.4, 0, rng.integers(1, 60000, (n, *shape))).astype(np.uint16)
        for b in ("B03", "B04")
    }
    scl = rng.integers(0, 12, (n, *shape)).astype(np.uint8)
    scl_any = rng.integers(0, 4096, (n, *shape)).astype(np.uint16)
    out, out_scl, source, out_any = mosaic(per_item, scl, scl_any)
    n_source = 0
    for y in range(shape[0]):
        for x in range(shape[1]):
            k = next((k for k in range(n) if all(per_item[b][k, y, x] != 0 for b in per_item)), None)
            if k is None:
                assert (source[y, x], out_scl[y, x], out_any[y, x]) == (NO_SOURCE, 0, 1)
                assert all(out[b][y, x] == 0 for b in per_item)
                continue
            n_source += 1
            assert (source[y, x], out_scl[y, x], out_any[y, x]) == (k, scl[k, y, x], scl_any[k, y, x])
            assert all(out[b][y, x] == per_item[b][k, y, x] for b in per_item)
    assert 0 < n_source < source.size  # both kinds of pixels were checked
    assert set(np.unique(source)) == {0, 1, 2, NO_SOURCE}
    assert out["B03"].dtype == np.uint16 and out_scl.dtype == np.uint8 and source.dtype == np.uint8


def test_signing_only_for_planetary_computer_host():
    assert signing_mode("auto", "https://planetarycomputer.microsoft.com/api/stac/v1") == "planetary_computer"
    assert signing_mode("auto", "https://earth-search.aws.element84.com/v1") == "none"
    assert signing_mode("auto", "resources/demo-catalog/catalog.json") == "none"
    assert signing_mode("planetary_computer", "http://127.0.0.1:9000") == "planetary_computer"


def test_tile_store_opens_in_xarray_with_its_crs_and_no_warning(tmp_path, base):
    import warnings

    import xarray as xr

    it = local_item(base, tmp_path / "cog", ramp(), all_classes_scl(), X0, Y1)
    run_tile(tmp_path, [it], utm_grid(32613, X0, Y1, N, N, 10))
    store = tmp_path / "t" / "2024-06-01.zarr"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a user opening a store gets no warning
        ds = xr.open_zarr(store, decode_coords="all")
        assert ds.rio.crs.to_epsg() == 32613
    assert ds["B03"].dims == ("y", "x") and float(ds.x[0]) == X0 + 5 and float(ds.y[0]) == Y1 - 5
    assert read_attrs(store)["date"] == "2024-06-01"


@pytest.mark.parametrize("threads", [1, 2])
def test_rule_threads_drive_the_loader_and_gdal(tmp_path, base, monkeypatch, threads):
    """On local files the job's ``threads`` (what SLURM allocated) become odc-stac's
    read pool, one for all the job's loads (none for one thread: reads in the calling
    thread), and GDAL_NUM_THREADS; same pixels."""
    import os
    from types import SimpleNamespace

    import odc.stac

    from s2ts.tile import tile_from_snakemake

    calls = []
    real_load = odc.stac.load

    def recording_load(*args, **kwargs):  # the real loader, its pool argument recorded
        calls.append(kwargs.get("pool"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(odc.stac, "load", recording_load)
    monkeypatch.delenv("GDAL_NUM_THREADS", raising=False)
    bands = ramp()
    it = local_item(base, tmp_path / "cog", bands, all_classes_scl(), X0, Y1)
    smk = SimpleNamespace(
        threads=threads,
        input=SimpleNamespace(
            item_files=[write_items_file(tmp_path / "2024-06-01.json", [it])],
            grid=write_grid_json(tmp_path / "grid.json", utm_grid(32613, X0, Y1, N, N, 10)),
        ),
        params=SimpleNamespace(
            bands=["B03", "B04", "B08"],
            mask_band="SCL",
            signing="none",
            on_read_error="fail",
            loader="odc-stac",
            reads_in_flight=16,
            code="c",
            overviews="matching",
        ),
        output=SimpleNamespace(tiles=str(tmp_path / "tile" / "2024-06-01.json")),
        wildcards=SimpleNamespace(batch="2024-06-01", aoi="t"),
    )
    tile_from_snakemake(smk)
    assert os.environ["GDAL_NUM_THREADS"] == str(threads)
    # one pool of the job's threads for every load (None: the calling thread)
    assert calls and all((p is None) if threads == 1 else p._max_workers == threads for p in calls)
    assert threads == 1 or len({id(p) for p in calls}) == 1
    out = read_store(tmp_path / "tile" / "2024-06-01" / "2024-06-01.zarr")
    for b in bands:
        np.testing.assert_array_equal(out[b], bands[b])
    # the rule's output, written last: the batch's index, listing its one date
    assert json.loads((tmp_path / "tile" / "2024-06-01.json").read_text())["dates"] == ["2024-06-01"]


def test_matching_overview_takes_the_coarsest_within_one_percent():
    from s2ts.tile import matching_overview

    assert matching_overview(3.996, [2, 4, 8]) == 1  # the 4x one, although 3.996 < 4
    assert matching_overview(4.0, [2, 4, 8]) == 1
    assert matching_overview(3.9, [2, 4, 8]) == 0  # 4 > 3.9 * 1.01: the 2x one
    assert matching_overview(8.5, [2, 4, 8]) == 2
    assert matching_overview(1.5, [2, 4]) is None  # full resolution
    assert matching_overview(6.0, []) is None
    assert matching_overview(3.996, [2, 4, 8], "finer") == 0  # one level finer: 2x
    assert matching_overview(2.5, [2, 4, 8], "finer") is None  # finer than 2x: full resolution
    assert matching_overview(8.5, [2, 4, 8], "off") is None


def layered_cog(path: Path, levels: dict[int, int], full: int) -> None:
    """Rewrite a 10 m COG so that each overview level holds its own constant value
    (GDAL builds each level from the full resolution as it is at that moment)."""
    import rasterio
    import rasterio.shutil
    from rasterio.enums import Resampling

    with rasterio.open(path) as src:
        profile = dict(src.profile, driver="GTiff", tiled=True, blockxsize=32, blockysize=32)
    tmp = path.with_suffix(".layers.tif")
    with rasterio.open(tmp, "w", **profile) as dst:
        dst.write(np.full((profile["height"], profile["width"]), levels[min(levels)], np.uint16), 1)
    for f in sorted(levels):
        with rasterio.open(tmp, "r+") as dst:
            dst.write(np.full((profile["height"], profile["width"]), levels[f], np.uint16), 1)
            dst.build_overviews([g for g in sorted(levels) if g >= f and levels[g] == levels[f]], Resampling.average)
    with rasterio.open(tmp, "r+") as dst:
        dst.write(np.full((profile["height"], profile["width"]), full, np.uint16), 1)
    with rasterio.open(tmp) as src:
        rasterio.shutil.copy(src, path, driver="COG", overviews="FORCE_USE_EXISTING", compress="DEFLATE", blocksize=128)
    tmp.unlink()


def off_grid(crs: str, n: int, res: float) -> dict:
    """A grid in ``crs`` over the test COGs' area (pixel edges on multiples of ``res``)."""
    from pyproj import CRS, Transformer

    x, y = Transformer.from_crs(32613, crs, always_xy=True).transform(X0 + 40, Y1 - 40)
    x0, y1 = (x // res) * res, (y // res) * res
    c = CRS.from_user_input(crs)
    return {
        "crs": crs,
        "epsg": c.to_epsg(),
        "crs_wkt": c.to_wkt(),
        "resolution": float(res),
        "bounds": [x0, y1 - n * res, x0 + n * res, y1],
        "width": n,
        "height": n,
        "transform": [float(res), 0.0, x0, 0.0, -float(res), y1],
    }


def test_reprojected_40m_grid_reads_the_4x_overview(tmp_path, base):
    """A 40 m grid in EPSG:26953 over 10 m UTM pixels: 3.9986 source pixels per target
    pixel. odc-stac alone would snap that to 3 and read the 2x overview; the 4x one is
    read (only its pixels carry the marker 7777; the 2x level carries 5555)."""
    bands = {b: np.full((N, N), 1000, np.uint16) for b in ("B03", "B04", "B08")}
    it = local_item(base, tmp_path / "cog", bands, all_classes_scl(), X0, Y1)
    for b in bands:
        layered_cog(Path(it["assets"][b]["href"]), {2: 5555, 4: 7777, 8: 7777}, 1000)
    _, out = run_tile(tmp_path, [it], off_grid("EPSG:26953", 6, 40))
    inside = out["B08"] != 0
    assert inside.sum() >= 16 and (out["B08"][inside] == 7777).all()


def test_a_rerun_reads_only_new_or_changed_dates(tmp_path, base):
    """The batch folder survives a rerun (it is not the rule's output): stores whose items and recipe are
    unchanged are kept as they are, and their COGs are not even opened (here they are
    deleted before the rerun); a new date and a date whose items changed are read; a
    date no longer in the batch loses its store; another recipe reads everything."""
    import shutil

    from s2ts.tile import tile_batch

    grid = write_grid_json(tmp_path / "grid.json", utm_grid(32613, X0, Y1, N, N, 10))
    days = ["2024-06-01", "2024-06-06", "2024-06-11", "2024-06-16"]
    items, files, bands = {}, {}, {}
    for k, d in enumerate(days):
        bands[d] = ramp(10 + k)
        iid = f"S2B_MSIL2A_{d.replace('-', '')}T174629_R098_T13TDE_X"
        items[d] = local_item(
            base, tmp_path / "cog" / d, bands[d], all_classes_scl(k), X0, Y1, item_id=iid, datetime=f"{d}T17:46:29Z"
        )
        files[d] = write_items_file(tmp_path / f"{d}.json", [items[d]])
    out = tmp_path / "tile" / "2024"

    def run(ds, **kw):
        tile_batch([files[d] for d in ds], grid, ["B03", "B04", "B08"], "SCL", out, **{"code": "c1", **kw})
        return {p.stem: p.stat().st_mtime_ns for p in out.glob("*.zarr")}

    first = run(days[:3])
    assert sorted(first) == days[:3]
    for d in days[:3]:  # the earlier dates cannot be read any more
        shutil.rmtree(tmp_path / "cog" / d)
    second = run(days)  # one new date
    assert sorted(second) == days and all(second[d] == first[d] for d in days[:3])
    np.testing.assert_array_equal(read_store(out / f"{days[3]}.zarr")["B04"], bands[days[3]]["B04"])
    # new items for the first date (a reprocessing): only that date is read again
    bands[days[0]] = ramp(99)
    items[days[0]] = local_item(base, tmp_path / "cog" / "re", bands[days[0]], all_classes_scl(), X0, Y1,
                                item_id=items[days[0]]["id"] + "_R", datetime=f"{days[0]}T17:46:29Z")  # fmt: skip
    write_items_file(files[days[0]], [items[days[0]]])
    third = run(days)
    assert third[days[0]] != second[days[0]] and all(third[d] == second[d] for d in days[1:])
    np.testing.assert_array_equal(read_store(out / f"{days[0]}.zarr")["B04"], bands[days[0]]["B04"])
    # a date no longer in the batch: its store goes
    assert sorted(run([days[0], days[3]])) == [days[0], days[3]]
    # another recipe (the stage's code changed): every date is read again, and here fails
    with pytest.raises(UserError, match="cannot read asset"):
        run([days[0], days[1]], code="c2")


@pytest.mark.parametrize("loader", ["odc-stac", "stackstac"])
@pytest.mark.parametrize("proj_form", ["epsg", "code"])
def test_southern_hemisphere_item_exact_values(tmp_path, loader, proj_form):
    """The recorded 35MNM item (EPSG:32735, PB 02.12), both projection forms, both loaders."""
    south = load_features("tile-35MNM-2020.json")[0]
    bands, scl = ramp(7), all_classes_scl(7)
    x0, y1 = 500000.0, 9150000.0
    it = local_item(south, tmp_path / "cog", bands, scl, x0, y1, proj_form=proj_form)
    _, out = run_tile(tmp_path, [it], utm_grid(32735, x0, y1, N, N, 10), loader=loader)
    for b in bands:
        np.testing.assert_array_equal(out[b], bands[b])
    np.testing.assert_array_equal(out["SCL"], np.repeat(np.repeat(scl, 2, 0), 2, 1))


def test_loaders_agree_on_the_demo_catalog(small_demo_catalog):
    """odc-stac and stackstac on 8 dates of the demo catalog, the tutorial's 40 m
    EPSG:3035 grid: the SCL classes and footprint bitmasks are identical (both read
    the 20 m SCL with nearest); reflectance agrees to the DN on most pixels and
    differs where the resampling sources differ: odc-stac averages the COG's 4x
    overview (40 m), stackstac warps the 10 m pixels, so at class edges (shore,
    cloud) the two 40 m averages cover slightly different 10 m pixels. Measured:
    median 0 DN, 99th percentile about 230 DN; bounds: median <= 1, p99 <= 400 DN,
    and the valid footprints differ on < 0.5 % of the pixels (swath edge)."""
    from s2ts.tile import load_items

    grid, items = tutorial_grid(), demo_items(small_demo_catalog)
    bands = ["B03", "B04", "B08"]
    odc = load_items(items, grid, bands, "SCL", "odc-stac")
    ss = load_items(items, grid, bands, "SCL", "stackstac")
    np.testing.assert_array_equal(odc[1], ss[1])
    np.testing.assert_array_equal(odc[2], ss[2])
    for b in bands:
        a, c = odc[0][b].astype(float), ss[0][b].astype(float)
        assert ((a > 0) != (c > 0)).mean() < 0.005
        d = np.abs(a - c)[(a > 0) & (c > 0)]
        assert np.median(d) <= 1 and np.percentile(d, 99) <= 400, np.percentile(d, [50, 99, 100])


def tutorial_grid() -> dict:
    from conftest import ROOT

    from s2ts.aoi_grid import read_aois, target_grid

    return target_grid(read_aois(ROOT / "resources" / "banc_arguin.geojson")[0].geometry, "EPSG:3035", 40)


def test_overview_choice_against_the_demo_truth(small_demo_catalog):
    """tiles.overviews on the tutorial grid, clear pixels of 8 full-swath dates, against
    the generator's clear-sky truth averaged over each 40 m pixel: matching (the 4x
    overview) and finer (2x) are both right on the median; finer is closer at edges
    (99th percentile), off (full resolution) closer still or equal. The figures are
    in docs/performance.md."""
    from test_demo_e2e import area_truth

    from s2ts.demo_catalog import load_truth
    from s2ts.tile import load_items, mosaic

    grid, items = tutorial_grid(), demo_items(small_demo_catalog)
    truth = load_truth(small_demo_catalog)
    x = grid["bounds"][0] + 40 * (np.arange(grid["width"]) + 0.5)
    y = grid["bounds"][3] - 40 * (np.arange(grid["height"]) + 0.5)
    errors = {}
    for policy in ("matching", "finer", "off"):
        refl, scl, scl_any = load_items(items, grid, ["B03", "B08"], "SCL", overviews=policy)
        err = []
        for k, it in enumerate(items):
            one = {b: refl[b][k : k + 1] for b in refl}
            out, _, _, bits = mosaic(one, scl[k : k + 1], scl_any[k : k + 1])
            clear = (bits & ~np.uint16((1 << 4) | (1 << 5) | (1 << 6))) == 0  # only vegetation, soil, water
            tb = area_truth(truth, np.datetime64(it["properties"]["datetime"].rstrip("Z")), x, y)
            offset = 1000 if it["properties"]["s2:processing_baseline"] >= "04.00" else 0  # raw DN, uncorrected
            for b in ("B03", "B08"):
                err.append(np.abs((out[b].astype(float) - offset) / 10000 - tb[b])[clear & (out[b] > 0)])
        errors[policy] = np.concatenate(err)
    p99 = {k: np.percentile(v, 99) for k, v in errors.items()}
    assert all(np.median(v) < 0.001 for v in errors.values()), {k: np.median(v) for k, v in errors.items()}
    assert p99["finer"] < p99["matching"] and p99["off"] <= p99["finer"] * 1.05, p99


def test_remote_reads_are_kept_in_flight(tmp_path, base):
    """COGs over HTTP (benchmarks/cog_server.py on 127.0.0.1, 50 ms per request): a
    one-thread job keeps tiles.reads_in_flight requests open at once (the server's log
    shows them overlapping), one at a time with reads_in_flight 1; same pixels."""
    import sys

    from conftest import ROOT

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from cog_server import CogServer, read_log

    from s2ts.tile import tile_batch

    grid = write_grid_json(tmp_path / "grid.json", utm_grid(32613, X0, Y1, N, N, 10))
    root = tmp_path / "cog"
    days = ["2024-06-01", "2024-06-06", "2024-06-11"]
    bands = {d: ramp(20 + k) for k, d in enumerate(days)}
    items = [
        local_item(base, root / d, bands[d], all_classes_scl(k), X0, Y1, item_id=f"I{k}", datetime=f"{d}T17:46:29Z")
        for k, d in enumerate(days)
    ]

    def peak_requests(out, reads):
        # a server of its own: new URLs, so nothing comes from GDAL's cache of an earlier run
        with CogServer(root.parent, log=tmp_path / f"{out}.jsonl", delay_ms=50) as srv:
            files = []
            for d, it in zip(days, items):
                remote = json.loads(json.dumps(it))
                for a in remote["assets"].values():
                    a["href"] = f"{srv.url}/{Path(a['href']).relative_to(root.parent)}"
                files.append(write_items_file(tmp_path / f"{out}-{d}.json", [remote]))
            files = [f.rename(f.with_name(f.name.removeprefix(f"{out}-"))) for f in files]
            tile_batch(files, grid, ["B03", "B04", "B08"], "SCL", tmp_path / out, reads_in_flight=reads)
            srv.wait_idle()
            log = read_log(srv.log)
        events = sorted([(e["start"], 1) for e in log] + [(e["end"], -1) for e in log])
        level = peak = 0
        for _, step in events:
            level += step
            peak = max(peak, level)
        return peak

    assert peak_requests("one", 1) == 1
    assert peak_requests("many", 8) >= 4
    for d in days:
        for out in ("one", "many"):
            np.testing.assert_array_equal(read_store(tmp_path / out / f"{d}.zarr")["B08"], bands[d]["B08"])


def twelve_items(tmp_path, base, seed):
    """Twelve dates' items on one MGRS tile (one file grid per band resolution), each with
    its own known bands, exact on the aligned 10 m grid: the grid, the bands, the items."""
    bands = [ramp(seed + k) for k in range(12)]
    items = [
        local_item(
            base,
            tmp_path / f"i{k}",
            b,
            all_classes_scl(k),
            X0,
            Y1,
            item_id=f"I{k}",
            datetime=f"2024-06-{k + 1:02d}T17:46:29Z",
        )
        for k, b in enumerate(bands)
    ]
    return utm_grid(32613, X0, Y1, N, N, 10), bands, items


def test_pooled_reads_leave_the_warning_filters_as_they_were(tmp_path, base):
    """rasterio.warp.reproject guards its temporary dataset with warnings.catch_warnings,
    which is not thread-safe. Reads on 8 threads used to log one "Dataset has no
    geotransform" warning about it and leave an "ignore every warning" filter for the
    rest of the job. After each pooled load, the filters are the ones from before,
    nothing was warned, and the pixels are the items' own."""
    import warnings

    from rasterio.errors import NotGeoreferencedWarning

    from s2ts.tile import _read_pool, load_items

    grid, bands, items = twelve_items(tmp_path, base, seed=0)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        before = list(warnings.filters)
        with _read_pool(8) as pool:
            for _ in range(4):  # the race needs several warps in flight: a few loads
                refl, _scl, _any = load_items(items, grid, ["B03", "B04", "B08"], "SCL", pool=pool)
                assert warnings.filters == before
        warnings.warn("still shown after the loads", UserWarning, stacklevel=1)
    assert [w for w in seen if issubclass(w.category, NotGeoreferencedWarning)] == []
    assert [str(w.message) for w in seen if w.category is UserWarning] == ["still shown after the loads"]
    for k, b in enumerate(bands):
        for name in ("B03", "B04", "B08"):
            np.testing.assert_array_equal(refl[name][k], b[name])


def test_read_threads_share_each_reading_plan(tmp_path, base, monkeypatch):
    """pyproj remakes its transformers in every thread, so each read thread planning
    its own reads cost 35-50 ms per transformer. Twelve items on one MGRS tile read
    twice on 8 threads: one plan per (file grid, target grid), here two (the 10 m bands
    onto the grid, the 20 m SCL onto the finer mask grid), and the items' own pixels."""
    import odc.geo.overlap

    from s2ts.tile import _read_pool, _reproject_plan, load_items

    made = []
    plan = odc.geo.overlap.compute_reproject_roi
    monkeypatch.setattr(
        odc.geo.overlap, "compute_reproject_roi", lambda src, dst, **kw: made.append(1) or plan(src, dst, **kw)
    )
    _reproject_plan.cache_clear()
    grid, bands, items = twelve_items(tmp_path, base, seed=100)
    with _read_pool(8) as pool:
        for _ in range(2):
            refl, scl, _any = load_items(items, grid, ["B03", "B04", "B08"], "SCL", pool=pool)
    assert len(made) == 2
    for k, b in enumerate(bands):
        for name in ("B03", "B04", "B08"):
            np.testing.assert_array_equal(refl[name][k], b[name])
        np.testing.assert_array_equal(scl[k], np.repeat(np.repeat(all_classes_scl(k), 2, 0), 2, 1))


def test_worker_count():
    """A tile job's processes: one per thread, at most one per 8 dates to read, at least one."""
    from s2ts.tile import MIN_DATES_PER_WORKER, worker_count

    assert MIN_DATES_PER_WORKER == 8
    cases = {(1, 200): 1, (2, 0): 1, (2, 15): 1, (2, 16): 2, (2, 70): 2, (4, 20): 2, (4, 70): 4, (8, 31): 3}
    assert {k: worker_count(*k) for k in cases} == cases


def dated_batch(tmp_path, base, n, seed=0):
    """``n`` dates five days apart, one local item each with its own known bands
    (exact on the aligned 10 m grid); the item files, the grid file and the bands."""
    import datetime as dt

    grid = write_grid_json(tmp_path / "grid.json", utm_grid(32613, X0, Y1, N, N, 10))
    files, truth = [], {}
    for k in range(n):
        d = (dt.date(2024, 1, 1) + dt.timedelta(days=5 * k)).isoformat()
        truth[d] = ramp(seed + k)
        it = local_item(
            base, tmp_path / "cog" / d, truth[d], all_classes_scl(k), X0, Y1,
            item_id=f"S2B_MSIL2A_{d.replace('-', '')}T174629_R098_T13TDE_X", datetime=f"{d}T17:46:29Z",
        )  # fmt: skip
        files.append(write_items_file(tmp_path / f"{d}.json", [it]))
    return files, grid, truth


@pytest.mark.parametrize("loader", ["odc-stac", "stackstac"])
def test_a_batch_is_split_among_processes_with_the_jobs_threads(tmp_path, base, loader):
    """With 2 threads and 16 dates, the tile job reads and writes its dates in 2 forked
    processes, 8 consecutive dates each (their pids, from the log they share with the
    job, differ from each other and from the job's); every store holds its own date's
    pixels, exactly (no date's arrays end up in another's store), with either loader."""
    import logging
    import os

    from s2ts.tile import tile_batch

    files, grid, truth = dated_batch(tmp_path, base, 16)
    log_file = tmp_path / "tile.log"
    handler = logging.FileHandler(log_file)
    handler.setFormatter(logging.Formatter("%(process)d %(message)s"))
    logger = logging.getLogger("tile")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        tile_batch(files, grid, ["B03", "B04", "B08"], "SCL", tmp_path / "tile", threads=2, code="c", loader=loader)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        handler.close()
    reads = [line.split(" ", 1) for line in log_file.read_text().splitlines() if " reading " in line]
    pids = {int(pid) for pid, _ in reads}
    assert len(reads) == 2 and len(pids) == 2 and os.getpid() not in pids, reads
    days = sorted(truth)
    shares = sorted(msg.split("date(s) ")[1] for _, msg in reads)  # "(first .. last)" of each share
    assert shares == [f"({days[0]} .. {days[7]})", f"({days[8]} .. {days[15]})"], reads
    assert sorted(p.stem for p in (tmp_path / "tile").glob("*.zarr")) == sorted(truth)
    for d, bands in truth.items():
        attrs, out = read_attrs(tmp_path / "tile" / f"{d}.zarr"), read_store(tmp_path / "tile" / f"{d}.zarr")
        assert attrs["date"] == d
        for b in bands:
            np.testing.assert_array_equal(out[b], bands[b])


@pytest.mark.parametrize("on_read_error", ["fail", "skip"])
def test_a_read_error_in_one_process_acts_as_in_one(tmp_path, base, on_read_error):
    """A date that cannot be read in the second process: with ``fail`` the job raises
    the error naming the asset (and no worker process is left); with ``skip`` the date
    is recorded in skipped.json and every other date is written, as in one process."""
    import multiprocessing

    from s2ts.tile import ReadError, read_skipped, tile_batch

    files, grid, truth = dated_batch(tmp_path, base, 16, seed=50)
    bad = sorted(truth)[12]
    Path(json.loads(files[12].read_text())["features"][0]["assets"]["B04"]["href"]).unlink()
    out = tmp_path / "tile"
    run = lambda: tile_batch(files, grid, ["B03", "B04", "B08"], "SCL", out, threads=2, on_read_error=on_read_error)  # noqa: E731
    if on_read_error == "fail":
        with pytest.raises(ReadError, match="cannot read asset B04"):
            run()
        assert not (out / f"{bad}.zarr").exists()
    else:
        skipped = run()
        assert [s["date"] for s in skipped] == [bad] == [s["date"] for s in read_skipped(out)]
        assert sorted(p.stem for p in out.glob("*.zarr")) == sorted(set(truth) - {bad})
        np.testing.assert_array_equal(
            read_store(out / f"{sorted(truth)[15]}.zarr")["B04"], truth[sorted(truth)[15]]["B04"]
        )
    assert multiprocessing.active_children() == []
