"""Mask stage: every SCL class in and out of mask.classes, no-data, integer storage,
the valid fraction inside the polygon, and mask.dilate_m against brute-force distances
and the demo's truth."""

from pathlib import Path

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


def test_each_date_carries_the_digest_of_its_masked_bands(tmp_path, monkeypatch):
    """``digest(time)``: per date, SHA-1 over each band's name and C-ordered int16 bytes
    (computed here with hashlib on the store's values), the same whether the store is
    masked in one chunk or date by date; a one-DN change on one date changes that
    date's digest only."""
    import hashlib

    import s2ts.zarr_io as zio
    from s2ts.mask import date_digests

    h, w, n = 10, 7, 3
    grid = utm_grid(32630, 600000.0, 4950000.0, w, h, 40)
    rng = np.random.default_rng(5)
    arrays = {b: rng.integers(-500, 6000, (n, h, w)).astype(np.int16) for b in ("B03", "B08")}
    arrays["SCL"] = rng.integers(0, 12, (n, h, w)).astype(np.uint8)
    arrays["SCL_any"] = (np.uint16(1) << arrays["SCL"].astype(np.uint16)).astype(np.uint16)
    attrs = {"stage": "offset_fix", "bands": ["B03", "B08"], "mask_band": "SCL", "grid": grid}
    whens = [f"2022-03-0{d}T11:00:00Z" for d in range(1, n + 1)]
    write_batch_store(tmp_path / "o.zarr", grid, arrays, attrs, whens)
    np.save(tmp_path / "inside.npy", np.ones((h, w), np.uint8))
    mask(tmp_path / "o.zarr", tmp_path / "inside.npy", tmp_path / "m.zarr", CLASSES)
    out = read_store(tmp_path / "m.zarr")
    expected = []
    for i in range(n):
        d = hashlib.sha1()
        for b in ("B03", "B08"):
            d.update(b.encode())
            d.update(np.ascontiguousarray(out[b][i], dtype="<i2").tobytes())
        expected.append(d.hexdigest())
    assert [str(x) for x in out["digest"]] == expected and len(set(expected)) == n
    monkeypatch.setattr(zio, "GROUP_BYTES", h * w * 16)  # one date per chunk
    write_batch_store(tmp_path / "dated.zarr", grid, arrays, attrs, whens)
    mask(tmp_path / "dated.zarr", tmp_path / "inside.npy", tmp_path / "m2.zarr", CLASSES)
    assert [str(x) for x in read_store(tmp_path / "m2.zarr")["digest"]] == expected
    bands = {b: out[b].copy() for b in ("B03", "B08")}
    bands["B08"][1, 4, 3] += 1
    changed = date_digests(bands)
    assert changed[0] == expected[0] and changed[2] == expected[2] and changed[1] != expected[1]


# ----------------------------------------------------------------------------- mask.dilate_m
def grown_truth(source: np.ndarray, res: float, radius_m: float) -> np.ndarray:
    """Brute force: True where the centre of a ``source`` pixel is within ``radius_m``
    metres of the pixel's centre (Euclidean, on the grid), per 2-D slice."""
    h, w = source.shape[-2:]
    yy, xx = np.mgrid[:h, :w] * res
    out = np.zeros(source.shape, dtype=bool)
    for idx in np.ndindex(source.shape[:-2]):
        ys, xs = np.nonzero(source[idx])
        for y, x in zip(ys * res, xs * res):
            out[idx] |= (yy - y) ** 2 + (xx - x) ** 2 <= radius_m**2
    return out


