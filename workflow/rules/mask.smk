rule mask:
    input:
        tiles="<results>/{aoi}/offset_fix/{batch}",
        inside="<results>/{aoi}/aoi/inside.npy",
    output:
        tiles=directory("<results>/{aoi}/mask/{batch}"),
    log:
        "<results>/logs/mask/{aoi}/{batch}.log",
    benchmark:
        "<results>/benchmarks/mask/{aoi}/{batch}.tsv"
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
