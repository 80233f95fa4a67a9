"""`make bench`: the workflow's shipped defaults against the original package, side
by side, on local files and over a network-shaped link, in one invocation.

Same machine, same cores, same items, same polygon (the offline demo catalog,
Banc d'Arguin, 2021-01-01..2023-01-01; the tutorial's polygon and grid). For each
**transport**:

* ``local``: asset hrefs are ``file://`` URIs of the demo catalog's COGs;
* ``network``: asset hrefs are ``http://127.0.0.1:<port>/<path in the catalog>`` on
  benchmarks/cog_server.py, which waits ``--delay-ms`` (40) before answering each
  request and paces each response at ``--bandwidth-mbit`` (200); its request log
  gives the requests and body bytes of each run (each run its own time window);

both sides search the same STAC API, ``rustac serve`` on 127.0.0.1 holding the
period's items with ``eo:cloud_cover < 20`` (rustac's memory backend answers
nothing to a search with ``query``: the workflow, which sends ``query`` only to
servers that declare it, and sits then search by bbox and datetime), and run:

1. the original (sits 0.8.0, the tutorial's steps, its own venv and subprocess:
   benchmarks/original_sits.py --url): wall of the subprocess and of its steps;
2. the workflow with its **shipped defaults**: exactly
   ``snakemake --cores all --configfile <override.yaml>`` from the repository root
   (Snakemake finds profiles/default/ by itself), the override setting only
   ``stac.catalog`` (the rustac URL), ``dates``, ``results`` (a temporary folder)
   and ``figures: {enabled: false}``; ratios workflow / original against the
   targets (local wall <= 1.0, stretch 0.5; network wall <= 0.5, stretch 0.25,
   requests and bytes <= the original's). On local files both sides run
   ``--pairs`` (3) times, the order alternating from pair to pair, and the verdict
   uses the median of the pairs' wall ratios: this host's speed drifts within one
   bench by more than that target's margin;
3. a no-op rerun (the same command again) and one new date: a run stopped before
   the last acquisition date (``dates.end`` = that date, exclusive), then the same
   command with ``dates.end`` 2023-01-01: wall as a share of the full run (target
   < 0.15) and, over the network, the bytes it fetched against the bytes of that
   date's assets in the full run (target <= 2x).

4. with ``--loaders stackstac`` (the default), the workflow again with
   ``tiles.loader: stackstac`` (the one setting changed; the shipped loader is
   odc-stac): wall, requests and bytes beside the default's.

Also printed: the machine, a warning when the SLURM client makes every snakemake
command slow, the read bound (benchmarks/read_bound.py on the local run's
manifest) and the per-stage costs from Snakemake's benchmark files.

Outside the timings: the demo catalog is generated if missing; each side runs once
untimed on local files over 2021-01-01..2021-02-01 (imports and interpreters warm);
before every timed run the served COGs are read once, so local-file runs are with
a warm OS page cache, the same for both sides.

    python benchmarks/run_all.py [--json F] [--keep DIR] [--pairs 3] [--delay-ms 40] [--bandwidth-mbit 200]
        [--transports local,network] [--loaders stackstac] [--original-scale [--skip-demo]]

``--original-scale`` adds the tutorial's whole period (2016-01-01..2025-01-01, a
1.6 GB catalog generated into a temporary folder) on local files, one new date
included; ``--skip-demo`` runs only that. ``--dates START END`` shortens
the period (to check the instrument; the figures are for 2021-01-01..2023-01-01).
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from urllib.parse import unquote, urlsplit

import yaml

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from cog_server import CogServer, read_log, summarise  # noqa: E402
from original_sits import MAX_CLOUD_COVER, LocalStacApi, catalog_items, in_period, write_inputs  # noqa: E402

DEMO_CATALOG = ROOT / "resources" / "demo-catalog"
PERIOD = ("2021-01-01", "2023-01-01")
WARMUP = ("2021-01-01", "2021-02-01")
TRANSPORTS = ("local", "network")
#: the libraries each stage's job has imported by its end (sys.modules after the stage
#: function; the stages import xarray and friends inside their functions, so the stage
#: module alone is a fraction of it): the import share of a job's wall. A stage the
#: workflow no longer has, or a module it no longer imports, is left blank
STAGE_IMPORTS = {
    "stac_manifest": "import s2ts.stac_manifest, pystac_client",
    "tile": "import s2ts.tile, odc.stac, pystac, rasterio, rioxarray, zarr",
    "offset_fix": "import s2ts.offset_fix, xarray, zarr, dask.array",
    "mask": "import s2ts.mask, xarray, zarr, dask.array",
    "gapfill": "import s2ts.gapfill, xarray, zarr, dask.array",
    "netcdf": "import s2ts.netcdf, netCDF4, pyproj, rioxarray, zarr, dask.array",
}
CACHE_NOTE = (
    "local-file runs are with a warm OS page cache: before every timed run (both sides) the served COGs "
    "are read once, and each side ran once untimed over {w0}..{w1} (imports warm)"
)


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- machine
def machine() -> str:
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    mem = int(next(ln.split()[1] for ln in open("/proc/meminfo") if ln.startswith("MemTotal"))) // 1024**2
    return f"{os.cpu_count()} cores ({cpu}), {mem} GB RAM, Python {platform.python_version()}"


def loadavg() -> str:
    return ", ".join(f"{v:.2f}" for v in os.getloadavg())


def slurm_client_delay() -> float | None:
    """Seconds ``scontrol show config`` takes here (None: no SLURM client).

    snakemake-executor-plugin-slurm runs it whenever Snakemake starts (timeout
    10 s); with a slurm.conf and no controller it waits about 9 s, which every
    snakemake command below would pay (cluster/slurm/stop.sh puts our conf aside)."""
    if not shutil.which("scontrol"):
        return None
    t0 = time.perf_counter()
    subprocess.run(["scontrol", "show", "config"], capture_output=True, timeout=30)
    return time.perf_counter() - t0


def child_env() -> dict:
    """The environment of every child: this venv's bin first (as `make` does)."""
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}


