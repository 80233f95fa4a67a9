"""Date batches: calendar periods or runs of N dates; new dates only touch the newest batch."""

import pytest

from s2ts.batches import group_dates

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
