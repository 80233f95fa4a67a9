rule csv_export:
    input:
        nc="<results>/{aoi}/{aoi}_<period>.nc",
        inside="<results>/{aoi}/aoi/inside.npy",
    output:
        csv="<results>/{aoi}/{aoi}_<period>.csv.gz",
    log:
        "<results>/logs/csv_export/{aoi}.log",
    benchmark:
        "<results>/benchmarks/csv_export/{aoi}.tsv"
    conda:
        "../../envs/netcdf.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    params:
        code=code_digest("csv_export"),
    script:
        "../../scripts/csv_export.py"