def snakemake(results: Path, overrides: dict, extra=()) -> float:
    """Wall of one run on ``make demo``'s configuration (config/demo.yaml) with
    ``overrides`` layered on top (benchmarks/scale.py uses it)."""
    cfg = results.parent / f"{results.name}-{len(list(results.parent.glob('*.yaml')))}.yaml"
    results.parent.mkdir(parents=True, exist_ok=True)
    cfg.write_text(yaml.safe_dump({"results": str(results), **overrides}))
    cmd = [str(BIN / "snakemake"), "--cores", "2", "--configfile", str(ROOT / "config" / "demo.yaml"), str(cfg), *extra]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=ROOT, env=child_env(), capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(p.stderr[-3000:])
    return time.perf_counter() - t0


# --------------------------------------------------------------------------- items
def served_items(catalog: Path, start: str, end: str, href_base: str | None = None) -> list[dict]:
    """The items both sides are given: the period's, ``eo:cloud_cover < 20``."""
    s, e = dt.date.fromisoformat(start), dt.date.fromisoformat(end)
    return [
        it
        for it in catalog_items(catalog, href_base=href_base)
        if in_period(it, s, e) and float(it["properties"].get("eo:cloud_cover", 100)) < MAX_CLOUD_COVER
    ]


def item_day(item: dict) -> str:
    return item["properties"]["datetime"][:10]  # UTC, as dates.end compares


def asset_paths(items: list[dict]) -> list[Path]:
    """Local files behind the items' ``file://`` hrefs."""
    return [Path(unquote(urlsplit(a["href"]).path)) for it in items for a in it["assets"].values()]


def warm_page_cache(paths: list[Path]) -> dict:
    """Read every file once (the same warm-up before each side's timed runs)."""
    t0, n = time.perf_counter(), 0
    for p in paths:
        with open(p, "rb") as f:
            while chunk := f.read(1 << 20):
                n += len(chunk)
    return {"files": len(paths), "bytes": n, "seconds": round(time.perf_counter() - t0, 2)}


# --------------------------------------------------------------------------- runs
class Runner:
    """Each timed run in its own subprocess, its output kept under ``work``."""

    def __init__(self, work: Path):
        self.work = work
        self.n = 0

    def _run(self, name: str, cmd: list[str]) -> dict:
        self.n += 1
        out = self.work / f"{self.n:02d}-{name}.log"
        t0, p0 = time.time(), time.perf_counter()
        with open(out, "w") as f:
            rc = subprocess.run(cmd, cwd=ROOT, env=child_env(), stdout=f, stderr=subprocess.STDOUT).returncode
        wall = time.perf_counter() - p0
        if rc != 0:
            raise SystemExit(f"{name} failed (exit {rc}); log {out}:\n{out.read_text()[-4000:]}")
        return {"wall_s": round(wall, 2), "start": t0, "end": time.time(), "log": str(out)}

    def workflow(self, name: str, stac_url: str, results: Path, start: str, end: str, setting=None) -> dict:
        """``snakemake --cores all --configfile <override.yaml>`` from the repository
        root, the override setting only the catalog, the dates, results and figures
        (and, for a variant run, the one ``setting`` it is about)."""
        override = {
            "stac": {"catalog": stac_url},
            "dates": {"start": start, "end": end},
            "results": str(results),
            "figures": {"enabled": False},
            **(setting or {}),
        }
        cfg = self.work / f"{name}.yaml"
        cfg.write_text(yaml.safe_dump(override, sort_keys=False))
        r = self._run(name, [str(BIN / "snakemake"), "--cores", "all", "--configfile", str(cfg)])
        r["command"] = f"snakemake --cores all --configfile {cfg.name}"
        r["override"] = override
        return r

    def original(self, name: str, stac_url: str, catalog: Path, start: str, end: str, ours: Path | None) -> dict:
        """sits 0.8.0 (benchmarks/original_sits.py --url): the subprocess's and its
        steps' wall come from its JSON; the window covers the whole child."""
        js = self.work / f"{name}.json"
        cmd = [sys.executable, str(ROOT / "benchmarks" / "original_sits.py"), "--url", stac_url]
        cmd += ["--start", start, "--end", end, "--catalog", str(catalog), "--json", str(js)]
        if ours is not None:
            cmd += ["--ours", str(ours)]
        r = self._run(name, cmd)
        rep = json.loads(js.read_text())
        r["child_wall_s"] = r.pop("wall_s")  # venv check and comparison included: not the figure
        r["wall_s"] = round(rep["subprocess_wall_seconds"], 2)
        r["steps_s"] = round(rep["steps_total_seconds"], 2)
        r["steps"] = {s["step"]: round(s["seconds"], 2) for s in rep["steps"]}
        r["peak_rss_mb"] = round(rep["peak_rss_mb"])
        r["items_found"] = rep["items_found"]
        r["cube"] = rep.get("cube")
        cmp = rep.get("comparison")
        if cmp:
            r["comparison"] = {
                "grid_identical": cmp["grid_identical"],
                "dates": {k: cmp["dates"][k] for k in ("sits", "ours", "common")},
                "masks_identical_pixels": cmp["masks"]["identical_pixels"],
            }
        r["report"] = str(js)
        return r


