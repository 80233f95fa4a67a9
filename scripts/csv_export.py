"""Snakemake script of rule csv_export: see s2ts/csv_export.py."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821

from s2ts.csv_export import csv_export_from_snakemake  # noqa: E402
from s2ts.runner import run  # noqa: E402

run(snakemake, csv_export_from_snakemake)  # noqa: F821
