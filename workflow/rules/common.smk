# Configuration checks, the AOI list and every input function of the workflow.
import functools
import hashlib
import os
import json
import sys
from pathlib import Path

from snakemake.utils import validate

sys.path.insert(0, workflow.basedir)

from s2ts.aoi_grid import check_resolution, read_aois
from s2ts.batches import BATCH_RE, auto_mode, group_dates, light_batches
from s2ts.config import check_config, key_source, load_yaml
from s2ts.errors import UserError
from s2ts.grid_size import check_grid_size
from s2ts.tile import signing_mode


def config_layers():
    """The configuration as Snakemake merged it, lowest precedence first: the
    Snakefile's configfile, each --configfile, then --config (to name in a message
    the file a key came from)."""
    import yaml

    cli = [Path(f).absolute() for f in workflow.config_settings.configfiles]
    own = [Path(f) for f in workflow.configfiles if Path(f).absolute() not in cli]
    layers = []
    for f in own + cli:
        try:
            layers.append((os.path.relpath(f), load_yaml(Path(f).read_text()) or {}))
        except (OSError, yaml.YAMLError):
            continue
    layers.append(("--config", dict(workflow.config_settings.config)))
    return layers


GRID_PIXELS = {}  # pixels of each AOI's grid (tiles.batch: auto)


def check_inputs():
    """Every parse-time check of the configuration and the polygons, before any
    job: one message naming the problem and the fix. Returns the AOIs by id and
    prints a warning for a large grid."""
    checked = check_config(config)
    config.clear()
    config.update(checked)
    aoi = config["aoi"]
    source = key_source(config_layers(), "aoi.path")
    aois = {
        a.id: a for a in read_aois(aoi["path"], aoi["id_field"], aoi.get("layer"), source=source)
    }
    for a in aois.values():
        grid = check_resolution(a, config["grid"]["crs"], config["grid"]["resolution"])
        GRID_PIXELS[a.id] = int(grid["width"]) * int(grid["height"])
        warning = check_grid_size(a.id, grid, config)
        if warning:
            print(warning, file=sys.stderr)
    return aois


try:
    AOIS = check_inputs()
except UserError as _err:
    sys.exit(f"ERROR: {_err}")

# check_config has already given the friendly message; this is the canonical check.
validate(config, "../schemas/config.schema.yaml")

DEMO = config["stac"]["catalog"] == "demo"
CATALOG = str(Path(config["demo"]["path"]) / "catalog.json") if DEMO else config["stac"]["catalog"]
SIGNING = signing_mode(config["stac"]["signing"], CATALOG)
BATCH = config["tiles"]["batch"]
LIGHT_BATCH = config["tiles"]["light_batch"]
#: the regular product's settings (config `regular`), None when it is off
REGULAR = config.get("regular") or None


# Snakemake 9 path variables: every rule writes under "<results>/..." (config key
# `results`), and final products are named after the searched period ("<period>").
pathvars:
    results=config["results"],
    period=f"{config['dates']['start']}_{config['dates']['end']}",


def resolved(path):
    """A "<results>/..." path with its path variables expanded (for Python-side reads)."""
    return workflow.pathvars.apply(path)


wildcard_constraints:
    aoi=r"[A-Za-z0-9_-]+",
    date=r"\d{4}-\d{2}-\d{2}",
    batch=BATCH_RE,


@functools.cache
def code_digest(stage, also=()):
    """Hash of a stage's script and module (s2ts/<stage>.py) or package (every .py
    file of s2ts/<stage>/, in sorted order, with its name), and of the modules
    ``also`` (s2ts/<name>.py) whose code makes part of its output: a params value,
    so changing the code of a stage reruns that stage and what depends on it
    (Snakemake's own `code` trigger sees only the rule's inline code)."""
    h = hashlib.sha1()
    h.update(Path(workflow.basedir, f"scripts/{stage}.py").read_bytes())
    package = Path(workflow.basedir, "s2ts", stage)
    if package.is_dir():
        for f in sorted(package.rglob("*.py")):
            h.update(f.relative_to(package).as_posix().encode())
            h.update(f.read_bytes())
    else:
        h.update(Path(workflow.basedir, f"s2ts/{stage}.py").read_bytes())
    for name in also:
        h.update(Path(workflow.basedir, f"s2ts/{name}.py").read_bytes())
    return h.hexdigest()[:16]


def data_config():
    """The configuration the gap-filled NetCDF depends on (recorded in it, and the
    netcdf rule's params: exactly what the file holds): without the figure and
    export settings, and without `regular`, which makes another product, so
    changing those does not rewrite the NetCDF."""
    return {k: v for k, v in config.items() if k not in ("figures", "export", "regular")}


