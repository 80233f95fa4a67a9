rule aoi_grid:
    output:
        grid="<results>/{aoi}/aoi/grid.json",
        inside="<results>/{aoi}/aoi/inside.npy",
    log:
        "<results>/logs/aoi_grid/{aoi}.log",
    conda:
        "../../envs/geo.yaml"
    resources:
        mem_mb=500,
    params:
        code=code_digest("aoi_grid"),
        polygon=aoi_digest,
        crs=config["grid"]["crs"],
        resolution=config["grid"]["resolution"],
    script:
        "../../scripts/aoi_grid.py"
