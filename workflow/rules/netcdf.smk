rule netcdf:
    input:
        cube=f"{RESULTS}/{{aoi}}/gapfill.zarr",
        manifest_info=f"{RESULTS}/{{aoi}}/manifest.json",
    output:
        nc=f"{RESULTS}/{{aoi}}/{{aoi}}_{NC_SUFFIX}.nc",
    log:
        f"{RESULTS}/logs/netcdf/{{aoi}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/netcdf/{{aoi}}.tsv"
    conda:
        "../../envs/netcdf.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    params:
        code=code_digest("netcdf"),
        config=data_config(),
    script:
        "../../scripts/netcdf.py"
