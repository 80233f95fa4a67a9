rule offset_fix:
    input:
        tiles=light_tile_dirs,
    output:
        tiles=directory(f"{RESULTS}/{{aoi}}/offset_fix/{{batch}}"),
    log:
        f"{RESULTS}/logs/offset_fix/{{aoi}}/{{batch}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/offset_fix/{{aoi}}/{{batch}}.tsv"
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
