rule mask:
    input:
        tiles=f"{RESULTS}/{{aoi}}/offset_fix/{{batch}}",
        inside=f"{RESULTS}/{{aoi}}/aoi/inside.npy",
    output:
        tiles=directory(f"{RESULTS}/{{aoi}}/mask/{{batch}}"),
    log:
        f"{RESULTS}/logs/mask/{{aoi}}/{{batch}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/mask/{{aoi}}/{{batch}}.tsv"
    conda:
        "../../envs/array.yaml"
    threads: 1
    resources:
        mem_mb=500,
    params:
        code=code_digest("mask"),
        classes=config["mask"]["classes"],
        rule=config["mask"]["rule"],
    script:
        "../../scripts/mask.py"