def traffic(server: CogServer | None, run: dict, only: set[str] | None = None) -> dict | None:
    """Requests and body bytes the run's window saw on the COG server."""
    if server is None:
        return None
    server.wait_idle()
    entries = read_log(server.log, run["start"], run["end"])
    if only is not None:
        entries = [e for e in entries if e["path"] in only]
    s = summarise(entries)
    gets = [e for e in entries if e["method"] == "GET"]
    return {
        "requests": s["requests"],
        "bytes": s["bytes"],
        "head_requests": s["by_method"].get("HEAD", {}).get("requests", 0),
        "get_requests": len(gets),
        "multi_range_requests": s["multi_range_requests"],
        "header_reads": sum(1 for e in gets if (e["range"] or "").startswith("bytes=0-")),
        "header_read_asked": header_sizes(gets),
        "mean_get_bytes": round(statistics.mean(e["bytes"] for e in gets)) if gets else None,
        "whole_file_gets": sum(1 for e in gets if not e["range"]),
        "by_status": {k: v["requests"] for k, v in s["by_status"].items()},
        "files": len(s["paths"]),
    }


def header_sizes(gets: list[dict], top: int = 3) -> dict[int, int]:
    """{bytes asked: GETs} of the most common reads from byte 0 (GDAL's first read
    of a file; the answer is shorter when the file is)."""
    asked = Counter()
    for e in gets:
        first, _, last = (e["range"] or "").removeprefix("bytes=").partition("-")
        if first == "0" and last.isdigit():
            asked[int(last) + 1] += 1
    return dict(asked.most_common(top))


def ratio(a, b, nd: int = 3):
    return round(a / b, nd) if a is not None and b else None


def verdict(value, target: float, stretch: float | None = None, strict: bool = False) -> str:
    if value is None:
        return "not measured"
    ok = value < target if strict else value <= target
    if not ok:
        return "**not met**"
    if stretch is not None and value <= stretch:
        return "met (stretch met)"
    return "met"


# --------------------------------------------------------------------------- stages
def import_seconds(stmt: str, repeat: int = 3) -> float | None:
    code = f"import time; t = time.perf_counter(); {stmt}; print(time.perf_counter() - t)"
    runs = []
    for _ in range(repeat):
        out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
        if out.returncode != 0:
            return None
        runs.append(float(out.stdout.strip()))
    return statistics.median(runs)


#: what a ``script:`` job's process runs before the script's own imports: Snakemake's
#: preamble (the interpreter's start is timed around it, :func:`process_start_seconds`)
SCRIPT_PREAMBLE = "import pickle; from snakemake.logging import logger; from snakemake.iocontainers import Snakemake"


def process_start_seconds(repeat: int = 3) -> float | None:
    """Wall (s) of a new interpreter that runs Snakemake's script preamble and exits:
    what each ``script:`` job pays before its stage's imports (median of ``repeat``)."""
    runs = []
    for _ in range(repeat):
        t = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", SCRIPT_PREAMBLE], cwd=ROOT, capture_output=True, text=True)
        if out.returncode != 0:
            return None
        runs.append(time.perf_counter() - t)
    return round(statistics.median(runs), 3)


def benchmark_files(results: Path) -> dict[str, list[Path]]:
    """Snakemake's benchmark files of a run, by stage: ``<results>/benchmarks/<stage>/...``."""
    root = results / "benchmarks"
    out: dict[str, list[Path]] = {}
    for f in sorted(root.rglob("*.tsv")) if root.is_dir() else []:
        parts = f.relative_to(root).parts
        if len(parts) > 1:
            out.setdefault(parts[0], []).append(f)
    return out


def stage_costs(results: Path, imports: bool = True) -> dict:
    """Per stage: jobs, mean wall and max RSS from Snakemake's benchmark files
    (:func:`benchmark_files`, whatever stages the workflow has)."""
    out = {}
    for stage, files in sorted(benchmark_files(results).items()):
        rows = []
        for f in files:
            rows += list(csv.DictReader(open(f), delimiter="\t"))
        if not rows:
            continue
        wall = statistics.mean(float(r["s"]) for r in rows)
        rss = [float(r["max_rss"]) for r in rows if r.get("max_rss") not in (None, "-", "NA", "")]
        c = {"jobs": len(rows), "mean_wall_s": round(wall, 2), "max_rss_mb": round(max(rss)) if rss else None}
        stmt = STAGE_IMPORTS.get(stage)
        imp = import_seconds(stmt) if imports and stmt else None
        c["import_s"] = None if imp is None else round(imp, 2)
        c["import_share"] = ratio(imp, wall, 2)
        out[stage] = c
    return out


def jobs_since(results: Path, since: float) -> dict[str, int]:
    """Jobs per stage whose benchmark file (:func:`benchmark_files`) was written at or
    after ``since`` (epoch seconds): the jobs of a run started then."""
    counts = {
        stage: sum(f.stat().st_mtime >= since for f in files) for stage, files in benchmark_files(results).items()
    }
    return {stage: n for stage, n in counts.items() if n}


