"""Snakemake script of rule figures: see s2ts/figures.py."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821

from s2ts.figures import figures_from_snakemake  # noqa: E402
from s2ts.runner import run  # noqa: E402

run(snakemake, figures_from_snakemake)  # noqa: F821
