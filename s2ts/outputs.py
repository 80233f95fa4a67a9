"""Print where a run's results are: ``python -m s2ts.outputs CONFIG [CONFIG ...]``.

Config files are layered on top of config.yaml like ``snakemake --configfile``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml


def merged_config(paths: list[str]) -> dict:
    def merge(a, b):
        for k, v in b.items():
            a[k] = merge(a.get(k, {}), v) if isinstance(v, dict) and isinstance(a.get(k), dict) else v
        return a

    cfg = yaml.safe_load(Path("config.yaml").read_text())
    for p in paths:
        merge(cfg, yaml.safe_load(Path(p).read_text()) or {})
    return cfg


def main(argv: list[str]) -> int:
    cfg = merged_config(argv)
    results = Path(cfg.get("results", "results"))
    print(f"\nResults in {results}/:")
    for aoi_dir in sorted(p for p in results.iterdir() if (p / "manifest.json").exists()) if results.exists() else []:
        info = json.loads((aoi_dir / "manifest.json").read_text())
        ncs = sorted(aoi_dir.glob("*.nc"))
        what = ", ".join(str(p) for p in ncs) if ncs else f"{aoi_dir}/manifest.csv"
        print(f"  AOI {info['aoi']}: {info['counts']['items']} items on {info['counts']['dates']} dates -> {what}")
        if "warning" in info:
            print(f"    warning: {info['warning']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
