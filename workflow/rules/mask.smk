rule mask:
    input:
        tile=f"{RESULTS}/{{aoi}}/offset_fix/{{date}}.zarr",
        inside=f"{RESULTS}/{{aoi}}/aoi/inside.npy",
    output:
        tile=directory(f"{RESULTS}/{{aoi}}/mask/{{date}}.zarr"),
    log:
        f"{RESULTS}/logs/mask/{{aoi}}/{{date}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/mask/{{aoi}}/{{date}}.tsv"
    conda:
        "../../envs/array.yaml"
    threads: 1
    resources:
        mem_mb=500,
    params:
        classes=config["mask"]["classes"],
    script:
        "../../scripts/mask.py"
