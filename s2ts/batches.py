"""Date batches: the unit of work of the per-date stages (tile, offset_fix, mask).

``tiles.batch`` is ``date`` (one date per job, the default: best for a cluster
reading over the network, and every date's store is its own job), ``month``,
``year`` or a number N of dates. Each job still writes one Zarr store per date,
inside its batch folder ``<stage>/<batch>/<date>.zarr``. Batches are calendar
periods (or runs of N dates counted from the first date), so new acquisitions
at the end of the series only ever touch the newest batch.
"""

from __future__ import annotations

import re

BATCH_RE = r"\d{4}(-\d{2}(-\d{2})?)?|n\d{5}"


def each_store(in_dir, out_dir, fn) -> None:
    """Apply ``fn(in_store, out_store)`` to every per-date store of a batch folder,
    carrying the batch's record of skipped dates (tiles.on_read_error: skip)."""
    from pathlib import Path

    in_dir, out_dir = Path(in_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    skipped = in_dir / "skipped.json"
    if skipped.exists():
        (out_dir / "skipped.json").write_bytes(skipped.read_bytes())
    for store in sorted(in_dir.glob("*.zarr")):
        fn(store, out_dir / store.name)


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
