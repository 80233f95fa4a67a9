rule netcdf:
    input:
        cube="<results>/{aoi}/gapfill.zarr/zarr.json",
        manifest_info="<results>/{aoi}/manifest.json",
    output:
        nc="<results>/{aoi}/{aoi}_<period>.nc",
    log:
        "<results>/logs/netcdf/{aoi}.log",
    benchmark:
        "<results>/benchmarks/netcdf/{aoi}.tsv"
    conda:
        "../../envs/netcdf.yaml"
    threads: 2  # reading and decoding the cube's chunks beside the HDF5 writes (dask threads)
    resources:
        mem_mb=2000,
    params:
        code=code_digest("netcdf", also=("indices",)),
        config=data_config(),
    script:
        "../../scripts/netcdf.py"
