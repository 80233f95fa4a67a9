rule regular:
    input:
        masked=masked_batches,
        manifest_info="<results>/{aoi}/manifest.json",
    output:
        # <aoi>_<start>_<end>_<N>d.nc (config regular.step_days; the rule is only
        # asked for when `regular` is set)
        nc=f"<results>/{{aoi}}/{{aoi}}_<period>_{(REGULAR or {}).get('step_days', 0)}d.nc",
    log:
        "<results>/logs/regular/{aoi}.log",
    benchmark:
        "<results>/benchmarks/regular/{aoi}.tsv"
    conda:
        "../../envs/netcdf.yaml"
    threads: 2  # spatial chunks in parallel (dask threads)
    resources:
        mem_mb=2000,
    params:
        code=code_digest("regular", also=("gapfill", "netcdf", "indices")),
        config=regular_config(),
    script:
        "../../scripts/regular.py"
