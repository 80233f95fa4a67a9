rule gapfill:
    input:
        masked=masked_batches,
    output:
        # updated from the first changed date on, never deleted first (s2ts.gapfill.update)
        cube=update("<results>/{aoi}/gapfill.zarr/zarr.json"),
    log:
        "<results>/logs/gapfill/{aoi}.log",
    benchmark:
        "<results>/benchmarks/gapfill/{aoi}.tsv"
    conda:
        "../../envs/array.yaml"
    threads: 2  # spatial chunks in parallel (dask threads)
    resources:
        mem_mb=2000,
    params:
        code=code_digest("gapfill"),
        bands=config["bands"],
        method=config["gapfill"]["method"],
        fill_ends=config["gapfill"]["fill_ends"],
        max_gap_days=config["gapfill"]["max_gap_days"],
    script:
        "../../scripts/gapfill.py"
