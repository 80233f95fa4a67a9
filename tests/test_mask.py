"""Mask stage: every SCL class in and out of mask.classes, no-data, integer storage,
and the valid fraction inside the polygon."""

import numpy as np
import pytest
from conftest import read_store, utm_grid, write_batch_store

from s2ts.mask import mask, mask_arrays
from s2ts.zarr_io import FILL_INT16, read_attrs

CLASSES = [0, 1, 3, 8, 9, 10]


@pytest.mark.parametrize("scl_class", range(12))
@pytest.mark.parametrize("classes", [CLASSES, [3, 8, 9], []])
def test_each_scl_class(scl_class, classes):
    bands = {"B08": np.array([[1234, -50, FILL_INT16]], np.int16)}
    scl = np.full((1, 3), scl_class, np.uint8)
    out, valid = mask_arrays(bands, scl, classes)
    masked = scl_class in classes or scl_class == 0  # SCL 0 is no data, listed or not
    expected = [FILL_INT16, FILL_INT16, FILL_INT16] if masked else [1234, -50, FILL_INT16]
    np.testing.assert_array_equal(out["B08"], [expected])
    np.testing.assert_array_equal(valid, [[not masked, not masked, False]])
    assert out["B08"].dtype == np.int16  # never a float64 cube


def test_conservative_rule_masks_any_listed_class_in_the_footprint():
    bands = {"B08": np.array([[100, 200, 300]], np.int16)}
    scl = np.array([[4, 4, 4]], np.uint8)  # central cells all clear vegetation
    scl_any = np.array([[1 << 4, (1 << 4) | (1 << 8), (1 << 4) | (1 << 6)]], np.uint16)  # + medium cloud, + water
    out, valid = mask_arrays(bands, scl, CLASSES, scl_any)
    np.testing.assert_array_equal(out["B08"], [[100, FILL_INT16, 300]])
    out, _ = mask_arrays(bands, scl, CLASSES)  # nearest: the corner cloud leaks
    np.testing.assert_array_equal(out["B08"], [[100, 200, 300]])


def test_mask_store_and_valid_fraction(tmp_path):
    h, w = 20, 30
    grid = utm_grid(32630, 600000.0, 4950000.0, w, h, 40)
    rng = np.random.default_rng(0)
    scl = rng.integers(0, 12, (h, w), dtype=np.uint8)
    b = rng.integers(-500, 6000, (h, w)).astype(np.int16)
    b[0, :5] = FILL_INT16  # no data in the band itself
    attrs = {"stage": "offset_fix", "bands": ["B03", "B08"], "mask_band": "SCL", "grid": grid}
    scl_any = (np.uint16(1) << scl.astype(np.uint16)).astype(np.uint16)
    scl[2, 2] = 4  # a clear central cell ...
    scl_any[2, 2] = (1 << 4) | (1 << 9)  # ... with a cloud in a corner of the pixel
    arrays = {"B03": b, "B08": b, "SCL": scl, "SCL_any": scl_any, "source": np.zeros((h, w), np.uint8)}
    # two dates: the second all clear (SCL 4), so its valid fraction is the band's own
    arrays = {
        k: np.stack([v, np.full_like(v, 4) if k == "SCL" else (v * 0 + (1 << 4) if k == "SCL_any" else v)])
        for k, v in arrays.items()
    }
    write_batch_store(tmp_path / "o.zarr", grid, arrays, attrs, ["2022-03-01T11:00:00Z", "2022-03-06T11:00:00Z"])
    inside = np.zeros((h, w), np.uint8)
    inside[5:15, 10:25] = 1
    np.save(tmp_path / "inside.npy", inside)
    mask(tmp_path / "o.zarr", tmp_path / "inside.npy", tmp_path / "n.zarr", CLASSES, "nearest")
    fraction = mask(tmp_path / "o.zarr", tmp_path / "inside.npy", tmp_path / "m.zarr", CLASSES, "any")
    out = read_store(tmp_path / "m.zarr")
    assert {"B03", "B08", "valid_fraction"} <= set(out) and "SCL" not in out
    good_nearest = ~np.isin(scl, CLASSES) & (b != FILL_INT16)
    np.testing.assert_array_equal(read_store(tmp_path / "n.zarr")["B08"][0] != FILL_INT16, good_nearest)
    assert read_attrs(tmp_path / "n.zarr")["mask"]["rule"] == "nearest"
    good = good_nearest.copy()
    good[2, 2] = False  # the conservative rule catches the corner cloud
    np.testing.assert_array_equal(out["B08"][0] != FILL_INT16, good)
    np.testing.assert_array_equal(out["B08"][0][good], b[good])
    np.testing.assert_array_equal(out["B08"][1], b)  # all clear: the band as it was
    expected = [good[5:15, 10:25].sum() / 150, (b[5:15, 10:25] != FILL_INT16).sum() / 150]
    np.testing.assert_allclose(fraction, expected, rtol=1e-6)
    np.testing.assert_allclose(out["valid_fraction"], expected, rtol=1e-6)
    assert read_attrs(tmp_path / "m.zarr")["n_inside"] == 150


