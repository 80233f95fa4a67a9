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
