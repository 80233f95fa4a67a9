"""A/B of the tile stage's per-date store writes, in one process: a batch's dates
written by ``to_zarr`` each (``_layout`` off) against the template path of
``s2ts.zarr_io.write_dataset`` (the next date of one layout reuses the first's keys),
the order alternating. Reads a finished run's tile stores as the dates to write.

    .venv/bin/python benchmarks/tile_writes.py --tiles RESULTS/1/tile [--repeat 3]

Prints per-store milliseconds for each side and their ratio, and checks that both
sides wrote the same files."""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import s2ts.zarr_io as zio  # noqa: E402


def files_of(store: Path) -> dict:
    return {p.relative_to(store).as_posix(): p.read_bytes() for p in sorted(store.rglob("*")) if p.is_file()}


def write_all(datasets, out: Path, template: bool) -> float:
    zio._TEMPLATE.clear()
    layout = zio._layout
    if not template:
        zio._layout = lambda ds: None
    try:
        t = time.perf_counter()
        for i, ds in enumerate(datasets):
            zio.write_dataset(ds, out / f"{i}.zarr")
        return time.perf_counter() - t
    finally:
        zio._layout = layout


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiles", required=True, help="a run's <results>/<aoi>/tile folder")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    stores = sorted(Path(args.tiles).glob("*/*.zarr"))
    if not stores:
        sys.exit(f"no tile store under {args.tiles}: run the workflow first")
    # the stage writes Datasets it built (no encoding carried from a store)
    datasets = [zio.open_dataset(p).load().drop_encoding() for p in stores]
    times = {"to_zarr": [], "template": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeat):
            for side in ("to_zarr", "template") if r % 2 == 0 else ("template", "to_zarr"):
                out = Path(tmp) / f"{side}-{r}"
                out.mkdir()
                times[side].append(write_all(datasets, out, side == "template"))
        same = all(
            files_of(Path(tmp) / f"to_zarr-0/{i}.zarr") == files_of(Path(tmp) / f"template-0/{i}.zarr")
            for i in range(len(datasets))
        )
        shutil.rmtree(tmp, ignore_errors=True)
    n = len(datasets)
    for side, ts in times.items():
        print(f"{side}: {' '.join(f'{t / n * 1000:.1f}' for t in ts)} ms per store ({n} stores)")
    ratios = sorted(a / b for a, b in zip(times["template"], times["to_zarr"]))
    print(f"template / to_zarr: {' '.join(f'{x:.2f}' for x in ratios)} (median {ratios[len(ratios) // 2]:.2f})")
    print(f"files identical: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
