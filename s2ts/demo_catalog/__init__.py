"""Embedded, offline demo catalog: synthetic Sentinel-2 L2A items over the Arcachon inlet.

:func:`generate_demo_catalog` writes a static STAC catalog that behaves like the
Planetary Computer ``sentinel-2-l2a`` collection (item ids, properties, COG
assets B03/B04/B08 at 10 m and SCL at 20 m, processing baselines and the
PB >= 04.00 radiometric offset, two relative orbits, one of them a partial
swath, reprocessing duplicates, a neighbouring MGRS tile on a few dates, clouds,
shadows and cirrus) plus the clear-sky ground truth the pixels were rendered
from (``truth/truth.json``). :func:`load_truth` reads it back;
:class:`Truth` renders the clear-sky scene at arbitrary points with the very
code that rendered the item pixels.

Layout of ``out_dir``::

    catalog.json                       STAC Catalog "s2ts-demo"
    sentinel-2-l2a/collection.json     STAC Collection "sentinel-2-l2a"
    sentinel-2-l2a/<id>/<id>.json      STAC Items (relative links and hrefs)
    sentinel-2-l2a/<id>/{B03,B04,B08,SCL}.tif   COGs
    truth/truth.json                   scene definition + per-acquisition state

Land-cover class codes of the clear-sky scene (:meth:`Truth.classes`):
0 outside the scene extent, 1 water (ocean, inlet, lagoon), 2 wet sand,
3 dry sand (sandbank core, beaches), 4 dune sand (Dune du Pilat),
5 pine forest, 6 built-up. See ``docs/demo_catalog.md``.

Modules: ``common`` (CRS, scene grid, seeded random generators), ``scene``
(land cover and clear-sky reflectance), ``state`` (tide, sandbank, seasons per
acquisition), ``plan`` (orbits, dates, baselines, reprocessings, item ids),
``clouds``, ``pixels`` (one datatake's bands and SCL), ``cog``, ``stac`` (items,
collection, catalog), ``truth`` (saving and reading the truth, :class:`Truth`),
``generate`` (the generator and its Snakemake entry point); ``python -m
s2ts.demo_catalog`` runs ``__main__``.
"""

from s2ts.demo_catalog.generate import demo_catalog_from_snakemake, generate_demo_catalog
from s2ts.demo_catalog.truth import Truth, load_truth

__all__ = ["Truth", "demo_catalog_from_snakemake", "generate_demo_catalog", "load_truth"]