def per_aoi_walls_since(results: Path, since: float) -> dict[str, list[float]]:
    """Walls (s) of the per-AOI jobs (``<results>/benchmarks/<stage>/<aoi>.tsv``: the
    search, the gap-fill, the NetCDF; not the batch jobs one folder deeper) whose
    benchmark file was written at or after ``since``, by stage."""
    out: dict[str, list[float]] = {}
    for stage, files in benchmark_files(results).items():
        for f in files:
            if len(f.relative_to(results / "benchmarks").parts) == 2 and f.stat().st_mtime >= since:
                with open(f) as fh:
                    out.setdefault(stage, []).extend(float(r["s"]) for r in csv.DictReader(fh, delimiter="\t"))
    return dict(sorted(out.items()))


def rerun_series_bound(
    noop_s: float, walls: dict[str, list[float]], stages: dict, full_s: float, process_s: float = 0.0
) -> dict:
    """What one new date costs, with today's per-AOI stages, even with no process per
    job: Snakemake's own (the no-op rerun's wall) and the work of the rerun's per-AOI
    jobs (``walls``, from :func:`per_aoi_walls_since`), each job's wall less its
    stage's imports and less ``process_s`` (a process's start and Snakemake's script
    preamble, :func:`process_start_seconds`). These jobs work per AOI whatever one
    date adds (the search redoes the whole series; the gap-fill and the NetCDF update
    their outputs from what the new date can reach), so no change to the per-date or
    per-batch stages takes a rerun below this. A stage without an import
    figure counts for nothing (the bound stays a lower bound)."""
    work, missing = {}, []
    for stage, ws in walls.items():
        imp = (stages.get(stage) or {}).get("import_s")
        if imp is None:
            missing.append(stage)
            continue
        work[stage] = round(sum(max(w - imp - process_s, 0.0) for w in ws), 2)
    seconds = noop_s + sum(work.values())
    return {
        "seconds": round(seconds, 2),
        "share_of_full": ratio(seconds, full_s),
        "work_s": work,
        "process_s": process_s,
        "without_import_figure": sorted(missing),
    }


def rerun_floor(noop_s: float, jobs: dict[str, int], stages: dict, full_s: float) -> dict:
    """What a rerun of ``jobs`` would cost if its jobs did no work: Snakemake's own
    (the no-op rerun's wall) and, for each job, its stage's imports (``stages``, as
    :func:`stage_costs` measures them). Stages without an import figure are listed
    and count for nothing (the floor stays a lower bound)."""
    missing = sorted(s for s in jobs if (stages.get(s) or {}).get("import_s") is None)
    seconds = noop_s + sum(n * stages[s]["import_s"] for s, n in jobs.items() if s not in missing)
    return {
        "seconds": round(seconds, 2),
        "share_of_full": ratio(seconds, full_s),
        "jobs": dict(jobs),
        "without_import_figure": missing,
    }


def child_json(script: str, args: list[str]) -> dict | None:
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        p = subprocess.run(
            [sys.executable, str(ROOT / "benchmarks" / script), *args, "--json", f.name],
            cwd=ROOT,
            env=child_env(),
            capture_output=True,
            text=True,
        )
        if p.returncode != 0:
            print(f"{script} failed:\n{p.stderr[-2000:]}", file=sys.stderr)
            return None
        return json.loads(Path(f.name).read_text())


def netcdf_of(results: Path) -> Path | None:
    found = sorted(results.glob("*/*.nc"))
    return found[0] if found else None


def aoi_of(results: Path) -> str | None:
    found = sorted(results.glob("*/manifest.csv"))
    return found[0].parent.name if found else None


