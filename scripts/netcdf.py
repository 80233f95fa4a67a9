"""Snakemake script of rule netcdf: see s2ts/netcdf.py."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821

from s2ts.netcdf import netcdf_from_snakemake  # noqa: E402
from s2ts.runner import run  # noqa: E402

run(snakemake, netcdf_from_snakemake)  # noqa: F821
