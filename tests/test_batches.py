"""Date batches: calendar periods or runs of N dates; new dates only touch the newest batch."""

import json

import pytest

from s2ts.batches import batch_stores, group_dates, light_batches

DATES = ["2021-12-30", "2022-01-04", "2022-01-09", "2022-02-03", "2023-01-02"]


def test_modes():
    assert group_dates(DATES, "date") == {d: [d] for d in DATES}
    assert group_dates(DATES, "month") == {
        "2021-12": ["2021-12-30"],
        "2022-01": ["2022-01-04", "2022-01-09"],
        "2022-02": ["2022-02-03"],
        "2023-01": ["2023-01-02"],
    }
    assert list(group_dates(DATES, "year")) == ["2021", "2022", "2023"]
    assert group_dates(DATES, 2) == {"n00000": DATES[:2], "n00001": DATES[2:4], "n00002": DATES[4:]}


@pytest.mark.parametrize("mode", ["date", "month", "year", 2, 3])
def test_new_dates_only_touch_the_newest_batch(mode):
    before = group_dates(DATES, mode)
    after = group_dates(DATES + ["2023-01-07", "2023-01-12"], mode)
    changed = {b for b in after if before.get(b) != after[b]}
    last_old = list(before)[-1]
    assert all(b >= last_old for b in changed)  # only the newest existing batch or new ones
    assert all(before[b] == after[b] for b in before if b != last_old)


SERIES = ["2021-12-30", "2022-01-04", "2022-01-09", "2022-01-14", "2022-02-03", "2022-02-08", "2023-01-02"]


@pytest.mark.parametrize("tile_mode", ["date", "month", "year", 1, 2, 3])
@pytest.mark.parametrize("light_mode", ["month", "year", "tile"])
def test_light_batches_are_unions_of_whole_tile_batches(tile_mode, light_mode):
    tiles = group_dates(SERIES, tile_mode)
    light = light_batches(tiles, tile_mode, light_mode)
    flat = [b for bs in light.values() for b in bs]
    assert flat == list(tiles)  # every tile batch exactly once, in date order
    for lb, bs in light.items():
        dates = [d for b in bs for d in tiles[b]]
        if light_mode == "tile":
            assert bs == [lb]
        elif light_mode == "month" and tile_mode in ("date", 1, 2, 3):
            assert lb == dates[0][:7]  # named by the month of its first date
        elif light_mode == "year" and tile_mode not in ("year",):
            assert lb == dates[0][:4]
        else:  # tile batches already as coarse as the light period
            assert bs == [lb]


def test_light_batches_by_month_of_date_batches():
    tiles = group_dates(SERIES, "date")
    assert light_batches(tiles, "date", "month") == {
        "2021-12": ["2021-12-30"],
        "2022-01": ["2022-01-04", "2022-01-09", "2022-01-14"],
        "2022-02": ["2022-02-03", "2022-02-08"],
        "2023-01": ["2023-01-02"],
    }
    # runs of 2 dates gathered by the month of their first date (a run may cross a month)
    assert light_batches(group_dates(SERIES, 2), 2, "month") == {
        "2021-12": ["n00000"],
        "2022-01": ["n00001"],
        "2022-02": ["n00002"],
        "2023-01": ["n00003"],
    }
    with pytest.raises(ValueError, match="light_batch must be month, year or tile"):
        light_batches(tiles, "date", "week")


@pytest.mark.parametrize("tile_mode", ["date", "month", 2])
@pytest.mark.parametrize("light_mode", ["month", "year", "tile"])
def test_new_dates_only_touch_the_newest_light_batch(tile_mode, light_mode):
    def light_dates(dates):
        tiles = group_dates(dates, tile_mode)
        return {lb: [d for b in bs for d in tiles[b]] for lb, bs in light_batches(tiles, tile_mode, light_mode).items()}

    before = light_dates(SERIES)
    after = light_dates(SERIES + ["2023-01-07", "2023-03-01"])
    last_old = list(before)[-1]
    assert all(before[b] == after[b] for b in before if b != last_old)
    assert all(b >= last_old for b in after if before.get(b) != after[b])


