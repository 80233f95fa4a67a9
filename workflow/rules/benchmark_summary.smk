rule benchmark_summary:
    input:
        benchmarks=benchmark_files,
    output:
        csv=report(
            "<results>/benchmarks/summary.csv",
            caption="../report/benchmark_summary.rst",
            category="Benchmarks",
            labels={"table": "per AOI and stage (CSV)"},
        ),
        html=report(
            "<results>/benchmarks/summary.html",
            caption="../report/benchmark_summary.rst",
            category="Benchmarks",
            labels={"table": "per AOI and stage"},
        ),
    log:
        "<results>/logs/benchmark_summary.log",
    conda:
        "../../envs/netcdf.yaml"
    resources:
        mem_mb=200,
    params:
        code=code_digest("benchmark_summary"),
    script:
        "../../scripts/benchmark_summary.py"