def dilation_scene(h=40, w=50):
    """Two dates of SCL on a 20 m grid: clouds (9, 8), a shadow (3) and cirrus (10) near
    the 16-pixel chunk edges, no data (0) along a swath edge, a corner cloud only in a
    clear pixel's footprint (SCL_any), everything else clear vegetation (4)."""
    scl = np.full((2, h, w), 4, np.uint8)
    scl[0, 15, 15] = 9  # on a chunk corner (chunks of 16)
    scl[0, 5, 16] = 8  # just right of a chunk edge
    scl[0, 30, 31] = 3  # shadow, left of a chunk edge
    scl[0, 20:23, 40:42] = 10  # cirrus block
    scl[0, :, 47:] = 0  # no data: not grown
    scl[1, 33, 0] = 9  # date 1: one cloud at the grid's edge
    scl[1, 0:3, 20:25] = 1  # saturated: a listed class, grown too
    scl_any = (np.uint16(1) << scl.astype(np.uint16)).astype(np.uint16)
    scl_any[1, 10, 10] |= 1 << 9  # a cloud in a corner of a clear pixel's footprint
    return scl, scl_any


@pytest.mark.parametrize("rule", ["any", "nearest"])
@pytest.mark.parametrize("radius_m", [50.0, 20.0, 28.3])
def test_dilation_is_a_disk_and_not_cut_at_chunk_edges(tmp_path, monkeypatch, rule, radius_m):
    """Clouds and shadows grow by a disk of radius_m metres on the grid, through chunk edges
    (the store is written in 16 x 16 chunks: 3 x 4 of them), each date on its own; no data
    does not grow. Truth: brute-force distances between pixel centres."""
    import s2ts.zarr_io as zio
    from s2ts.zarr_io import open_dataset

    monkeypatch.setattr(zio, "CHUNK", 16)
    h, w, res = 40, 50, 20.0
    grid = utm_grid(32630, 600000.0, 4950000.0, w, h, res)
    scl, scl_any = dilation_scene(h, w)
    b = np.full((2, h, w), 500, np.int16)
    attrs = {"stage": "offset_fix", "bands": ["B08"], "mask_band": "SCL", "grid": grid}
    arrays = {"B08": b, "SCL": scl, "SCL_any": scl_any, "source": np.zeros((2, h, w), np.uint8)}
    write_batch_store(tmp_path / "o.zarr", grid, arrays, attrs, ["2022-03-01T11:00:00Z", "2022-03-06T11:00:00Z"])
    assert len(open_dataset(tmp_path / "o.zarr", chunks={})["SCL"].chunks[2]) == 4  # several chunks
    inside = np.ones((h, w), np.uint8)
    np.save(tmp_path / "inside.npy", inside)
    fraction = mask(tmp_path / "o.zarr", tmp_path / "inside.npy", tmp_path / "m.zarr", CLASSES, rule, dilate_m=radius_m)
    got = read_store(tmp_path / "m.zarr")["B08"] == FILL_INT16
    listed = np.isin(scl, [c for c in CLASSES if c != 0])
    if rule == "any":
        listed |= (scl_any & np.uint16(sum(1 << c for c in CLASSES if c))) != 0
    expected = grown_truth(listed, res, radius_m) | np.isin(scl, CLASSES)
    np.testing.assert_array_equal(got, expected)
    assert got[0, :, 46].sum() == 0  # the swath edge (no data from column 47) did not grow
    assert not got[1, 15, 15] and got[0, 15, 15]  # date 0's cloud does not mask date 1
    np.testing.assert_allclose(fraction, 1 - expected.mean(axis=(1, 2)), rtol=1e-6)
    assert read_attrs(tmp_path / "m.zarr")["mask"]["dilate_m"] == radius_m


