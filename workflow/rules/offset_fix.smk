rule offset_fix:
    input:
        tiles=light_tile_dirs,
    output:
        tiles=directory("<results>/{aoi}/offset_fix/{batch}"),
    log:
        "<results>/logs/offset_fix/{aoi}/{batch}.log",
    benchmark:
        "<results>/benchmarks/offset_fix/{aoi}/{batch}.tsv"
    conda:
        "../../envs/array.yaml"
    threads: 1
    resources:
        mem_mb=500,
    params:
        code=code_digest("offset_fix"),
        apply=config["offset"]["apply"],
        value=config["offset"]["value"],
        since_baseline=config["offset"]["since_baseline"],
    script:
        "../../scripts/offset_fix.py"
