"""Date batches: the unit of work of the per-date stages (tile, offset_fix, mask).

``tiles.batch`` is the tile stage's unit: ``auto`` (the default: a year, or a month
on a large grid: :func:`auto_mode`), ``year``, ``month``, ``date`` or a number N of
dates. A tile job's imports and set-up cost about a second, and a rerun reads only
its new or changed dates (the stores stay in the batch folder across runs), so a
year of a small AOI is one job (on the cores the run's other tile jobs leave it,
split among processes: :func:`s2ts.tile.worker_count`); a large grid gets months,
for parallel jobs of a bounded size. ``tiles.light_batch`` is
the unit of the light stages that follow (offset_fix, mask): ``month`` (the
default) or ``year`` gather the tile batches by the calendar period of their first
date, never finer than the tile batches; ``tile`` keeps one job per tile batch. A
light batch is always a union of whole tile batches.

A tile job writes one Zarr store per date, inside its batch folder
``tile/<batch>/<date>.zarr``, then the batch's index ``tile/<batch>.json`` (the rule's
output, listing the dates); a light job writes one ``(time, y, x)`` store per
light batch, ``<stage>/<batch>.zarr``. Batches are calendar periods (or runs of N
dates counted from the first date), so new acquisitions at the end of the
series only ever touch the newest batch, tile or light.
"""

from __future__ import annotations

import re

BATCH_RE = r"\d{4}(-\d{2}(-\d{2})?)?|n\d{5}"


def batch_stores(batches) -> tuple[list, list[dict]]:
    """The per-date stores of one or more tile batches (the tile batches of a light
    batch), in date order, and the batches' records of skipped dates
    (tiles.on_read_error: skip). A batch is its index, ``tile/<batch>.json`` (the tile
    rule's output: the stores it lists, in the folder beside it), or a folder of
    stores (every store in it). A date found in two batches is an error, and so is a
    store an index lists that is not there."""
    import json
    from pathlib import Path

    from s2ts.errors import UserError

    if isinstance(batches, (str, Path)):
        batches = [batches]
    stores, skipped = [], []
    for b in map(Path, batches):
        if b.suffix == ".json":
            folder = b.with_suffix("")
            listed = [folder / f"{d}.zarr" for d in json.loads(b.read_text())["dates"]]
            missing = [s.name for s in listed if not (s / "zarr.json").exists()]
            if missing:
                raise UserError(
                    f"tile stores listed in {b} are missing: {', '.join(missing)}. Delete {b} and run the "
                    "workflow again: the tile job then reads those dates again (the other stores are kept)."
                )
            stores.extend(listed)
        else:
            folder = b
            stores.extend(folder.glob("*.zarr"))
        if (folder / "skipped.json").exists():
            skipped.extend(json.loads((folder / "skipped.json").read_text()))
    stores.sort(key=lambda s: s.name)
    names = [s.name for s in stores]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"the same date's store is in two batch folders: {twice}")
    return stores, skipped


#: pixel-dates one tile batch holds at most with ``tiles.batch: auto``
AUTO_PIXEL_DATES = 2**28
#: dates of one AOI in a year and in a month at most: three Sentinel-2 satellites, five
#: days apart, on overlapping orbits (a solar day per pass)
DATES_PER = {"year": 150, "month": 13}


def auto_mode(pixels: int) -> str:
    """``tiles.batch: auto`` for a grid of ``pixels``: a year of dates, or a month on a
    grid too large for a year to fit :data:`AUTO_PIXEL_DATES`, or a date. Decided from
    the grid alone, never the dates, so that new acquisitions never change the layout
    of earlier batches (their stores are kept)."""
    for mode in ("year", "month"):
        if pixels * DATES_PER[mode] <= AUTO_PIXEL_DATES:
            return mode
    return "date"


def batch_id(date: str, index: int, mode) -> str:
    """Batch of ``date`` (``YYYY-MM-DD``), the ``index``-th date of the series."""
    if mode == "date":
        return date
    if mode == "month":
        return date[:7]
    if mode == "year":
        return date[:4]
    n = int(mode)
    if n < 1:
        raise ValueError(f"tiles.batch must be date, month, year or a positive number, not {mode!r}")
    return f"n{index // n:05d}"


def group_dates(dates: list[str], mode) -> dict[str, list[str]]:
    """``{batch: [dates]}`` in date order."""
    out: dict[str, list[str]] = {}
    for i, d in enumerate(sorted(dates)):
        out.setdefault(batch_id(d, i, mode), []).append(d)
    assert all(re.fullmatch(BATCH_RE, b) for b in out)
    return out


CALENDAR = {"date": 0, "month": 1, "year": 2}


def light_batches(tile_batches: dict[str, list[str]], tile_mode, mode) -> dict[str, list[str]]:
    """``{light batch: [tile batches]}``: the tile batches (``group_dates`` output) that
    one offset_fix or mask job takes. ``mode`` ``tile``: one per tile batch; ``month``
    or ``year``: gathered by the calendar period of their first date, or one per tile
    batch when the tile batches are already that coarse (``tile_mode`` month or year)."""
    if mode not in ("tile", "month", "year"):
        raise ValueError(f"tiles.light_batch must be month, year or tile, not {mode!r}")
    if mode == "tile" or CALENDAR.get(str(tile_mode), -1) >= CALENDAR[mode]:
        return {b: [b] for b in tile_batches}
    out: dict[str, list[str]] = {}
    for b, dates in tile_batches.items():
        out.setdefault(batch_id(dates[0], 0, mode), []).append(b)
    return out
