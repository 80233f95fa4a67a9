rule aoi_grid:
    output:
        grid=f"{RESULTS}/{{aoi}}/aoi/grid.json",
        inside=f"{RESULTS}/{{aoi}}/aoi/inside.npy",
    log:
        f"{RESULTS}/logs/aoi_grid/{{aoi}}.log",
    conda:
        "../../envs/geo.yaml"
    resources:
        mem_mb=500,
    params:
        code=code_digest("aoi_grid"),
        geojson=aoi_geojson,
        crs=config["grid"]["crs"],
        resolution=config["grid"]["resolution"],
    script:
        "../../scripts/aoi_grid.py"
