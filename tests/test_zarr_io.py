"""s2ts.zarr_io: stores written by write_dataset are the stores zarr itself writes."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import s2ts.zarr_io as zio  # noqa: E402

GRID = {"crs": "EPSG:32630", "resolution": 20, "bounds": [600000, 4900000, 600000 + 20 * 37, 4900000 + 20 * 23]}
GRID.update(width=37, height=23)


def tile_like(seed=0):
    """A per-date tile store's Dataset: bands, SCL, SCL_any and source on the grid."""
    rng = np.random.default_rng(seed)
    ds = zio.grid_dataset(GRID)
    shape = (GRID["height"], GRID["width"])
    for b in ["B03", "B04", "B08", "SCL_any"]:
        ds[b] = (("y", "x"), rng.integers(0, 12000, shape).astype("uint16"))
    for b in ["SCL", "source"]:
        ds[b] = (("y", "x"), rng.integers(0, 12, shape).astype("uint8"))
    ds.attrs = {"stage": "tile", "date": "2021-01-03", "items": [{"id": "a"}]}
    return ds


def files_of(store: Path) -> dict:
    return {p.relative_to(store).as_posix(): p.read_bytes() for p in sorted(store.rglob("*")) if p.is_file()}


def test_a_small_store_is_file_for_file_what_to_zarr_writes_to_disk(tmp_path):
    ds = tile_like()
    zio.write_dataset(ds, tmp_path / "buffered.zarr")
    # the truth: xarray's to_zarr on zarr's own LocalStore, same encoding
    plain = zio._plain_attrs(ds)
    with zio._quiet():
        plain.to_zarr(
            tmp_path / "direct.zarr", mode="w", zarr_format=3, consolidated=True, encoding=zio._encoding(plain)
        )
    got, want = files_of(tmp_path / "buffered.zarr"), files_of(tmp_path / "direct.zarr")
    assert sorted(got) == sorted(want)
    assert "zarr.json" in got and "B03/0.0" in got
    assert got == want
    back = zio.open_dataset(tmp_path / "buffered.zarr")
    for name in ["B03", "SCL", "source"]:
        np.testing.assert_array_equal(back[name].values, ds[name].values)
    assert back.rio.crs.to_epsg() == 32630
    assert not list(tmp_path.glob(".*tmp-*")), "no temporary store left behind"


def test_a_store_above_the_buffer_limit_is_written_straight_to_disk(tmp_path, monkeypatch):
    def no_buffer(keys, root):
        raise AssertionError("a store above BUFFERED_BYTES was held in memory")

    monkeypatch.setattr(zio, "_persist", no_buffer)
    monkeypatch.setattr(zio, "BUFFERED_BYTES", tile_like().nbytes - 1)
    zio.write_dataset(tile_like(), tmp_path / "t.zarr")
    np.testing.assert_array_equal(zio.open_dataset(tmp_path / "t.zarr")["B08"].values, tile_like()["B08"].values)


def test_a_failed_buffered_write_leaves_no_store(tmp_path, monkeypatch):
    def disk_full(keys, root):
        root.mkdir(parents=True)
        (root / "zarr.json").write_text("{")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(zio, "_persist", disk_full)
    with pytest.raises(OSError, match="No space left"):
        zio.write_dataset(tile_like(), tmp_path / "t.zarr")
    assert list(tmp_path.iterdir()) == []


def direct_files(ds, store: Path) -> dict:
    """The truth for ``ds``: xarray's ``to_zarr`` on zarr's own LocalStore, same encoding."""
    plain = zio._plain_attrs(ds)
    with zio._quiet():
        plain.to_zarr(store, mode="w", zarr_format=3, consolidated=True, encoding=zio._encoding(plain))
    return files_of(store)


def counted_to_zarr(monkeypatch):
    """Count the calls of ``Dataset.to_zarr`` (the template path makes none)."""
    import xarray as xr

    calls = []
    real = xr.Dataset.to_zarr

    def counting(self, *args, **kwargs):
        calls.append(1)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(xr.Dataset, "to_zarr", counting)
    return calls


def dates_of_one_batch():
    """Five dates of one grid: different pixels, items and attribute values, a band
    of zeros only after a date that had other values, and values where the first
    date had zeros only (zarr writes no chunk of zeros, its arrays' ``fill_value``;
    the CF ``_FillValue`` is an attribute)."""
    out = []
    for k in range(5):
        ds = tile_like(seed=k)
        ds.attrs = {
            "stage": "tile",
            "date": f"2021-01-0{k + 1}",
            "items": [{"id": f"item-{k}-{j}", "cloud": np.float64(0.5 * j)} for j in range(k + 1)],
            "shifts": np.arange(k + 1),
        }
        out.append(ds)
    out[0]["source"][:] = 0  # every pixel from the first item: the template has no chunk for source
    out[2]["B04"][:] = 0  # no chunk for B04 on that date
    return out


