# Sentinel-2 L2A time series over polygons.
# Stages (one rule file each in workflow/rules, one script each in scripts/, one
# module each in s2ts/, one test file each in tests/, all sharing the stage's name):
#   demo_catalog -> aoi_grid -> stac_manifest (checkpoint) -> per-date stages -> per-AOI outputs
from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/demo.smk"
include: "workflow/rules/aoi.smk"
include: "workflow/rules/stac.smk"


rule all:
    default_target: True
    input:
        final_outputs,
