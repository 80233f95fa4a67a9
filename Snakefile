# Sentinel-2 L2A time series over polygons.
# Stages (one rule file each in workflow/rules, one script each in scripts/, one
# module each in s2ts/, one test file each in tests/, all sharing the stage's name):
#   demo_catalog -> aoi_grid -> stac_manifest (checkpoint) -> per-date stages -> per-AOI outputs
#   -> figures (and csv_export, and with `regular` the regular product) per AOI -> benchmark_summary;
#   `snakemake --report report.html`
from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/demo.smk"
include: "workflow/rules/aoi.smk"
include: "workflow/rules/stac.smk"
include: "workflow/rules/tile.smk"
include: "workflow/rules/offset_fix.smk"
include: "workflow/rules/mask.smk"
include: "workflow/rules/gapfill.smk"
include: "workflow/rules/netcdf.smk"
include: "workflow/rules/regular.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/csv_export.smk"
include: "workflow/rules/benchmark_summary.smk"
include: "workflow/rules/console.smk"


# Light or network-bound rules run where Snakemake runs (a cluster's login node,
# which has internet for the STAC search; compute nodes then only read COGs).
localrules:
    all,
    aoi_grid,
    stac_manifest,
    demo_catalog,
    benchmark_summary,


onstart:
    console_onstart()


rule all:
    default_target: True
    input:
        checked_final_outputs,
        # the grids do not wait for the search: aoi_grid runs beside stac_manifest
        expand("<results>/{aoi}/aoi/grid.json", aoi=AOIS),
