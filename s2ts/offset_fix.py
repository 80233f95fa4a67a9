"""Offset-fix stage: remove the processing-baseline 04.00 radiometric offset.

From PB 04.00 (operational 2022-01-25) L2A DNs carry ``BOA_ADD_OFFSET = -1000``:
``reflectance = (DN - 1000) / 10000``. The switch is the item's
``s2:processing_baseline`` compared as a version (never the date: Collection-1
reprocessings carry PB 05.xx for old dates, and the first days after the change
mix baselines). Items whose provider already removed it
(``earthsearch:boa_offset_applied: true``) are not shifted again.

Each pixel is corrected by the baseline of the item it came from (the tile's
``source`` array). Output is int16 with fill -32768: a DN of 1000 at PB >= 04.00
becomes a valid 0 and DN 0 (no data) becomes the fill, so the two never collide,
and nothing wraps around (the original package subtracted on uint16: 0 - 1000 ->
64536). Values beyond the int16 range (saturated DN > 32767) are clipped to
32767 and counted in the job's log. SCL, SCL_any and source are carried unchanged.

One job takes a light batch of per-date tile stores and writes one ``(time, y, x)``
store, group by group of dates (bounded memory: each group is read with xarray,
corrected and appended along ``time``).
Each date records ``offset_correction`` (JSON: the setting and each item's shift);
a store whose tile says it is already corrected is refused, so the fix can never be
applied twice.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from s2ts.errors import UserError
from s2ts.item_meta import baseline_version
from s2ts.zarr_io import FILL_INT16, NO_SOURCE

log = logging.getLogger("offset_fix")

INT16_MAX = np.iinfo(np.int16).max


def item_shift(item: dict, apply: bool, value: int, since_baseline: str) -> int:
    """DN to add to this item's reflectance bands."""
    if not apply or item.get("boa_offset_applied") is True:
        return 0
    pb = baseline_version(item.get("processing_baseline"))
    if pb is None:
        log.warning("item %s has no s2:processing_baseline: not shifted", item.get("id"))
        return 0
    return int(value) if pb >= baseline_version(since_baseline) else 0


def date_shift(source: np.ndarray, shifts: list[int]) -> int | np.ndarray:
    """The shift of each pixel of one date: that of its item (``source`` value k is
    item k, ``shifts[k]``; 255, no item: 0).

    An int when every pixel has the same, which is the usual case (the date's items
    share one baseline and cover the grid); else an int32 array like ``source``."""
    distinct = set(shifts)
    if not distinct:
        return 0
    if len(distinct) == 1:
        (s,) = distinct
        nowhere = source == NO_SOURCE
        if s == 0 or not nowhere.any():
            return int(s)
        return np.where(nowhere, np.int32(0), np.int32(s))
    lut = np.zeros(256, np.int32)
    lut[: len(shifts)] = shifts
    lut[NO_SOURCE] = 0
    return lut[source]


def apply_offset(dn: np.ndarray, shift: int | np.ndarray) -> tuple[np.ndarray, int]:
    """uint16 DN -> int16 corrected DN (fill -32768 where DN == 0), clipped to int16,
    and the number of pixels clipped (corrected DN above 32767).

    ``shift``: :func:`date_shift` (an int, or an array like ``dn``)."""
    no_data = dn == 0
    out = dn.astype(np.int32)
    out += shift
    n_clipped = int(np.count_nonzero((out > INT16_MAX) & ~no_data))
    np.clip(out, FILL_INT16 + 1, INT16_MAX, out=out)
    out[no_data] = FILL_INT16
    return out.astype(np.int16), n_clipped


#: bytes held per pixel and date: the tile's arrays and the corrected bands (int32 on the way)
BYTES_PER_PIXEL = 24


