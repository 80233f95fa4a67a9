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
32767 and counted. SCL is copied unchanged. The output records
``offset_corrected: true``; a corrected store is refused as input, so the fix can
never be applied twice.
"""

from __future__ import annotations

import logging

import numpy as np

from s2ts.errors import UserError
from s2ts.item_meta import baseline_version
from s2ts.zarr_io import FILL_INT16, NO_SOURCE, read_arrays, read_attrs, write_store

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


def apply_offset(dn: np.ndarray, source: np.ndarray, shifts: list[int]) -> tuple[np.ndarray, int]:
    """uint16 DN -> int16 corrected DN (fill -32768 where DN == 0); returns (out, n_clipped)."""
    lut = np.zeros(256, np.int32)
    lut[: len(shifts)] = shifts
    lut[NO_SOURCE] = 0
    out = dn.astype(np.int32) + lut[source]
    n_clipped = int((out > INT16_MAX).sum())
    out = np.clip(out, FILL_INT16 + 1, INT16_MAX)
    out[dn == 0] = FILL_INT16
    return out.astype(np.int16), n_clipped


def offset_fix(tile_path, out_path, apply: bool = True, value: int = -1000, since_baseline: str = "04.00") -> dict:
    attrs = read_attrs(tile_path)
    if attrs.get("stage") != "tile" or attrs.get("offset_corrected"):
        raise UserError(
            f"{tile_path} is not an uncorrected tile (stage={attrs.get('stage')}, "
            f"offset_corrected={attrs.get('offset_corrected')}): the offset fix is never applied twice."
        )
    bands, mask_band = attrs["bands"], attrs["mask_band"]
    extra = [mask_band, f"{mask_band}_any", "source"]
    data = read_arrays(tile_path, bands + extra)
    shifts = [item_shift(it, apply, value, since_baseline) for it in attrs["items"]]
    arrays = {}
    clipped = 0
    for b in bands:
        arrays[b], n = apply_offset(data[b], data["source"], shifts)
        clipped += n
    for name in extra:
        arrays[name] = data[name]
    out = dict(attrs)
    out.update(
        stage="offset_fix",
        offset_corrected=bool(apply),
        offset={
            "apply": bool(apply),
            "value": int(value),
            "since_baseline": since_baseline,
            "per_item": [
                {"id": it["id"], "processing_baseline": it.get("processing_baseline"), "shift": s}
                for it, s in zip(attrs["items"], shifts)
            ],
            "clipped_pixels": clipped,
        },
    )
    write_store(out_path, arrays, out, attrs["grid"])
    log.info(
        "date %s: shifts %s (%d pixels clipped at 32767)",
        attrs["date"],
        {it["id"]: s for it, s in zip(attrs["items"], shifts)},
        clipped,
    )
    return out


def offset_fix_from_snakemake(smk) -> None:
    """One batch folder of per-date stores."""
    from s2ts.batches import each_store

    p = smk.params
    each_store(smk.input.tiles, smk.output.tiles, lambda s, o: offset_fix(s, o, p.apply, p.value, p.since_baseline))