def test_dates_of_one_layout_are_file_for_file_what_to_zarr_writes(tmp_path, monkeypatch):
    zio._TEMPLATE.clear()
    dates = dates_of_one_batch()
    calls = counted_to_zarr(monkeypatch)
    for k, ds in enumerate(dates):
        zio.write_dataset(ds, tmp_path / f"{k}.zarr")
    assert len(calls) == 1, "only the first date of the layout goes through to_zarr"
    for k, ds in enumerate(dates):
        got, want = files_of(tmp_path / f"{k}.zarr"), direct_files(ds, tmp_path / f"direct-{k}.zarr")
        assert sorted(got) == sorted(want), k
        assert got == want, k
    assert "source/0.0" not in files_of(tmp_path / "0.zarr") and "source/0.0" in files_of(tmp_path / "1.zarr")
    assert "B04/0.0" not in files_of(tmp_path / "2.zarr") and "B04/0.0" in files_of(tmp_path / "3.zarr")
    back = zio.open_dataset(tmp_path / "3.zarr")
    for name in ["B03", "B04", "SCL", "SCL_any", "source"]:
        np.testing.assert_array_equal(back[name].values, dates[3][name].values)
    assert back.attrs["date"] == "2021-01-04" and back.attrs["shifts"] == [0, 1, 2, 3]
    assert [it["id"] for it in back.attrs["items"]] == [f"item-3-{j}" for j in range(4)]
    assert back.rio.crs.to_epsg() == 32630


def test_a_store_of_another_layout_goes_through_to_zarr(tmp_path, monkeypatch):
    zio._TEMPLATE.clear()
    first = dates_of_one_batch()[0]
    other_grid = dict(GRID, bounds=[GRID["bounds"][0] + 20, *GRID["bounds"][1:]])
    moved = zio.grid_dataset(other_grid)  # same shape, the coordinates one pixel east
    for name in first.data_vars:
        moved[name] = first[name].variable
    moved.attrs = dict(first.attrs)
    renamed = first.copy()
    renamed.attrs = {"stage": "tile", "day": "2021-01-01"}  # other attribute names
    floats = first.copy()
    floats["B03"] = floats["B03"].astype("float32")  # CF encoding could change float values
    calls = counted_to_zarr(monkeypatch)
    cases = {"first": first, "moved": moved, "renamed": renamed, "floats": floats, "floats-again": floats}
    for name, ds in cases.items():
        zio.write_dataset(ds, tmp_path / f"{name}.zarr")
    assert len(calls) == len(cases), "each layout change (and any float variable) is written by to_zarr"
    for name, ds in cases.items():
        assert files_of(tmp_path / f"{name}.zarr") == direct_files(ds, tmp_path / f"direct-{name}.zarr"), name
    np.testing.assert_array_equal(zio.open_dataset(tmp_path / "moved.zarr")["x"].values, moved["x"].values)


def test_stack_dates_is_xarrays_concat_of_the_stores(tmp_path):
    import xarray as xr

    dates = dates_of_one_batch()
    paths = []
    for k, ds in enumerate(dates):
        paths.append(tmp_path / f"{k}.zarr")
        zio.write_dataset(ds, paths[-1])
    order = [paths[3], paths[0], paths[4], paths[2], paths[1]]  # the order given, not the names'
    got = zio.stack_dates(order)
    # the truth: xarray's own concatenation of the stores opened one by one
    want = xr.concat(
        [zio.open_dataset(p, indexes=False) for p in order], dim="time", coords="minimal", compat="override"
    ).load()
    xr.testing.assert_identical(got, want)
    for name in ["B03", "B04", "SCL", "SCL_any", "source"]:
        np.testing.assert_array_equal(got[name].values[1], dates[0][name].values)
        np.testing.assert_array_equal(got[name].values[3], dates[2][name].values)
        assert got[name].encoding["dtype"] == want[name].encoding["dtype"]
    assert got.sizes == {"time": 5, "y": GRID["height"], "x": GRID["width"]}
    assert got.rio.crs.to_epsg() == 32630


def test_stack_dates_refuses_a_store_of_another_grid(tmp_path):
    zio.write_dataset(tile_like(0), tmp_path / "a.zarr")
    small = dict(GRID, width=36, bounds=[*GRID["bounds"][:2], GRID["bounds"][2] - 20, GRID["bounds"][3]])
    other = zio.grid_dataset(small)
    for name, var in tile_like(1).data_vars.items():
        other[name] = (("y", "x"), var.values[:, :36])
    zio.write_dataset(other, tmp_path / "b.zarr")
    with pytest.raises(ValueError, match=r"b\.zarr: B03 is uint16 \(23, 36\), not uint16 \(23, 37\)"):
        zio.stack_dates([tmp_path / "a.zarr", tmp_path / "b.zarr"])