def tile_groups(tile_stores: list[Path]):
    """The batch's per-date tile stores in date order, with their attributes, split
    in consecutive groups of one time chunk of the output (:func:`time_chunk`: the
    dates that fit its memory budget; appending whole chunks never rewrites one)."""
    from s2ts.zarr_io import read_attrs, time_chunk

    stores = sorted((Path(p) for p in tile_stores), key=lambda p: p.name)
    if not stores:
        raise UserError("offset_fix: no tile store in this batch: rerun the tile rule.")
    attrs = [read_attrs(p) for p in stores]
    for p, a in zip(stores, attrs):
        if a.get("stage") != "tile" or a.get("offset_corrected"):
            raise UserError(
                f"{p} is not an uncorrected tile (stage={a.get('stage')}, "
                f"offset_corrected={a.get('offset_corrected')}): the offset fix is never applied twice."
            )
    grid = attrs[0]["grid"]
    size = time_chunk(grid["height"], grid["width"], BYTES_PER_PIXEL)
    return [(stores[i : i + size], attrs[i : i + size]) for i in range(0, len(stores), size)]


def correct_group(stores, attrs, apply: bool, value: int, since_baseline: str, skipped=None):
    """One group of per-date tile stores, corrected: a ``(time, y, x)`` Dataset (in
    memory) with the per-date records, and the clipped-pixel counts per date."""
    from s2ts.zarr_io import record_json, stack_dates

    # one grid for every store (the tile stage's recipe): read in one call of zarr's loop
    ds = stack_dates(stores)
    times = np.array([np.datetime64(a["datetime"].rstrip("Z"), "s") for a in attrs]).astype("datetime64[ns]")
    ds = ds.assign_coords(time=times)
    bands, mask_band = attrs[0]["bands"], attrs[0]["mask_band"]
    shifts = [[item_shift(it, apply, value, since_baseline) for it in a["items"]] for a in attrs]
    source = ds["source"].values
    # each date's shift found once for its bands: an int unless its items differ
    shift = [date_shift(source[t], s) for t, s in enumerate(shifts)]
    out = ds[[mask_band, f"{mask_band}_any", "source"]].copy()
    n_clipped = np.zeros(len(attrs), np.int64)
    for b in bands:
        dn = ds[b].values
        corrected = np.empty(dn.shape, np.int16)
        for t in range(len(attrs)):
            corrected[t], n = apply_offset(dn[t], shift[t])
            n_clipped[t] += n
        out[b] = (("time", "y", "x"), corrected)
    out = out[bands + [mask_band, f"{mask_band}_any", "source"]]
    records = [
        {
            "apply": bool(apply),
            "value": int(value),
            "since_baseline": since_baseline,
            "per_item": [
                {"id": it["id"], "processing_baseline": it.get("processing_baseline"), "shift": s}
                for it, s in zip(a["items"], sh)
            ],
        }
        for a, sh in zip(attrs, shifts)
    ]
    out["solar_day"] = ("time", np.array([a["date"] for a in attrs], dtype=object))
    out["item_records"] = ("time", np.array([record_json(a["items"]) for a in attrs], dtype=object))
    out["offset_correction"] = ("time", np.array([record_json(r) for r in records], dtype=object))
    out.attrs = {
        "stage": "offset_fix",
        "aoi": attrs[0].get("aoi"),
        "bands": bands,
        "mask_band": mask_band,
        "grid": attrs[0]["grid"],
        "offset_corrected": bool(apply),
        "skipped_dates": list(skipped or []),
    }
    return out, records, n_clipped


def offset_fix(
    tile_stores,
    out_path,
    apply: bool = True,
    value: int = -1000,
    since_baseline: str = "04.00",
    skipped: list[dict] | None = None,
) -> list[dict]:
    """Correct a batch of per-date tile stores into one ``(time, y, x)`` store, group
    by group of dates; return the per-date correction records."""
    from s2ts.zarr_io import write_batches

    all_records = []

    def groups():
        for stores, attrs in tile_groups(tile_stores):
            out, records, n_clipped = correct_group(stores, attrs, apply, value, since_baseline, skipped)
            for a, r, n in zip(attrs, records, n_clipped):
                shifts = {p["id"]: p["shift"] for p in r["per_item"]}
                log.info("date %s: shifts %s (%d pixels clipped at 32767)", a["date"], shifts, n)
            all_records.extend(records)
            yield out

    write_batches(groups(), out_path)
    return all_records


def offset_fix_from_snakemake(smk) -> None:
    """A light batch: the per-date stores of one or more tile batches (their indexes)."""
    from s2ts.batches import batch_stores

    p = smk.params
    stores, skipped = batch_stores(smk.input.tiles)
    offset_fix(stores, smk.output.store.removesuffix("/zarr.json"), p.apply, p.value, p.since_baseline, skipped)