def _store(path, value):
    import numpy as np

    path.mkdir(parents=True)
    (path / "v.npy").write_bytes(np.array([value]).tobytes())


def test_batch_stores_of_several_folders_merge_skipped(tmp_path):
    a, b = tmp_path / "tile" / "2022-01-04", tmp_path / "tile" / "2022-01-09"
    _store(a / "2022-01-04.zarr", 1)
    _store(b / "2022-01-09.zarr", 2)
    _store(b / "2022-01-06.zarr", 3)
    (a / "skipped.json").write_text(json.dumps([{"date": "2022-01-05", "reason": "x"}]))
    (b / "skipped.json").write_text(json.dumps([{"date": "2022-01-10", "reason": "y"}]))
    stores, skipped = batch_stores([str(b), str(a)])
    assert [s.name for s in stores] == ["2022-01-04.zarr", "2022-01-06.zarr", "2022-01-09.zarr"]  # date order
    assert [e["date"] for e in skipped] == ["2022-01-10", "2022-01-05"]
    # one folder (a light batch equal to its tile batch); no skipped record when none
    (b / "skipped.json").unlink()
    assert batch_stores(b) == ([b / "2022-01-06.zarr", b / "2022-01-09.zarr"], [])


def test_batch_stores_refuse_a_date_in_two_folders(tmp_path):
    _store(tmp_path / "x" / "2022-01-04.zarr", 1)
    _store(tmp_path / "y" / "2022-01-04.zarr", 2)
    with pytest.raises(ValueError, match="same date's store is in two batch folders"):
        batch_stores([tmp_path / "x", tmp_path / "y"])


def test_batch_stores_of_an_index_are_the_dates_it_lists(tmp_path):
    """A tile batch given by its index (the tile rule's output): the stores of the
    dates it lists, not whatever else is in the folder (a store from another run that
    the job has not yet removed); a listed store that is gone is refused with the fix."""
    from s2ts.errors import UserError

    folder = tmp_path / "tile" / "2022"
    for d in ["2022-01-04", "2022-01-09", "2021-12-30"]:
        (folder / f"{d}.zarr").mkdir(parents=True)
        (folder / f"{d}.zarr" / "zarr.json").write_text("{}")
    (folder / "skipped.json").write_text(json.dumps([{"date": "2022-01-05", "reason": "x"}]))
    index = tmp_path / "tile" / "2022.json"
    index.write_text(json.dumps({"batch": "2022", "dates": ["2022-01-09", "2022-01-04"]}))
    stores, skipped = batch_stores(str(index))
    assert stores == [folder / "2022-01-04.zarr", folder / "2022-01-09.zarr"]
    assert skipped == [{"date": "2022-01-05", "reason": "x"}]
    (folder / "2022-01-09.zarr" / "zarr.json").unlink()
    with pytest.raises(UserError, match=r"2022-01-09.zarr.*Delete .*2022.json and run the workflow again"):
        batch_stores(index)


def test_auto_batches_follow_the_grid_size_only():
    """tiles.batch: auto: a year of dates per tile job on a small grid, a month on a
    large one, a date on a huge one, so that a batch holds at most AUTO_PIXEL_DATES
    (150 dates a year, 13 a month at most); never decided from the dates."""
    from s2ts.batches import AUTO_PIXEL_DATES, auto_mode

    assert auto_mode(259 * 207) == "year"  # the tutorial's grid
    assert auto_mode(4173 * 4173) == "month"  # 40 km at 10 m
    assert auto_mode(10000 * 10000) == "date"  # 100 km at 10 m
    for pixels in (1, 10**5, 10**6, 2 * 10**6, 10**7, 3 * 10**7, 10**9):
        mode = auto_mode(pixels)
        per_batch = {"year": 150, "month": 13, "date": 1}[mode]
        assert mode == "date" or pixels * per_batch <= AUTO_PIXEL_DATES
        coarser = {"date": "month", "month": "year"}.get(mode)
        assert coarser is None or pixels * {"year": 150, "month": 13}[coarser] > AUTO_PIXEL_DATES
