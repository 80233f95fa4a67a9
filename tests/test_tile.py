"""Tile stage: odc-stac reads real item metadata (both projection forms) with small
local COGs of known values onto a target grid; same-day mosaics are deterministic;
SCL never gets a class that was not in the input."""

import numpy as np
import pytest
from conftest import load_features, local_item, utm_grid, write_grid_json, write_items_file

from s2ts.tile import mosaic, signing_mode, tile
from s2ts.zarr_io import NO_SOURCE, read_arrays, read_attrs

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


def run_tile(tmp_path, items, grid, name="t.zarr"):
    f = write_items_file(tmp_path / "2024-06-01.json", items)
    g = write_grid_json(tmp_path / "grid.json", grid)
    attrs = tile(f, g, ["B03", "B04", "B08"], "SCL", tmp_path / name)
    return attrs, read_arrays(tmp_path / name)


@pytest.mark.parametrize("proj_form", ["epsg", "code"])
def test_aligned_10m_grid_reads_exact_values(tmp_path, base, proj_form):
    bands, scl = ramp(), all_classes_scl()
    it = local_item(base, tmp_path / "cog", bands, scl, X0, Y1, proj_form=proj_form)
    attrs, out = run_tile(tmp_path, [it], utm_grid(32613, X0, Y1, N, N, 10))
    for b in bands:
        assert out[b].dtype == np.uint16
        np.testing.assert_array_equal(out[b], bands[b])
    np.testing.assert_array_equal(out["SCL"], np.repeat(np.repeat(scl, 2, 0), 2, 1))
    assert (out["source"] == 0).all()
    assert attrs["items"][0]["processing_baseline"] == "05.11" and attrs["offset_corrected"] is False


def test_20m_grid_averages_reflectance_and_keeps_scl_classes(tmp_path, base):
    bands, scl = ramp(1), all_classes_scl(1)
    it = local_item(base, tmp_path / "cog", bands, scl, X0, Y1)
    _, out = run_tile(tmp_path, [it], utm_grid(32613, X0, Y1, N // 2, N // 2, 20))
    for b in bands:
        block_mean = bands[b].reshape(N // 2, 2, N // 2, 2).astype(float).mean(axis=(1, 3))
        assert np.abs(out[b].astype(float) - block_mean).max() <= 1.0
    np.testing.assert_array_equal(out["SCL"], scl)


def test_scl_any_holds_every_class_of_the_footprint(tmp_path, base):
    scl = all_classes_scl(5)
    it = local_item(base, tmp_path / "cog", ramp(5), scl, X0, Y1)
    _, out = run_tile(tmp_path, [it], utm_grid(32613, X0, Y1, N // 4, N // 4, 40))
    # independent: OR of the bits of the 2 x 2 SCL cells (20 m) under each 40 m pixel
    blocks = scl.reshape(N // 4, 2, N // 4, 2)
    expected = np.zeros((N // 4, N // 4), np.uint16)
    for i in range(2):
        for j in range(2):
            expected |= (1 << blocks[:, i, :, j].astype(np.uint16)).astype(np.uint16)
    np.testing.assert_array_equal(out["SCL_any"], expected)
    # and SCL itself is one of the covered cells
    assert all((1 << int(c)) & int(e) for c, e in zip(out["SCL"].ravel(), expected.ravel()))


def test_offgrid_target_scl_classes_come_from_input(tmp_path, base):
    """A grid shifted by a fraction of a pixel and at 30 m: nearest only, no invented class."""
    scl = np.zeros((N // 2, N // 2), np.uint8)
    scl[:, : N // 4] = 4  # two classes whose average (7) would be a third one
    scl[:, N // 4 :] = 10
    it = local_item(base, tmp_path / "cog", ramp(2), scl, X0, Y1)
    _, out = run_tile(tmp_path, [it], utm_grid(32613, X0 + 7, Y1 - 7, 20, 20, 30))
    assert set(np.unique(out["SCL"])) <= {0, 4, 10}
    assert {4, 10} <= set(np.unique(out["SCL"]))


def test_overviews_are_read_when_the_resolution_allows(tmp_path, base):
    bands = {b: np.full((N, N), 1000, np.uint16) for b in ("B03", "B04", "B08")}
    marker = {b: np.full((N, N), 7777, np.uint16) for b in bands}  # only in the overviews
    it = local_item(base, tmp_path / "cog", bands, all_classes_scl(), X0, Y1, overview_marker=marker)
    _, at40 = run_tile(tmp_path, [it], utm_grid(32613, X0, Y1, N // 4, N // 4, 40), "a.zarr")
    _, at10 = run_tile(tmp_path, [it], utm_grid(32613, X0, Y1, N, N, 10), "b.zarr")
    assert (at40["B08"] == 7777).all()  # the 4x overview was read
    assert (at10["B08"] == 1000).all()  # full resolution where needed


def test_same_day_items_mosaic_deterministically(tmp_path, base):
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
    attrs1, out1 = run_tile(tmp_path, [b, a], grid, "1.zarr")
    attrs2, out2 = run_tile(tmp_path, [a, b], grid, "2.zarr")
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


def test_signing_only_for_planetary_computer_host():
    assert signing_mode("auto", "https://planetarycomputer.microsoft.com/api/stac/v1") == "planetary_computer"
    assert signing_mode("auto", "https://earth-search.aws.element84.com/v1") == "none"
    assert signing_mode("auto", "resources/demo-catalog/catalog.json") == "none"
    assert signing_mode("planetary_computer", "http://127.0.0.1:9000") == "planetary_computer"


def test_tile_store_opens_in_xarray(tmp_path, base):
    import xarray as xr

    it = local_item(base, tmp_path / "cog", ramp(), all_classes_scl(), X0, Y1)
    run_tile(tmp_path, [it], utm_grid(32613, X0, Y1, N, N, 10))
    ds = xr.open_zarr(tmp_path / "t.zarr", consolidated=False)
    assert ds["B03"].dims == ("y", "x") and float(ds.x[0]) == X0 + 5 and float(ds.y[0]) == Y1 - 5
    assert read_attrs(tmp_path / "t.zarr")["date"] == "2024-06-01"


@pytest.mark.parametrize("threads", [1, 2])
def test_rule_threads_drive_the_loader_and_gdal(tmp_path, base, monkeypatch, threads):
    """The job's ``threads`` (what SLURM allocated) become odc-stac's read pool (none
    for one thread: reads in the calling thread) and GDAL_NUM_THREADS; same pixels."""
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
        params=SimpleNamespace(bands=["B03", "B04", "B08"], mask_band="SCL", signing="none", on_read_error="fail"),
        output=SimpleNamespace(tiles=str(tmp_path / "tile" / "2024-06-01")),
        wildcards=SimpleNamespace(batch="2024-06-01"),
    )
    tile_from_snakemake(smk)
    assert os.environ["GDAL_NUM_THREADS"] == str(threads)
    assert calls and all(p == (threads if threads > 1 else None) for p in calls)
    out = read_arrays(tmp_path / "tile" / "2024-06-01" / "2024-06-01.zarr")
    for b in bands:
        np.testing.assert_array_equal(out[b], bands[b])
