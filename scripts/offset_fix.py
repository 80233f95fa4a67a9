"""Snakemake script of rule offset_fix: see s2ts/offset_fix.py."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821

from s2ts.offset_fix import offset_fix_from_snakemake  # noqa: E402
from s2ts.runner import run  # noqa: E402

run(snakemake, offset_fix_from_snakemake)  # noqa: F821
