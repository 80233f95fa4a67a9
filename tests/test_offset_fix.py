"""Offset fix on real item metadata (PB 02.12 and 05.1x) with small local COGs of
known values: the switch is the item's baseline as a version, no-data stays
no-data, a DN of 1000 at PB >= 04.00 stays a valid 0, SCL is never shifted, each
pixel follows its own item's baseline, and the fix can never run twice."""

import numpy as np
import pytest
from conftest import load_features, local_item, read_store, tile_store, utm_grid

from s2ts.errors import UserError
from s2ts.offset_fix import apply_offset, date_shift, offset_fix
from s2ts.zarr_io import FILL_INT16, NO_SOURCE, read_attrs

N = 32
BANDS = ["B03", "B04", "B08"]


def known_dn():
    """Row 0: no data; row 1: DN 1000 (reflectance 0 at PB >= 04.00); rest: 1000 + 37 * (i + j)."""
    dn = 1000 + 37 * np.add.outer(np.arange(N), np.arange(N)).astype(np.uint16)
    dn[0] = 0
    dn[1] = 1000
    return dn


def scl():
    s = np.full((N // 2, N // 2), 4, np.uint8)
    s[0] = 0
    return s


def tile_of(tmp_path, items, epsg, x0, y1, name):
    return tile_store(tmp_path, items, utm_grid(epsg, x0, y1, N, N, 10), out=name)


def one_date(path) -> dict:
    """The arrays of a batch store's only date."""
    return {k: v[0] if v.ndim == 3 else v for k, v in read_store(path).items()}


@pytest.fixture(scope="module")
def items():
    new = next(f for f in load_features("tile-13TDE-2024.json") if f["properties"]["s2:processing_baseline"] == "05.11")
    old = load_features("tile-35MNM-2020.json")[0]
    assert old["properties"]["s2:processing_baseline"] == "02.12"
    return {"new": (new, 32613, 450000.0, 4420000.0), "old": (old, 32735, 500000.0, 9150000.0)}


@pytest.mark.parametrize(
    "which, date, baseline, shifted",
    [
        ("new", None, None, True),  # real PB 05.11 item, 2024
        ("old", None, None, False),  # real PB 02.12 item, 2020
        ("old", "2022-02-10T08:06:11Z", "03.01", False),  # after 2022-01-25 but PB 03.01: not shifted
        ("new", "2021-06-01T17:46:29Z", "05.00", True),  # before 2022-01-25 but reprocessed PB 05.00: shifted
        ("new", None, "04.00", True),  # the first baseline with the offset
        ("new", None, "05.9", True),
    ],
)
def test_switch_on_baseline_as_version(tmp_path, items, which, date, baseline, shifted):
    base, epsg, x0, y1 = items[which]
    dn = known_dn()
    it = local_item(base, tmp_path / "cog", {b: dn for b in BANDS}, scl(), x0, y1, datetime=date, baseline=baseline)
    t = tile_of(tmp_path, [it], epsg, x0, y1, "t")
    (record,) = offset_fix([t], tmp_path / "o.zarr", True, -1000, "04.00")
    out = one_date(tmp_path / "o.zarr")
    expected = dn.astype(np.int32) - (1000 if shifted else 0)
    expected[dn == 0] = FILL_INT16
    for b in BANDS:
        assert out[b].dtype == np.int16
        np.testing.assert_array_equal(out[b], expected)
    assert (out["B08"][0] == FILL_INT16).all()  # DN 0 stays no data: never 64536, never -1000
    assert (out["B08"][1] == (0 if shifted else 1000)).all()  # DN 1000 stays valid (reflectance 0)
    np.testing.assert_array_equal(out["SCL"], read_store(t)["SCL"])  # SCL never shifted
    assert read_attrs(tmp_path / "o.zarr")["offset_corrected"] is True
    assert record["per_item"][0]["shift"] == (-1000 if shifted else 0)


def test_mixed_baselines_on_one_date_follow_each_pixels_item(tmp_path, items):
    base, epsg, x0, y1 = items["new"]
    dn = known_dn()
    west = dn.copy()
    west[:, N // 2 :] = 0
    t = "2022-01-26T17:46:29.024Z"
    a = local_item(
        base, tmp_path / "cog", {b: west for b in BANDS}, scl(), x0, y1, item_id="A_0301", datetime=t, baseline="03.01"
    )
    b_ = local_item(
        base,
        tmp_path / "cog",
        {b: dn + 1000 * (dn > 0) for b in BANDS},
        scl(),
        x0,
        y1,
        item_id="B_0400",
        datetime=t,
        baseline="04.00",
    )
    tl = tile_of(tmp_path, [a, b_], epsg, x0, y1, "mixed")
    src = read_store(tl)["source"]
    assert (src[0] == 255).all()  # row 0 is no data in both items
    assert (src[1:, : N // 2] == 0).all() and (src[1:, N // 2 :] == 1).all()
    offset_fix([tl], tmp_path / "o.zarr")
    out = one_date(tmp_path / "o.zarr")["B04"]
    expected = dn.astype(np.int32)
    expected[dn == 0] = FILL_INT16
    # both halves now hold the same reflectance although their items had different baselines
    np.testing.assert_array_equal(out, expected)


def test_fix_is_never_applied_twice(tmp_path, items):
    base, epsg, x0, y1 = items["new"]
    it = local_item(base, tmp_path / "cog", {b: known_dn() for b in BANDS}, scl(), x0, y1)
    t = tile_of(tmp_path, [it], epsg, x0, y1, "t")
    offset_fix([t], tmp_path / "o.zarr")
    assert read_attrs(tmp_path / "o.zarr")["offset_corrected"] is True
    with pytest.raises(UserError, match="never applied twice"):
        offset_fix([tmp_path / "o.zarr"], tmp_path / "oo.zarr")
    assert not (tmp_path / "oo.zarr").exists()


def test_apply_false_and_provider_corrected_items_are_not_shifted():
    dn = np.array([[0, 1000, 2500]], np.uint16)
    src = np.zeros_like(dn, np.uint8)
    out, n_clipped = apply_offset(dn, date_shift(src, [0]))
    np.testing.assert_array_equal(out, [[FILL_INT16, 1000, 2500]])
    assert out.dtype == np.int16 and n_clipped == 0
    from s2ts.offset_fix import item_shift

    assert item_shift({"processing_baseline": "05.00"}, False, -1000, "04.00") == 0
    assert item_shift({"processing_baseline": "05.00", "boa_offset_applied": True}, True, -1000, "04.00") == 0
    assert item_shift({"processing_baseline": "05.00"}, True, -1000, "04.00") == -1000


def test_saturated_values_clip_not_wrap():
    dn = np.array([[65535, 40000, 1]], np.uint16)
    out, n_clipped = apply_offset(dn, date_shift(np.zeros_like(dn, np.uint8), [-1000]))
    np.testing.assert_array_equal(out, [[32767, 32767, -999]])
    assert n_clipped == 2


def test_a_batch_of_dates_each_with_its_own_baseline(tmp_path, items):
    """Several dates in one batch store: each date shifted by its own items' baselines,
    in date order, with its record."""
    base, epsg, x0, y1 = items["new"]
    dn = known_dn()
    dates = {"2021-06-01": "03.01", "2022-03-01": "04.00", "2024-06-01": "05.11"}
    stores = []
    for d, pb in dates.items():
        it = local_item(
            base,
            tmp_path / "cog",
            {b: dn for b in BANDS},
            scl(),
            x0,
            y1,
            item_id=f"I_{d}",
            datetime=f"{d}T17:46:29Z",
            baseline=pb,
        )
        stores.append(tile_store(tmp_path, [it], utm_grid(epsg, x0, y1, N, N, 10), date=d, out=f"tiles-{d}"))
    records = offset_fix(stores[::-1], tmp_path / "o.zarr")  # any order in, date order out
    out = read_store(tmp_path / "o.zarr")
    assert out["B03"].shape == (3, N, N)
    for k, pb in enumerate(dates.values()):
        expected = dn.astype(np.int32) - (0 if pb == "03.01" else 1000)
        expected[dn == 0] = FILL_INT16
        np.testing.assert_array_equal(out["B03"][k], expected)
        assert records[k]["per_item"][0]["processing_baseline"] == pb
    assert [str(d) for d in out["solar_day"]] == list(dates)


def test_a_large_grid_is_corrected_a_few_dates_at_a_time(tmp_path, items, monkeypatch):
    """With a memory budget for one date at a time (as for a 40 km AOI at 10 m), the
    batch is read, corrected and appended date by date: same values, one date per chunk."""
    import s2ts.zarr_io as zio
    from s2ts.zarr_io import open_dataset

    base, epsg, x0, y1 = items["new"]
    stores = []
    for k, d in enumerate(["2022-03-01", "2022-03-06", "2022-03-11"]):
        dn = known_dn() + 10 * k * (known_dn() > 0)
        it = local_item(
            base, tmp_path / "cog", {b: dn for b in BANDS}, scl(), x0, y1, item_id=f"I{k}", datetime=f"{d}T17:46:29Z"
        )
        stores.append(tile_store(tmp_path, [it], utm_grid(epsg, x0, y1, N, N, 10), date=d, out=f"t{k}"))
    offset_fix(stores, tmp_path / "whole.zarr")
    monkeypatch.setattr(zio, "GROUP_BYTES", N * N * 30)  # about one date of the budgeted bytes
    offset_fix(stores, tmp_path / "dated.zarr")
    whole, dated = open_dataset(tmp_path / "whole.zarr"), open_dataset(tmp_path / "dated.zarr")
    assert whole["B04"].encoding["chunks"][0] == 3 and dated["B04"].encoding["chunks"][0] == 1
    for v in BANDS + ["SCL", "source"]:
        np.testing.assert_array_equal(whole[v].values, dated[v].values)
    np.testing.assert_array_equal(whole["time"].values, dated["time"].values)
    assert list(dated["offset_correction"].values) == list(whole["offset_correction"].values)


def test_each_pixel_takes_the_shift_of_its_own_item():
    """Pixel (y, x) of a date takes the shift of item source[y, x] (255: no item, 0),
    whether the date's items differ, agree, or leave pixels without an item."""
    source = np.array([[0, 1], [NO_SOURCE, 1]], np.uint8)
    np.testing.assert_array_equal(date_shift(source, [0, -1000]), [[0, -1000], [0, -1000]])
    np.testing.assert_array_equal(date_shift(source, [-1000, -1000]), [[-1000, -1000], [0, -1000]])
    assert date_shift(source, [0, 0]) == 0
    assert date_shift(np.array([[0, 1], [1, 1]], np.uint8), [-1000, -1000]) == -1000
    assert date_shift(np.full((2, 2), NO_SOURCE, np.uint8), []) == 0


def test_the_shift_of_each_pixel_against_a_pixel_by_pixel_truth():
    """A date of 2 items with different baselines, then with the same, each with pixels
    that no item covers (DN 0, and one stray DN without an item): every corrected value
    equals the one worked out pixel by pixel."""
    rng = np.random.default_rng(7)
    source = rng.choice(np.array([0, 1, NO_SOURCE], np.uint8), size=(40, 50), p=[0.45, 0.45, 0.1])
    dn = rng.integers(1, 40000, size=source.shape).astype(np.uint16)
    dn[source == NO_SOURCE] = 0
    dn[3, 4], source[3, 4] = 1234, NO_SOURCE  # a stray DN where no item is: never shifted
    dn[5, 6], source[5, 6] = 0, 1  # no data inside an item
    for shifts in ([0, -1000], [-1000, -1000], [-1000, 0], [0, 0]):
        truth = np.empty(dn.shape, np.int64)
        n_truth = 0
        for y in range(dn.shape[0]):
            for x in range(dn.shape[1]):
                v = int(dn[y, x])
                shift = 0 if source[y, x] == NO_SOURCE else shifts[source[y, x]]
                if v == 0:
                    truth[y, x] = FILL_INT16
                    continue
                n_truth += v + shift > 32767
                truth[y, x] = min(max(v + shift, -32767), 32767)
        out, n_clipped = apply_offset(dn, date_shift(source, shifts))
        np.testing.assert_array_equal(out, truth)
        assert n_clipped == n_truth > 0
