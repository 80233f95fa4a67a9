"""s2ts: Sentinel-2 L2A time series over polygons.

Shared, unit-tested logic behind the Snakemake workflow. Each workflow stage has
one module (or package, like ``s2ts.demo_catalog``) here whose name matches its
rule, its script in ``scripts/`` and its test in ``tests/`` (e.g. rule
``aoi_grid`` -> ``scripts/aoi_grid.py`` -> ``s2ts.aoi_grid`` ->
``tests/test_aoi_grid.py``).
"""

__version__ = "0.1.0"