# --------------------------------------------------------------------------- one transport
def measure(
    transport: str,
    catalog: Path,
    period: tuple[str, str],
    work: Path,
    runner: Runner,
    link: dict,
    incremental: bool = True,
    loaders: tuple[str, ...] = (),
    pairs: int = 1,
) -> dict:
    """Original, workflow, no-op and one-new-date runs on one transport; with
    ``loaders``, the workflow again with each of these ``tiles.loader`` (a setting,
    measured beside the default); on local files, ``pairs`` full runs of each side
    (:func:`more_pairs`)."""
    start, end = period
    tdir = work / transport
    tdir.mkdir(parents=True, exist_ok=True)
    local_items = served_items(catalog, start, end)
    files = asset_paths(local_items)
    out: dict = {"items": len(local_items), "dates": len({item_day(it) for it in local_items})}
    cog = None
    if transport == "network":
        cog = CogServer(catalog, tdir / "requests.jsonl", link["delay_ms"], link["bandwidth_mbit"])
    try:
        items = served_items(catalog, start, end, href_base=cog.url if cog else None)
        items_path, coll_path = write_inputs(tdir, catalog, items)
        stac = LocalStacApi("rustac", items_path, coll_path, tdir / "rustac.log")
        try:
            out["cog_server"] = {"url": cog.url, "log": str(cog.log)} if cog else None
            # the workflow's full run
            out["warm_page_cache"] = warm_page_cache(files)
            log(f"{transport}: workflow, full run")
            full = tdir / "full"
            wf = runner.workflow(f"{transport}-workflow", stac.url, full, start, end)
            wf["traffic"] = traffic(cog, wf)
            out["workflow"] = wf
            # the original
            warm_page_cache(files)
            log(f"{transport}: original (sits 0.8.0)")
            orig = runner.original(f"{transport}-original", stac.url, catalog, start, end, netcdf_of(full))
            orig["traffic"] = traffic(cog, orig)
            out["original"] = orig
            if transport == "local":
                out["pairs"] = more_pairs(transport, stac.url, catalog, tdir, runner, files, wf, orig, period, pairs)
            # no-op rerun
            log(f"{transport}: workflow, no-op rerun")
            noop = runner.workflow(f"{transport}-noop", stac.url, full, start, end)
            noop["traffic"] = traffic(cog, noop)
            noop["share_of_full"] = ratio(noop["wall_s"], wf["wall_s"])
            out["noop"] = noop
            out["stages"] = stage_costs(full, imports=transport == "local")
            out["loaders"] = {}
            for name in loaders:
                warm_page_cache(files)
                log(f"{transport}: workflow, tiles.loader: {name}")
                v = runner.workflow(
                    f"{transport}-loader-{name}", stac.url, tdir / f"loader-{name}", start, end,
                    setting={"tiles": {"loader": name}},
                )  # fmt: skip
                v["traffic"] = traffic(cog, v)
                out["loaders"][name] = v
            if transport == "local":
                aoi = aoi_of(full)
                out["read_bound"] = child_json("read_bound.py", ["--results", str(full), "--aoi", aoi]) if aoi else None
            if incremental:
                out["one_new_date"] = one_new_date(
                    transport, stac.url, work, runner, cog, local_items, items, wf, period
                )
                if transport == "local":  # the stages' imports are measured on local files
                    out["one_new_date"]["floor"] = rerun_floor(
                        noop["wall_s"], out["one_new_date"]["jobs"], out["stages"], wf["wall_s"]
                    )
                    out["one_new_date"]["series_bound"] = rerun_series_bound(
                        noop["wall_s"],
                        out["one_new_date"]["per_aoi_walls"],
                        out["stages"],
                        wf["wall_s"],
                        process_start_seconds() or 0.0,
                    )
        finally:
            stac.stop()
    finally:
        if cog:
            cog.stop()
    return out


def more_pairs(transport, stac_url, catalog, tdir, runner, files, wf, orig, period, pairs: int) -> dict:
    """The full run of each side ``pairs`` times in all (the first pair is the one
    above, workflow first), the order alternating from pair to pair (the original
    first in the 2nd, 4th, ...), each workflow run into a fresh results folder. This
    host's speed drifts within a bench by more than the margin of the local target,
    so its verdict uses the median of the pairs' ratios, not one pair's."""
    start, end = period
    runs = [{"workflow_s": wf["wall_s"], "original_s": orig["wall_s"]}]
    for k in range(2, pairs + 1):
        pair = {}
        for side in ("original", "workflow") if k % 2 == 0 else ("workflow", "original"):
            warm_page_cache(files)
            log(f"{transport}: pair {k} of {pairs}, {side}")
            if side == "workflow":
                run = runner.workflow(f"{transport}-workflow-{k}", stac_url, tdir / f"full-{k}", start, end)
            else:
                run = runner.original(f"{transport}-original-{k}", stac_url, catalog, start, end, None)
            pair[f"{side}_s"] = run["wall_s"]
        runs.append(pair)
    for r in runs:
        r["ratio"] = ratio(r["workflow_s"], r["original_s"])
    return {"runs": runs, "median_ratio": statistics.median(r["ratio"] for r in runs)}


def one_new_date(transport, stac_url, work, runner, cog, local_items, items, full_run, period) -> dict:
    """A run stopped before the last acquisition date, then extended to the period's
    end: the rerun's wall against the full run's, its bytes against the date's."""
    start, end = period
    last = max(item_day(it) for it in local_items)
    inc = work / transport / "incremental"
    files = asset_paths(local_items)
    warm_page_cache(files)
    log(f"{transport}: workflow up to {last} (exclusive)")
    base = runner.workflow(f"{transport}-before-{last}", stac_url, inc, start, last)
    warm_page_cache(files)
    log(f"{transport}: workflow extended to {end}")
    started = time.time()
    rerun = runner.workflow(f"{transport}-one-new-date", stac_url, inc, start, end)
    rerun["jobs"] = jobs_since(inc, started)
    rerun["per_aoi_walls"] = per_aoi_walls_since(inc, started)
    rerun["date"] = last
    rerun["items_of_date"] = sum(1 for it in local_items if item_day(it) == last)
    rerun["base_wall_s"] = base["wall_s"]
    rerun["share_of_full"] = ratio(rerun["wall_s"], full_run["wall_s"])
    if cog is not None:
        paths = {urlsplit(a["href"]).path for it in items if item_day(it) == last for a in it["assets"].values()}
        rerun["traffic"] = traffic(cog, rerun)
        rerun["date_traffic_in_full_run"] = traffic(cog, full_run, only=paths)
        rerun["bytes_vs_date"] = ratio(rerun["traffic"]["bytes"], rerun["date_traffic_in_full_run"]["bytes"], 2)
    return rerun


# --------------------------------------------------------------------------- report
def _s(v, nd=1):
    return "" if v is None else f"{v:.{nd}f}"


def _mb(t: dict | None) -> str:
    return "" if not t else f"{t['bytes'] / 1e6:.1f}"


def _req(t: dict | None) -> str:
    return "" if not t else str(t["requests"])


TARGETS = {"local": (1.0, 0.5), "network": (0.5, 0.25)}


