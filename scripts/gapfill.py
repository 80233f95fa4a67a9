"""Snakemake script of rule gapfill: see s2ts/gapfill.py."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821

from s2ts.gapfill import gapfill_from_snakemake  # noqa: E402
from s2ts.runner import run  # noqa: E402

run(snakemake, gapfill_from_snakemake)  # noqa: F821
