"""``python -m s2ts.demo_catalog OUT_DIR [--start ...] [--end ...] [--seed N] [--workers N] [--extent-km KM]``."""

from __future__ import annotations

import argparse
import logging

from s2ts import demo_catalog
from s2ts.demo_catalog import generate_demo_catalog
from s2ts.errors import UserError


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m s2ts.demo_catalog", description=demo_catalog.__doc__.split("\n\n")[0])
    p.add_argument("out_dir", help="output directory (replaced as a whole)")
    p.add_argument("--start", default="2021-01-01", help="first sensing date, inclusive (YYYY-MM-DD)")
    p.add_argument("--end", default="2023-01-01", help="last sensing date, exclusive (YYYY-MM-DD)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--extent-km", type=float, help="a square scene of this size (default: the Arcachon inlet box)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        path = generate_demo_catalog(args.out_dir, args.start, args.end, args.seed, args.workers, args.extent_km)
    except UserError as exc:
        print(f"ERROR: {exc}", flush=True)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
