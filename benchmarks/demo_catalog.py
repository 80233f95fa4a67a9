"""Benchmark of the offline demo catalog generator (s2ts.demo_catalog).

Generates the default demo period (2021-01-01..2023-01-01) into a temporary
directory and prints wall time, peak RSS (this process and its worker children),
size on disk, item count and how many items pass ``eo:cloud_cover < 20``, plus
the special cases (partial-swath R137 items, reprocessing duplicates, dates
with two MGRS tiles)::

    .venv/bin/python benchmarks/demo_catalog.py [--workers 2] [--start ...] [--end ...] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from s2ts.demo_catalog import generate_demo_catalog  # noqa: E402


def du(path: Path) -> tuple[int, int]:
    """(apparent bytes, number of files) under path."""
    total = n = 0
    for root, _, files in os.walk(path):
        for f in files:
            total += os.path.getsize(os.path.join(root, f))
            n += 1
    return total, n


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--start", default="2021-01-01")
    p.add_argument("--end", default="2023-01-01")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--keep", help="write the catalog here and keep it (default: a temporary directory)")
    args = p.parse_args()

    tmp = None
    if args.keep:
        out = Path(args.keep)
    else:
        tmp = tempfile.mkdtemp(prefix="s2ts-demo-bench-")
        out = Path(tmp) / "catalog"
    try:
        t0 = time.perf_counter()
        catalog = generate_demo_catalog(out, args.start, args.end, seed=args.seed, workers=args.workers)
        wall = time.perf_counter() - t0
        rss_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        rss_children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
        size, nfiles = du(catalog.parent)
        truth_size, _ = du(catalog.parent / "truth")

        items = [json.loads(f.read_text()) for f in sorted((catalog.parent / "sentinel-2-l2a").glob("*/*.json"))]
        props = [i["properties"] for i in items]
        cc = [p["eo:cloud_cover"] for p in props]
        per_datatake = Counter((p["datetime"], p["s2:mgrs_tile"]) for p in props)
        tiles_per_time = Counter(p["datetime"] for p in props if p["s2:mgrs_tile"] == "30TXR")
        baselines = Counter(p["s2:processing_baseline"] for p in props)

        print(f"period               {args.start} .. {args.end} (end exclusive), seed {args.seed}")
        print(f"workers              {args.workers} (os.cpu_count() = {os.cpu_count()})")
        print(f"wall time            {wall:.1f} s")
        print(f"peak RSS             {rss_self:.0f} MB (main process), {rss_children:.0f} MB (largest worker)")
        print(f"size on disk         {size / 1e6:.1f} MB in {nfiles} files (truth: {truth_size / 1e6:.1f} MB)")
        print(f"items                {len(items)}")
        print(
            f"eo:cloud_cover < 20  {sum(c < 20 for c in cc)} ({100.0 * sum(c < 20 for c in cc) / max(1, len(cc)):.1f} %)"
        )
        print(f"R137 (partial swath) {sum(p['sat:relative_orbit'] == 137 for p in props)}")
        print(
            f"reprocessing dups    {sum(n - 1 for n in per_datatake.values())} (PB 05.00: {baselines.get('05.00', 0)})"
        )
        print(f"two-tile dates       {len(tiles_per_time)} (30TXR items)")
        print(f"baselines            {dict(sorted(baselines.items()))}")
        print(f"MB per item          {size / 1e6 / max(1, len(items)):.2f}")
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
