rule demo_catalog:
    output:
        catalog=f"{config.get('demo', {}).get('path', 'resources/demo-catalog')}/catalog.json",
    log:
        f"{config.get('demo', {}).get('path', 'resources/demo-catalog')}.log",
    benchmark:
        f"{config.get('demo', {}).get('path', 'resources/demo-catalog')}.benchmark.tsv"
    conda:
        "../../envs/geo.yaml"
    threads: 2
    resources:
        mem_mb=2000,
    params:
        code=code_digest("demo_catalog"),
        start=config.get("demo", {}).get("start"),
        end=config.get("demo", {}).get("end"),
        seed=config.get("demo", {}).get("seed"),
    script:
        "../../scripts/demo_catalog.py"
