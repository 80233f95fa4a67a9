rule figures:
    input:
        unpack(figures_inputs),
    output:
        **analysis_figures(),
        false_colour=report(
            "<results>/{aoi}/figures/false_colour.png",
            caption="../report/false_colour.rst",
            category="Figures",
            subcategory="AOI {aoi}",
            labels={"AOI": "{aoi}", "figure": "1 false colour: raw vs gap-filled"},
        ),
        false_colour_gif=report(
            "<results>/{aoi}/figures/false_colour.gif",
            caption="../report/false_colour_gif.rst",
            category="Figures",
            subcategory="AOI {aoi}",
            labels={"AOI": "{aoi}", "figure": "2 false colour animation (GIF)"},
        ),
        pixel_series=report(
            "<results>/{aoi}/figures/pixel_series.png",
            caption="../report/pixel_series.rst",
            category="Figures",
            subcategory="AOI {aoi}",
            labels={"AOI": "{aoi}", "figure": "3 pixel time series (B08)"},
        ),
        sandbank_png=report(
            "<results>/{aoi}/figures/sandbank_area.png",
            caption="../report/sandbank_area.rst",
            category="Figures",
            subcategory="AOI {aoi}",
            labels={"AOI": "{aoi}", "figure": "4 emerged sand area"},
        ),
        sandbank_csv=report(
            "<results>/{aoi}/figures/sandbank_area.csv",
            caption="../report/sandbank_area.rst",
            category="Figures",
            subcategory="AOI {aoi}",
            labels={"AOI": "{aoi}", "figure": "4 emerged sand area (CSV)"},
        ),
        data_quality=report(
            "<results>/{aoi}/figures/data_quality.png",
            caption="../report/data_quality.rst",
            category="Figures",
            subcategory="AOI {aoi}",
            labels={"AOI": "{aoi}", "figure": "5 data quality"},
        ),
    log:
        "<results>/logs/figures/{aoi}.log",
    benchmark:
        "<results>/benchmarks/figures/{aoi}.tsv"
    conda:
        "../../envs/netcdf.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    params:
        code=code_digest("figures"),
        points=config["figures"]["points"],
        n_dates=config["figures"]["n_dates"],
        ndwi_threshold=config["figures"]["ndwi_threshold"],
        ndvi_max=config["figures"]["ndvi_max"],
        gif_max_frames=config["figures"]["gif_max_frames"],
    script:
        "../../scripts/figures.py"