def test_a_store_chunked_by_date_is_masked_date_by_date_with_the_same_result(tmp_path, monkeypatch):
    """A large grid's offset_fix store holds one date per chunk (its memory budget):
    mask reads, masks and appends it chunk by chunk; same values and fractions as a
    store of one chunk."""
    import s2ts.zarr_io as zio
    from s2ts.zarr_io import open_dataset

    h, w, n = 12, 9, 4
    grid = utm_grid(32630, 600000.0, 4950000.0, w, h, 40)
    rng = np.random.default_rng(3)
    arrays = {
        "B03": rng.integers(-500, 6000, (n, h, w)).astype(np.int16),
        "B08": rng.integers(-500, 6000, (n, h, w)).astype(np.int16),
        "SCL": rng.integers(0, 12, (n, h, w)).astype(np.uint8),
        "source": np.zeros((n, h, w), np.uint8),
    }
    arrays["SCL_any"] = (np.uint16(1) << arrays["SCL"].astype(np.uint16)).astype(np.uint16)
    attrs = {"stage": "offset_fix", "bands": ["B03", "B08"], "mask_band": "SCL", "grid": grid}
    whens = [f"2022-03-0{d}T11:00:00Z" for d in range(1, n + 1)]
    write_batch_store(tmp_path / "one.zarr", grid, arrays, attrs, whens)
    monkeypatch.setattr(zio, "GROUP_BYTES", h * w * 16)  # one date per chunk
    write_batch_store(tmp_path / "dated.zarr", grid, arrays, attrs, whens)
    assert open_dataset(tmp_path / "dated.zarr")["B03"].encoding["chunks"][0] == 1
    inside = np.ones((h, w), np.uint8)
    np.save(tmp_path / "inside.npy", inside)
    f1 = mask(tmp_path / "one.zarr", tmp_path / "inside.npy", tmp_path / "m1.zarr", CLASSES)
    f2 = mask(tmp_path / "dated.zarr", tmp_path / "inside.npy", tmp_path / "m2.zarr", CLASSES)
    np.testing.assert_array_equal(f1, f2)
    a, b = read_store(tmp_path / "m1.zarr"), read_store(tmp_path / "m2.zarr")
    for v in ("B03", "B08", "valid_fraction"):
        np.testing.assert_array_equal(a[v], b[v])
    assert open_dataset(tmp_path / "m2.zarr")["B03"].encoding["chunks"][0] == 1
    # and the values are the masking rule's, date by date
    expected, _ = mask_arrays({"B03": arrays["B03"]}, arrays["SCL"], CLASSES, arrays["SCL_any"])
    np.testing.assert_array_equal(b["B03"], expected["B03"])
