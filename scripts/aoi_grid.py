"""Snakemake script of rule aoi_grid: see s2ts/aoi_grid.py."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821

from s2ts.aoi_grid import aoi_grid_from_snakemake  # noqa: E402
from s2ts.runner import run  # noqa: E402

run(snakemake, aoi_grid_from_snakemake)  # noqa: F821
