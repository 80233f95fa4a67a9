rule tile:
    input:
        item_files=batch_item_files,
        grid="<results>/{aoi}/aoi/grid.json",
    output:
        # the batch's index, written last; its per-date stores are in the folder
        # tile/{batch}/ beside it, which a rerun (or the rerun of a failed job) finds:
        # it reads only the dates whose items or settings changed (s2ts/tile.py)
        tiles="<results>/{aoi}/tile/{batch}.json",
    log:
        "<results>/logs/tile/{aoi}/{batch}.log",
    benchmark:
        "<results>/benchmarks/tile/{aoi}/{batch}.tsv"
    conda:
        "../../envs/geo.yaml"
    # the cores no other tile job of the run needs (common.smk)
    threads: tile_threads
    resources:
        mem_mb=tile_mem_mb,
    params:
        code=code_digest("tile"),
        bands=config["bands"],
        mask_band=config["mask"]["band"],
        signing=SIGNING,
        on_read_error=config["tiles"]["on_read_error"],
        loader=config["tiles"]["loader"],
        overviews=config["tiles"]["overviews"],
        reads_in_flight=config["tiles"]["reads_in_flight"],
        items_digest=items_digest,
    script:
        "../../scripts/tile.py"
