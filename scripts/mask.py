"""Snakemake script of rule mask: see s2ts/mask.py."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821

from s2ts.mask import mask_from_snakemake  # noqa: E402
from s2ts.runner import run  # noqa: E402

run(snakemake, mask_from_snakemake)  # noqa: F821
