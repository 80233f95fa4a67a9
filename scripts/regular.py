"""Snakemake script of rule regular: see s2ts/regular.py."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821

from s2ts.regular import regular_from_snakemake  # noqa: E402
from s2ts.runner import run  # noqa: E402

run(snakemake, regular_from_snakemake)  # noqa: F821