def regular_config():
    """The configuration the regular product depends on (recorded in it, and the
    regular rule's params): the data configuration with `regular`, without
    gapfill.method (the regular product is made from the observations, never the
    gap-filled cube) and, for the median, without the gap-fill's end and gap rules."""
    cfg = {k: v for k, v in config.items() if k not in ("figures", "export", "gapfill")}
    if REGULAR and REGULAR.get("method", "linear") == "linear":
        gap = config["gapfill"]
        cfg["gapfill"] = {"fill_ends": gap["fill_ends"], "max_gap_days": gap["max_gap_days"]}
    return cfg


def regular_nc(aoi):
    """The regular product of an AOI: <aoi>_<start>_<end>_<N>d.nc."""
    return f"<results>/{aoi}/{aoi}_<period>_{REGULAR['step_days']}d.nc"


def aoi_digest(wildcards):
    """A digest of one AOI's polygon (EPSG:4326) as read from aoi.path: a params
    value, so editing one polygon reruns that AOI only (the job reads the polygon
    itself, with geopandas)."""
    return AOIS[wildcards.aoi].digest


def aoi_search(wildcards):
    """What the STAC search needs of one AOI (id, EPSG:4326 bounding box, centroid for
    the solar day), from the polygon read at parse time: a params value, so the
    search runs beside the aoi_grid job instead of after it."""
    geom = AOIS[wildcards.aoi].geometry
    return {
        "id": wildcards.aoi,
        "bbox_4326": [float(v) for v in geom.bounds],
        "centroid_4326": [geom.centroid.x, geom.centroid.y],
    }


def manifest_inputs(wildcards):
    return {"catalog": CATALOG} if DEMO else {}


_MANIFEST_INFO = {}


def manifest_dates(aoi):
    """Solar days of one AOI, known once its stac_manifest checkpoint has run.

    A checkpoint's get() raises until its output is final, then answers the same for
    the rest of the run: the answer is kept (one get() per AOI instead of one per
    job: 2 s of a 10 x 600-date DAG build), the dates re-read if the file changes."""
    info = _MANIFEST_INFO.get(aoi)
    if info is None:
        info = _MANIFEST_INFO[aoi] = checkpoints.stac_manifest.get(aoi=aoi).output.info
    return _dates_in(info, os.stat(info).st_mtime_ns)


@functools.cache
def _dates_in(info, mtime_ns):
    with open(info) as f:
        return tuple(json.load(f)["dates"])


@functools.cache
def _group(dates, mode):
    return group_dates(list(dates), mode)


def batch_mode(aoi):
    """tiles.batch of one AOI: auto is a year, or a month on a large grid (s2ts.batches)."""
    return auto_mode(GRID_PIXELS[aoi]) if BATCH == "auto" else BATCH


def batches(aoi):
    """{tile batch: [dates]} of one AOI (tiles.batch: auto, year, month, date or N dates)."""
    return _group(manifest_dates(aoi), batch_mode(aoi))


@functools.cache
def _light(dates, mode, light_mode):
    return light_batches(_group(dates, mode), mode, light_mode)


def light(aoi):
    """{light batch: [tile batches]} of one AOI: the unit of the offset_fix and mask
    jobs (tiles.light_batch): never finer than the tile batches (with tiles.batch:
    date, a month per job instead of a date: far fewer jobs to plan and start)."""
    return _light(manifest_dates(aoi), batch_mode(aoi), LIGHT_BATCH)


