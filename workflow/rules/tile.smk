rule tile:
    input:
        # ancient: a rerun of the manifest rewrites every item file; a date's tile is
        # redone only when its own items change (params.items_digest), not on mtime.
        item_file=ancient(f"{RESULTS}/{{aoi}}/items/{{date}}.json"),
        grid=f"{RESULTS}/{{aoi}}/aoi/grid.json",
    output:
        tile=directory(f"{RESULTS}/{{aoi}}/tile/{{date}}.zarr"),
    log:
        f"{RESULTS}/logs/tile/{{aoi}}/{{date}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/tile/{{aoi}}/{{date}}.tsv"
    conda:
        "../../envs/geo.yaml"
    threads: 1
    resources:
        mem_mb=1000,
    params:
        bands=config["bands"],
        mask_band=config["mask"]["band"],
        signing=SIGNING,
        items_digest=items_digest,
    script:
        "../../scripts/tile.py"
