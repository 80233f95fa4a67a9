rule tile:
    input:
        item_files=batch_item_files,
        grid="<results>/{aoi}/aoi/grid.json",
    output:
        tiles=directory("<results>/{aoi}/tile/{batch}"),
    log:
        "<results>/logs/tile/{aoi}/{batch}.log",
    benchmark:
        "<results>/benchmarks/tile/{aoi}/{batch}.tsv"
    conda:
        "../../envs/geo.yaml"
    threads: 1
    resources:
        mem_mb=1000,
    params:
        code=code_digest("tile"),
        bands=config["bands"],
        mask_band=config["mask"]["band"],
        signing=SIGNING,
        on_read_error=config["tiles"]["on_read_error"],
        items_digest=items_digest,
    script:
        "../../scripts/tile.py"