def _bound_row(transport: str, what: str, bound: dict, note: str) -> tuple:
    """A table row of a bound on the one-new-date rerun (its floor, its series bound)."""
    if bound["without_import_figure"]:
        note += f"; no import figure for {', '.join(bound['without_import_figure'])}"
    return (transport, f"workflow, one new date: {what}", _s(bound["seconds"]), "", "", note, "")


def table(fig: dict) -> str:
    """The figures as one Markdown table (what docs/performance.md records)."""
    rows = []
    for transport in TRANSPORTS:
        m = fig["transports"].get(transport)
        if not m:
            continue
        o, w = m["original"], m["workflow"]
        ot, wt = o.get("traffic"), w.get("traffic")
        rows.append(
            (transport, "original (sits 0.8.0): subprocess [sum of steps]",
             f"{_s(o['wall_s'])} [{_s(o['steps_s'])}]", _req(ot), _mb(ot), "", "")
        )  # fmt: skip
        target, stretch = TARGETS[transport]
        rw = ratio(w["wall_s"], o["wall_s"])
        note = f"wall {rw:.2f} x the original's ({ratio(w['wall_s'], o['steps_s']):.2f} x its steps)"
        verdicts = f"wall <= {target} (stretch {stretch}): {verdict(rw, target, stretch)}"
        if wt and ot:
            rr, rb = ratio(wt["requests"], ot["requests"]), ratio(wt["bytes"], ot["bytes"])
            note += f"; requests {rr:.3f} x; bytes {rb:.3f} x"
            verdicts += f"; requests <= 1: {verdict(rr, 1.0)}; bytes <= 1: {verdict(rb, 1.0)}"
        pairs = (m.get("pairs") or {}).get("runs") or []
        if len(pairs) > 1:  # the verdict on the wall goes to the pairs' median (next row)
            verdicts = verdicts.partition("; ")[2]
        rows.append((transport, "workflow, shipped defaults", _s(w["wall_s"]), _req(wt), _mb(wt), note, verdicts))
        if len(pairs) > 1:
            med = m["pairs"]["median_ratio"]
            rows.append(
                (transport, f"{len(pairs)} pairs of full runs, the order alternating (workflow / original s)",
                 ", ".join(f"{_s(r['workflow_s'])} / {_s(r['original_s'])}" for r in pairs), "", "",
                 "wall ratios " + ", ".join(f"{r['ratio']:.2f}" for r in pairs) + f": median {med:.2f}",
                 f"median wall <= {target} (stretch {stretch}): {verdict(med, target, stretch)}")
            )  # fmt: skip
        for name, v in (m.get("loaders") or {}).items():
            vt = v.get("traffic")
            note = f"wall {ratio(v['wall_s'], o['wall_s']):.2f} x the original's, {ratio(v['wall_s'], w['wall_s']):.2f} x the default's"
            if vt and wt:
                note += f"; requests {ratio(vt['requests'], wt['requests']):.2f} x, bytes {ratio(vt['bytes'], wt['bytes']):.2f} x the default's"  # fmt: skip
            rows.append(
                (transport, f"workflow, `tiles.loader: {name}` (a setting)", _s(v["wall_s"]), _req(vt), _mb(vt), note, "")
            )  # fmt: skip
        n = m["noop"]
        rows.append(
            (transport, "workflow, no-op rerun", _s(n["wall_s"]), _req(n.get("traffic")), _mb(n.get("traffic")),
             f"{n['share_of_full']:.3f} of the full run", "")
        )  # fmt: skip
        d = m.get("one_new_date")
        if d:
            note = f"{d['share_of_full']:.3f} of the full run"
            verdicts = f"< 0.15: {verdict(d['share_of_full'], 0.15, strict=True)}"
            if d.get("traffic"):
                dd = d["date_traffic_in_full_run"]
                note += f"; bytes {d['bytes_vs_date']:.2f} x the date's in the full run ({dd['bytes'] / 1e6:.2f} MB, {dd['requests']} requests)"  # fmt: skip
                verdicts += f"; bytes <= 2 x: {verdict(d['bytes_vs_date'], 2.0)}"
            rows.append(
                (transport, f"workflow, one new date ({d['date']}, {d['items_of_date']} item(s))", _s(d["wall_s"]),
                 _req(d.get("traffic")), _mb(d.get("traffic")), note, verdicts)
            )  # fmt: skip
            f = d.get("floor")
            if f:
                n = sum(f["jobs"].values())
                note = (
                    f"{f['share_of_full']:.3f} of the full run: the no-op rerun and the imports of the {n} jobs "
                    f"it reran ({', '.join(f'{s} {k}' for s, k in f['jobs'].items())}), with no work done"
                )
                rows.append(_bound_row(transport, "its floor (no work, one process per job)", f, note))
            b = d.get("series_bound")
            if b:
                work = ", ".join(f"{s} {w:.2f} s" for s, w in b["work_s"].items())
                note = (
                    f"{b['share_of_full']:.3f} of the full run: the no-op rerun and the work (wall less imports and "
                    f"{b['process_s']:.2f} s of process start) of the rerun's per-AOI jobs ({work}): the search "
                    "redoes the whole series, the gap-fill and the NetCDF update their outputs from the new date's reach; "
                    "no per-date or per-batch change, and no fewer processes, takes the rerun below this"
                )
                rows.append(_bound_row(transport, "Snakemake's own and the per-AOI stages' work", b, note))
    loc = fig["transports"].get("local") or {}
    rb = ((loc.get("read_bound") or {}).get("plans", {}).get("odc", {}).get("single_thread", {}) or {}).get("seconds")
    if rb:
        rows.append(
            ("local", "read bound (benchmarks/read_bound.py, odc plan, 1 thread)", _s(rb, 2), "", "",
             f"workflow / bound = {ratio(loc['workflow']['wall_s'], rb, 1)}; original / bound = {ratio(loc['original']['wall_s'], rb, 1)}", "")
        )  # fmt: skip
    out = [
        "| transport | run | wall (s) | requests | MB fetched | workflow / original, or share | target |",
        "|---|---|---:|---:|---:|---|---|",
    ]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    stages = {t: (fig["transports"].get(t) or {}).get("stages") or {} for t in TRANSPORTS}
    names = list(dict.fromkeys([*stages["local"], *stages["network"]]))
    if names:
        out += [
            "",
            "| stage | jobs | mean wall, local (s) | mean wall, network (s) | max RSS (MB) | import (s) | import share |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for name in names:
            lc, nc = stages["local"].get(name, {}), stages["network"].get(name, {})
            c = lc or nc
            out.append(
                f"| {name} | {c.get('jobs', '')} | {_s(lc.get('mean_wall_s'), 2)} | {_s(nc.get('mean_wall_s'), 2)} | "
                f"{c.get('max_rss_mb') or ''} | {_s(lc.get('import_s'), 2)} | {_s(lc.get('import_share'), 2)} |"
            )
    out += [""] + details(fig)
    return "\n".join(out)


def details(fig: dict) -> list[str]:
    """What each side asked of the COG server, and whether both cubes agree."""
    lines = []
    for transport in TRANSPORTS:
        m = fig["transports"].get(transport)
        if not m:
            continue
        for side in ("workflow", "original"):
            t = m[side].get("traffic")
            if t:
                lines.append(
                    f"- {transport}, {side}: {t['requests']} requests on {t['files']} files: {t['head_requests']} HEAD, "
                    f"{t['get_requests']} GET of {t['mean_get_bytes']} bytes on average ({t['header_reads']} from byte 0, "
                    f"asking {{bytes: GETs}} {t['header_read_asked']}; {t['multi_range_requests']} multi-range; "
                    f"{t['whole_file_gets']} whole files), statuses {t['by_status']}"
                )
        c = m["original"].get("comparison")
        if c:
            lines.append(
                f"- {transport}: the original's cube and the workflow's: same grid {c['grid_identical']}, "
                f"{c['dates']['common']} dates in common of {c['dates']['sits']} / {c['dates']['ours']}, "
                f"masks identical on {c['masks_identical_pixels'] * 100:.2f} % of (date, pixel)"
            )
    return lines


def preamble(fig: dict) -> str:
    lines = [
        f"machine: {fig['machine']}; load average {fig['loadavg_start']} at the start, {fig['loadavg_end']} at the end"
    ]
    lines.append(
        f"period {fig['period'][0]}..{fig['period'][1]}: {fig['items']} items with eo:cloud_cover < 20 "
        f"({fig['dates']} UTC dates), the same rustac STAC API for both sides"
    )
    if "network" in fig["transports"]:
        ln = fig["link"]
        lines.append(
            f"network: benchmarks/cog_server.py on 127.0.0.1, {ln['delay_ms']:g} ms per request, "
            f"{ln['bandwidth_mbit']:g} Mbit/s per response; requests and body bytes from its log, each run its own window"
        )
    lines.append("cache: " + fig["cache"])
    lines.append(
        "workflow: `snakemake --cores all --configfile <override.yaml>` from the repository root (profiles/default), "
        "the override setting only stac.catalog, dates, results, figures.enabled: false"
    )
    lines.append("original: sits 0.8.0, the tutorial's steps (benchmarks/original_sits.py --url, sits_driver.py)")
    return "\n".join(lines)


# --------------------------------------------------------------------------- setup
def ensure_demo_catalog(work: Path, catalog: Path = DEMO_CATALOG, demo: dict | None = None) -> float | None:
    """Generate the demo catalog if it is missing: the workflow's own demo_catalog rule
    (as ``make demo`` runs it), asked for the catalog file alone, so no search runs;
    outside every timing."""
    if (catalog / "catalog.json").exists():
        return None
    log(f"generating the demo catalog {catalog} (once, not timed)")
    over = {"results": str(work / "demo-gen"), "figures": {"enabled": False}}
    if demo:
        over["demo"] = demo
    cfg = work / "demo-gen.yaml"
    cfg.write_text(yaml.safe_dump(over))
    t0 = time.perf_counter()
    target = f"{demo['path']}/catalog.json" if demo else str(catalog.relative_to(ROOT) / "catalog.json")
    cmd = [
        str(BIN / "snakemake"),
        target,
        "--cores",
        "all",
        "--configfile",
        str(ROOT / "config" / "demo.yaml"),
        str(cfg),
    ]
    p = subprocess.run(cmd, cwd=ROOT, env=child_env(), capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"generating the demo catalog failed:\n{p.stderr[-3000:]}")
    return round(time.perf_counter() - t0, 1)


def warm_up(catalog: Path, work: Path, runner: Runner) -> dict:
    """Each side once, untimed, on local files over WARMUP (the same for both)."""
    wdir = work / "warm-up"
    wdir.mkdir(parents=True, exist_ok=True)
    items = served_items(catalog, *WARMUP)
    items_path, coll_path = write_inputs(wdir, catalog, items)
    stac = LocalStacApi("rustac", items_path, coll_path, wdir / "rustac.log")
    try:
        log(f"warm-up: each side once over {WARMUP[0]}..{WARMUP[1]} (not timed)")
        w = runner.workflow("warm-up-workflow", stac.url, wdir / "results", *WARMUP)
        o = runner.original("warm-up-original", stac.url, catalog, *WARMUP, None)
    finally:
        stac.stop()
    return {"period": list(WARMUP), "workflow_s": w["wall_s"], "original_s": o["wall_s"]}


def compare(
    catalog: Path, period: tuple[str, str], work: Path, transports, link: dict, incremental: bool, loaders=(), pairs=1
) -> dict:
    runner = Runner(work)
    items = served_items(catalog, *period)
    fig: dict = {
        "machine": machine(),
        "period": list(period),
        "catalog": str(catalog),
        "items": len(items),
        "dates": len({item_day(it) for it in items}),
        "link": link,
        "loadavg_start": loadavg(),
        "transports": {},
    }
    fig["warm_up"] = warm_up(catalog, work, runner)
    fig["cache"] = CACHE_NOTE.format(w0=WARMUP[0], w1=WARMUP[1])
    for t in transports:
        fig["transports"][t] = measure(t, catalog, period, work, runner, link, incremental, tuple(loaders), pairs)
    fig["loadavg_end"] = loadavg()
    return fig


ORIGINAL_SCALE = ("2016-01-01", "2025-01-01")


def original_scale(work: Path, link: dict, period: tuple[str, str] = ORIGINAL_SCALE, pairs: int = 1) -> dict:
    """The tutorial's whole period on a demo catalog of it generated offline
    (outside the timings), on local files, with the one-new-date runs (a monitoring
    user's rerun: nine years done, one acquisition added)."""
    big = work / f"catalog-{period[0][:4]}-{period[1][:4]}"
    demo = {"path": str(big), "start": period[0], "end": period[1], "seed": 0}
    gen = ensure_demo_catalog(work, big, demo)
    fig = compare(big, period, work / "original-scale", ["local"], link, incremental=True, pairs=pairs)
    fig["catalog_generation_s"] = gen
    fig["catalog_mb"] = round(sum(f.stat().st_size for f in big.rglob("*") if f.is_file()) / 1e6)
    return fig


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", help="write every figure here")
    ap.add_argument("--keep", help="keep the runs' results, logs and request logs in this folder")
    ap.add_argument("--delay-ms", type=float, default=40.0, help="network: delay per request (default 40)")
    ap.add_argument("--bandwidth-mbit", type=float, default=200.0, help="network: cap per response (default 200)")
    ap.add_argument("--transports", default=",".join(TRANSPORTS), help="local,network (default both)")
    ap.add_argument(
        "--loaders",
        default="stackstac",
        help="also run the workflow with each of these tiles.loader (comma-separated; '' for none; default stackstac)",
    )
    ap.add_argument(
        "--pairs",
        type=int,
        default=3,
        help="full runs of each side on local files, alternating which goes first; the verdict uses the median "
        "ratio (default 3)",
    )
    ap.add_argument(
        "--dates",
        nargs=2,
        metavar=("START", "END"),
        default=list(PERIOD),
        help="the demo period (default 2021-01-01 2023-01-01; e.g. 2022-01-01 2023-01-01 for one year, "
        "docs/performance.md)",
    )
    ap.add_argument("--original-scale", action="store_true", help="also 2016-01-01..2025-01-01 (a 1.6 GB catalog)")
    ap.add_argument("--skip-demo", action="store_true", help="only the original-scale run (with --original-scale)")
    a = ap.parse_args(argv)
    transports = [t for t in a.transports.split(",") if t]
    if not set(transports) <= set(TRANSPORTS):
        ap.error(f"--transports: choose among {', '.join(TRANSPORTS)}")
    if a.pairs < 1:
        ap.error("--pairs: at least 1")
    link = {"delay_ms": a.delay_ms, "bandwidth_mbit": a.bandwidth_mbit}
    fig: dict = {"machine": machine(), "slurm_client_delay_s": slurm_client_delay()}
    print(f"machine: {fig['machine']}")
    if (fig["slurm_client_delay_s"] or 0) > 1:
        print(
            f"WARNING: 'scontrol show config' takes {fig['slurm_client_delay_s']:.1f} s (a slurm.conf without a "
            "controller): every snakemake command pays it (bash cluster/slurm/stop.sh puts the conf aside)",
            file=sys.stderr,
        )
    work = Path(a.keep).resolve() if a.keep else Path(tempfile.mkdtemp(prefix="s2ts-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        if not a.skip_demo:
            fig["demo_catalog_generation_s"] = ensure_demo_catalog(work)
            fig["demo"] = compare(
                DEMO_CATALOG, tuple(a.dates), work / "demo", transports, link, incremental=True,
                loaders=[x for x in a.loaders.split(",") if x], pairs=a.pairs,
            )  # fmt: skip
            print(preamble(fig["demo"]))
            print()
            print(table(fig["demo"]))
        if a.original_scale:
            fig["original_scale"] = o = original_scale(work, link, pairs=a.pairs)
            print(f"\noriginal scale (catalog {o['catalog_mb']} MB, generated in {o['catalog_generation_s']} s):")
            print(preamble(o))
            print()
            print(table(o))
    finally:
        if a.json:
            Path(a.json).write_text(json.dumps(fig, indent=1, default=str))
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
    return fig


if __name__ == "__main__":
    main()
