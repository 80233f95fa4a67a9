rule csv_export:
    input:
        nc=f"{RESULTS}/{{aoi}}/{{aoi}}_{NC_SUFFIX}.nc",
        inside=f"{RESULTS}/{{aoi}}/aoi/inside.npy",
    output:
        csv=f"{RESULTS}/{{aoi}}/{{aoi}}_{NC_SUFFIX}.csv.gz",
    log:
        f"{RESULTS}/logs/csv_export/{{aoi}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/csv_export/{{aoi}}.tsv"
    conda:
        "../../envs/netcdf.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    params:
        code=code_digest("csv_export"),
    script:
        "../../scripts/csv_export.py"
