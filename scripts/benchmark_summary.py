"""Snakemake script of rule benchmark_summary: see s2ts/benchmark_summary.py."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821

from s2ts.benchmark_summary import benchmark_summary_from_snakemake  # noqa: E402
from s2ts.runner import run  # noqa: E402

run(snakemake, benchmark_summary_from_snakemake)  # noqa: F821