def test_dilation_disk_sizes():
    """Pixels whose centre is within the radius: 80 m on 40 m = offsets with dy^2 + dx^2 <= 4
    (13 pixels); 40 m: the 4 neighbours (5); 40 * sqrt(2): the 8 neighbours (9); below the
    resolution: the pixel alone (nothing grows)."""
    from s2ts.mask import disk

    for radius, res, n in ((80, 40, 13), (40, 40, 5), (40 * 2**0.5, 40, 9), (39.9, 40, 1), (100, 40, 21)):
        d = disk(radius, res)
        assert d.sum() == n, (radius, res, d.sum())
        assert grown_truth(np.pad([[True]], d.shape[0] // 2), res, radius).sum() == n


def test_no_dilation_by_default_or_below_the_resolution(tmp_path):
    h, w = 12, 14
    grid = utm_grid(32630, 600000.0, 4950000.0, w, h, 40)
    rng = np.random.default_rng(1)
    scl = rng.choice(np.array([4, 4, 4, 9, 3, 0], np.uint8), (1, h, w))
    arrays = {
        "B08": rng.integers(100, 900, (1, h, w)).astype(np.int16),
        "SCL": scl,
        "SCL_any": (np.uint16(1) << scl.astype(np.uint16)).astype(np.uint16),
        "source": np.zeros((1, h, w), np.uint8),
    }
    attrs = {"stage": "offset_fix", "bands": ["B08"], "mask_band": "SCL", "grid": grid}
    write_batch_store(tmp_path / "o.zarr", grid, arrays, attrs, ["2022-03-01T11:00:00Z"])
    np.save(tmp_path / "inside.npy", np.ones((h, w), np.uint8))
    outs = []
    for k, radius in enumerate((0, 39.0)):
        mask(tmp_path / "o.zarr", tmp_path / "inside.npy", tmp_path / f"m{k}.zarr", CLASSES, "any", dilate_m=radius)
        outs.append(read_store(tmp_path / f"m{k}.zarr")["B08"])
    np.testing.assert_array_equal(outs[0], outs[1])
    np.testing.assert_array_equal(outs[0] == FILL_INT16, np.isin(scl, CLASSES))


# ----------------------------------------------------------------------------- on the demo
def test_demo_dilation_removes_the_cloud_edge_errors(options_run, tmp_path):
    """The demo's truth: without dilation, cloud and shadow edges leave observed pixels far
    from the clear-sky truth (measured on the whole demo: up to 0.97 reflectance, 41 of 134
    dates above 0.08); with mask.dilate_m: 80 (the options run) the worst observed pixel of
    every date is within 0.08 (what remains is the resampling at shorelines), for about 1 %
    of the observed pixels."""
    import glob

    from conftest import demo_truth_images

    from s2ts.zarr_io import open_dataset

    aoi = options_run / "1"
    inside = np.load(aoi / "aoi" / "inside.npy").astype(bool)
    dilated, plain = [], []
    for store in sorted(glob.glob(str(aoi / "offset_fix" / "*.zarr"))):
        out = tmp_path / Path(store).name
        mask(store, aoi / "aoi" / "inside.npy", out, CLASSES, "any", dilate_m=0)
        plain.append(open_dataset(out).load())
        dilated.append(open_dataset(aoi / "mask" / Path(store).name).load())
    assert all(d.attrs["mask"]["dilate_m"] == 80 for d in dilated)
    times = [t for d in plain for t in d.time.values]
    truth = demo_truth_images(options_run, times)
    worst = {"plain": [], "dilated": []}
    kept = {"plain": 0, "dilated": 0}
    for name, stores in (("plain", plain), ("dilated", dilated)):
        for d in stores:
            for i, t in enumerate(d.time.values):
                err = 0.0
                for b in ("B03", "B04", "B08"):
                    v = d[b].values[i]
                    ok = (v != FILL_INT16) & inside
                    err = max(err, float(np.abs(v[ok] / 1e4 - truth[t][b][ok]).max(initial=0)))
                kept[name] += int(((d["B08"].values[i] != FILL_INT16) & inside).sum())
                worst[name].append(err)
    plain_worst, dilated_worst = np.array(worst["plain"]), np.array(worst["dilated"])
    assert (plain_worst > 0.1).sum() >= 3, plain_worst  # cloud edges left in
    assert dilated_worst.max() <= 0.08, dilated_worst
    assert 0.95 * kept["plain"] < kept["dilated"] < kept["plain"]  # about 1 % of the observations dropped
