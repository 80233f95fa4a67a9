rule offset_fix:
    input:
        tile=f"{RESULTS}/{{aoi}}/tile/{{date}}.zarr",
    output:
        tile=directory(f"{RESULTS}/{{aoi}}/offset_fix/{{date}}.zarr"),
    log:
        f"{RESULTS}/logs/offset_fix/{{aoi}}/{{date}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/offset_fix/{{aoi}}/{{date}}.tsv"
    conda:
        "../../envs/array.yaml"
    threads: 1
    resources:
        mem_mb=500,
    params:
        apply=config["offset"]["apply"],
        value=config["offset"]["value"],
        since_baseline=config["offset"]["since_baseline"],
    script:
        "../../scripts/offset_fix.py"
