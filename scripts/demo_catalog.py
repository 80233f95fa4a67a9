"""Snakemake script of rule demo_catalog: see s2ts/demo_catalog/."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821

from s2ts.demo_catalog import demo_catalog_from_snakemake  # noqa: E402
from s2ts.runner import run  # noqa: E402  (sets up logging to snakemake.log[0])

run(snakemake, demo_catalog_from_snakemake)  # noqa: F821
