rule mask:
    input:
        store="<results>/{aoi}/offset_fix/{batch}.zarr/zarr.json",
        inside="<results>/{aoi}/aoi/inside.npy",
    output:
        store="<results>/{aoi}/mask/{batch}.zarr/zarr.json",
    log:
        "<results>/logs/mask/{aoi}/{batch}.log",
    benchmark:
        "<results>/benchmarks/mask/{aoi}/{batch}.tsv"
    conda:
        "../../envs/array.yaml"
    threads: 1
    resources:
        mem_mb=1000,
    params:
        code=code_digest("mask"),
        classes=config["mask"]["classes"],
        rule=config["mask"]["rule"],
        dilate_m=config["mask"]["dilate_m"],
    script:
        "../../scripts/mask.py"
