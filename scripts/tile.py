"""Snakemake script of rule tile: see s2ts/tile.py."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821

from s2ts.runner import run  # noqa: E402
from s2ts.tile import tile_from_snakemake  # noqa: E402

run(snakemake, tile_from_snakemake)  # noqa: F821