def tile_threads(wildcards):
    """Cores of one tile job: the run's cores (--cores) shared among its tile jobs,
    counted as this AOI's batches times the number of AOIs. A study with fewer batches
    than cores (a year on a 4-core laptop) still uses every core: s2ts.tile splits a
    job's dates among that many processes. Without a core count (a cluster run, a dry
    run without --cores), 1."""
    cores = getattr(workflow.global_resources.get("_cores"), "value", None)
    if not isinstance(cores, int):
        return 1
    return max(1, cores // (len(AOIS) * max(1, len(batches(wildcards.aoi)))))


def tile_mem_mb(wildcards, threads):
    """Memory of a tile job: about 250 MB per process it reads in (one per thread,
    s2ts.tile.worker_count; measured 242 MB for one, 534 MB for two), on 750 MB."""
    return 750 + 250 * threads


def batch_outputs(aoi, stage):
    """The batch outputs of a per-date stage of one AOI: the tile batches' indexes
    (each listing the per-date stores in the folder beside it), or the light batches'
    stores of offset_fix and mask."""
    if stage == "tile":
        return [f"<results>/{aoi}/tile/{b}.json" for b in batches(aoi)]
    return [f"<results>/{aoi}/{stage}/{b}.zarr/zarr.json" for b in light(aoi)]


def light_tile_batches(wildcards):
    """The tile batches (their indexes) an offset_fix job reads."""
    return [
        f"<results>/{wildcards.aoi}/tile/{b}.json" for b in light(wildcards.aoi)[wildcards.batch]
    ]


def batch_item_files(wildcards):
    """The item files of a batch's dates. ancient: a rerun of the manifest rewrites
    every item file; a batch is redone only when its items change (items_digest)."""
    dates = batches(wildcards.aoi)[wildcards.batch]
    return [ancient(f"<results>/{wildcards.aoi}/items/{d}.json") for d in dates]


def items_digest(wildcards):
    """Content hash of a batch's item files: reruns its tiles when its items change."""
    h = hashlib.sha1()
    for d in batches(wildcards.aoi).get(wildcards.batch, []):
        path = Path(resolved(f"<results>/{wildcards.aoi}/items/{d}.json"))
        h.update(path.read_bytes() if path.exists() else b"")
    return h.hexdigest()


def masked_batches(wildcards):
    return batch_outputs(wildcards.aoi, "mask")


def final_outputs(wildcards):
    """One NetCDF per AOI, with its figures (figures.enabled) and CSV (export.csv);
    an AOI without any item ends at its (empty) manifest. With the figures, the
    benchmark summary of the run (a page of the report, like the figures)."""
    outputs = []
    for aoi in AOIS:
        if manifest_dates(aoi):
            outputs.append(f"<results>/{aoi}/{aoi}_<period>.nc")
            if REGULAR:
                outputs.append(regular_nc(aoi))
            outputs.extend(aoi_extra_outputs(aoi))
        else:
            outputs.append(f"<results>/{aoi}/manifest.csv")
    if config["figures"]["enabled"]:
        outputs.append("<results>/benchmarks/summary.csv")
    return outputs


FIGURES = [
    "false_colour.png",
    "false_colour.gif",
    "pixel_series.png",
    "sandbank_area.png",
    "sandbank_area.csv",
    "data_quality.png",
]
# with `indices`, the indices at the series points; with `regular`, the regular product there
if config["indices"]:
    FIGURES.append("index_series.png")
if REGULAR:
    FIGURES.append("regular_series.png")


def aoi_extra_outputs(aoi):
    """Figures and optional CSV export of an AOI that has dates."""
    outputs = []
    if config["figures"]["enabled"]:
        outputs.extend(f"<results>/{aoi}/figures/{name}" for name in FIGURES)
    if config["export"]["csv"]:
        outputs.append(f"<results>/{aoi}/{aoi}_<period>.csv.gz")
    return outputs


def analysis_figures():
    """The figures of the options: with `indices`, the indices at the series points;
    with `regular`, the regular product there (report entries 6 and 7)."""
    out = {}
    if config["indices"]:
        out["index_series"] = report(
            "<results>/{aoi}/figures/index_series.png",
            caption="../report/index_series.rst",
            category="Figures",
            subcategory="AOI {aoi}",
            labels={"AOI": "{aoi}", "figure": "6 spectral indices at the pixels"},
        )
    if REGULAR:
        out["regular_series"] = report(
            "<results>/{aoi}/figures/regular_series.png",
            caption="../report/regular_series.rst",
            category="Figures",
            subcategory="AOI {aoi}",
            labels={"AOI": "{aoi}", "figure": "7 regular time steps at the pixels"},
        )
    return out


def figures_inputs(wildcards):
    """The products the figures are drawn from: the NetCDF, the manifest, the AOI
    grid and every date's tile, offset_fix and mask store (by batch)."""
    aoi = wildcards.aoi
    stages = {"tiles": "tile", "offset_fixed": "offset_fix", "masked": "mask"}
    inputs = {k: batch_outputs(aoi, stage) for k, stage in stages.items()}
    inputs.update(
        nc=f"<results>/{aoi}/{aoi}_<period>.nc",
        manifest=f"<results>/{aoi}/manifest.csv",
        manifest_info=f"<results>/{aoi}/manifest.json",
        inside=f"<results>/{aoi}/aoi/inside.npy",
        grid=f"<results>/{aoi}/aoi/grid.json",
    )
    if REGULAR:
        inputs["regular"] = regular_nc(aoi)
    return inputs


def benchmark_files(wildcards):
    """Every benchmark file the run writes (per AOI, per batch of dates)."""
    files = []
    for aoi in AOIS:
        bench = "<results>/benchmarks"
        files.append(f"{bench}/stac_manifest/{aoi}.tsv")
        if not manifest_dates(aoi):
            continue
        files.extend(f"{bench}/tile/{aoi}/{b}.tsv" for b in batches(aoi))
        for b in light(aoi):
            files.extend(f"{bench}/{stage}/{aoi}/{b}.tsv" for stage in ("offset_fix", "mask"))
        files.extend(f"{bench}/{stage}/{aoi}.tsv" for stage in ("gapfill", "netcdf"))
        if REGULAR:
            files.append(f"{bench}/regular/{aoi}.tsv")
        if config["figures"]["enabled"]:
            files.append(f"{bench}/figures/{aoi}.tsv")
        if config["export"]["csv"]:
            files.append(f"{bench}/csv_export/{aoi}.tsv")
    return files
