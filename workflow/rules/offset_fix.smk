rule offset_fix:
    input:
        tiles=light_tile_batches,
    output:
        # the store's own metadata document: a directory() output would get Snakemake's
        # .snakemake_timestamp inside the store
        store="<results>/{aoi}/offset_fix/{batch}.zarr/zarr.json",
    log:
        "<results>/logs/offset_fix/{aoi}/{batch}.log",
    benchmark:
        "<results>/benchmarks/offset_fix/{aoi}/{batch}.tsv"
    conda:
        "../../envs/array.yaml"
    threads: 1
    resources:
        mem_mb=1000,
    params:
        code=code_digest("offset_fix"),
        apply=config["offset"]["apply"],
        value=config["offset"]["value"],
        since_baseline=config["offset"]["since_baseline"],
    script:
        "../../scripts/offset_fix.py"
