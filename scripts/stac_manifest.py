"""Snakemake script of rule stac_manifest: see s2ts/stac_manifest.py."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821

from s2ts.runner import run  # noqa: E402
from s2ts.stac_manifest import stac_manifest_from_snakemake  # noqa: E402

run(snakemake, stac_manifest_from_snakemake)  # noqa: F821
