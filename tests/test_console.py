"""The console of a real run with the default profile (issue 14): AOIs without data
are named with their search and counts, and a run where no AOI has data fails;
progress per stage instead of Snakemake's job blocks; every product listed at the
end; Ctrl-C is quiet and the same command resumes."""

import json
import logging
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, VENV_BIN, ctrl_c_as_in_a_terminal

from s2ts.console import ConsoleFilter

BANC = json.loads((ROOT / "resources" / "banc_arguin.geojson").read_text())
SHORT = {"dates": {"start": "2021-01-01", "end": "2021-03-01"}}


def polygon(ring):
    return {"type": "Polygon", "coordinates": [ring]}


def banc_ring():
    geom = BANC["features"][0]["geometry"]
    return geom["coordinates"][0] if geom["type"] == "Polygon" else geom["coordinates"][0][0]


def write_aois(path: Path, features: dict) -> Path:
    fc = {
        "type": "FeatureCollection",
        "features": [{"type": "Feature", "properties": {"id": k}, "geometry": g} for k, g in features.items()],
    }
    path.write_text(json.dumps(fc))
    return path


def command(tmp_path, overrides):
    over = tmp_path / "over.yaml"
    over.write_text(yaml.safe_dump({"results": str(tmp_path / "results"), **overrides}))
    return [str(VENV_BIN / "snakemake"), "--cores", "2", "--configfile", "config/demo.yaml", str(over)]


def run(tmp_path, overrides, env=None):
    """`snakemake` as a user types it: the default profile, stderr as on a terminal."""
    return subprocess.run(
        command(tmp_path, overrides),
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": f"{VENV_BIN}:{os.environ['PATH']}", **(env or {})},
    )


def no_traceback(text):
    return "Traceback" not in text and 'File "' not in text and "Exception" not in text


FAR = polygon([[-4.0, 40.0], [-3.9, 40.0], [-3.9, 40.1], [-4.0, 40.1], [-4.0, 40.0]])  # near Madrid


@pytest.mark.parametrize(
    "case, overrides, check",
    [
        (
            "outside",
            {"aoi": FAR},
            "the polygon is outside the catalog's footprint: the catalog covers only lon -1.3041",
        ),
        (
            "swapped",
            {"aoi": polygon([[y, x] for x, y in banc_ring()])},
            "the polygon's coordinates look swapped",
        ),
        ("period", {"dates": {"start": "2010-01-01", "end": "2010-03-01"}}, "the catalog has items from 2021-01-03"),
        ("cloud", {"stac": {"max_cloud_cover": 0}}, "stac.max_cloud_cover is 0: the filter is eo:cloud_cover < 0"),
    ],
)
def test_no_data_anywhere_fails_with_the_search_and_counts(tmp_path, case, overrides, check):
    over = SHORT | {k: v for k, v in overrides.items() if k != "aoi"}
    if "aoi" in overrides:
        over["aoi"] = {"path": str(write_aois(tmp_path / "aoi.geojson", {"x": overrides["aoi"]}))}
    aoi = "x" if "aoi" in overrides else "1"
    proc = run(tmp_path, over)
    err = proc.stderr
    assert proc.returncode != 0, err[-3000:]
    start, end = over["dates"]["start"], over["dates"]["end"]
    cloud = over.get("stac", {}).get("max_cloud_cover", 20)
    # the live warning of the search job, then the summary naming AOI, search and counts
    assert f"WARNING (stac_manifest aoi={aoi}): no sentinel-2-l2a item of" in err
    info = json.loads((tmp_path / "results" / aoi / "manifest.json").read_text())
    bbox = ", ".join(f"{v:.5f}" for v in info["search"]["bbox_4326"])
    assert (
        f"WARNING: AOI '{aoi}' has no data: the search of sentinel-2-l2a in {info['catalog']} over bbox [{bbox}] "
        f"(lon/lat), from {start} to {end} (exclusive), eo:cloud_cover < {cloud} got 312 item(s) from the "
        "catalog, 0 matching" in err
    )
    assert f"    check: {check}" in err
    assert f"ERROR: no AOI has data ('{aoi}')" in err
    assert no_traceback(err)
    assert not list((tmp_path / "results").glob("*/*.nc"))
    if case == "cloud":  # the same command again: the same answer, not "nothing to be done"
        again = run(tmp_path, over)
        assert again.returncode != 0 and f"ERROR: no AOI has data ('{aoi}')" in again.stderr
        assert "Nothing to be done" not in again.stderr and no_traceback(again.stderr)


@pytest.fixture(scope="module")
def mixed_run(tmp_path_factory):
    """The demo polygon and one outside the catalog, two months: one AOI has data."""
    tmp = tmp_path_factory.mktemp("mixed")
    aois = write_aois(tmp / "aois.geojson", {"banc": polygon(banc_ring()), "far": FAR})
    proc = run(tmp, SHORT | {"aoi": {"path": str(aois)}})
    return tmp / "results", proc


def test_some_aois_without_data_are_summarised_and_the_others_run(mixed_run):
    results, proc = mixed_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    err = proc.stderr
    assert "WARNING (stac_manifest aoi=far): no sentinel-2-l2a item" in err
    assert (
        "WARNING: AOI 'far' has no data" in err and "    check: the polygon is outside the catalog's footprint" in err
    )
    assert "1 of 2 AOI(s) have no data: 'far' (see above); the others ran." in err
    assert (results / "banc" / "banc_2021-01-01_2021-03-01.nc").exists()
    assert not list((results / "far").glob("*.nc"))


def test_console_shows_stage_progress_not_job_blocks(mixed_run):
    results, proc = mixed_run
    err = proc.stderr
    assert not re.search(r"^(local)?(rule|checkpoint) \w+:", err, re.M)  # no job blocks
    assert "Select jobs to execute" not in err and "Finished jobid" not in err
    progress = re.findall(r"^\[(\d+)/(\d+) steps, (\d+)%\] (.*)$", err, re.M)
    assert len(progress) <= 25
    done, total, pct, stages = progress[-1]
    assert done == total and pct == "100"
    counts = {m[0]: (m[1], m[2]) for m in re.findall(r"(\w+) (\d+)/(\d+)", stages)}
    # each stage's count is the jobs it ran: one benchmark file per job (independent of the console)
    bench = results / "benchmarks"
    for stage in ("tile", "offset_fix", "mask", "gapfill", "netcdf", "figures", "stac_manifest"):
        n = len(list((bench / stage).rglob("*.tsv")))
        assert counts[stage] == (str(n), str(n)), (stage, counts[stage], n)
    assert len(err.splitlines()) < 60, err


def test_summary_lists_every_product_that_exists(mixed_run):
    results, proc = mixed_run
    listed = set(re.findall(r"^    (?:NetCDF|CSV|figure)\s+(\S+)$", proc.stderr, re.M))
    aois = [d for d in results.iterdir() if (d / "manifest.json").exists()]
    on_disk = {str(p) for d in aois for p in [*d.glob("*.nc"), *d.glob("*.csv.gz"), *(d / "figures").glob("*")]}
    assert listed == on_disk and len(on_disk) == 7  # 1 NetCDF + 6 figures of 'banc'
    assert f"  timings  {results / 'benchmarks' / 'summary.html'}" in proc.stderr
    assert f"  report   not made: snakemake --report {results / 'report.html'}" in proc.stderr
    # the command make demo ends with lists the same, and the report once made
    (results / "report.html").write_text("<html></html>")
    cli = subprocess.run(
        [str(VENV_BIN / "python"), "-m", "s2ts.outputs", "config/demo.yaml", str(results.parent / "over.yaml")],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert cli.returncode == 0, cli.stderr
    assert set(re.findall(r"^    (?:NetCDF|CSV|figure)\s+(\S+)$", cli.stdout, re.M)) == on_disk
    assert f"  report   {results / 'report.html'}" in cli.stdout
    assert "AOI far: 0 items on 0 dates: no data" in cli.stdout


@pytest.mark.parametrize("batch", ["date", "auto"])
def test_ctrl_c_is_quiet_and_the_same_command_resumes(tmp_path, batch):
    """Ctrl-C during the tile jobs: one per date (``batch: date``), or the run's one
    tile job (``auto``: a year holding the 18 dates of four months), which reads in
    two worker processes (2 cores): interrupted while they read. Quiet, no process
    left, and the same command completes the run."""
    end = {"date": "2021-04-01", "auto": "2021-05-01"}[batch]
    cmd = command(tmp_path, {"dates": {"start": "2021-01-01", "end": end}, "tiles": {"batch": batch}})
    env = {**os.environ, "PATH": f"{VENV_BIN}:{os.environ['PATH']}"}
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env=env,
        preexec_fn=ctrl_c_as_in_a_terminal,
    )
    logs = tmp_path / "results" / "logs" / "tile" / "1"

    def started():
        if batch == "date":
            return len(list(logs.glob("*.log"))) >= 2
        log = logs / "2021.log"
        return log.exists() and log.read_text().count(" reading ") == 2  # both workers are reading

    t0 = time.time()
    while not started() and time.time() - t0 < 180 and proc.poll() is None:
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    if batch == "auto":
        text = (logs / "2021.log").read_text()
        assert "18 to read; 2 thread(s)" in text and "2 worker processes: 9/9 dates each" in text
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the whole foreground process group
    out, err = proc.communicate(timeout=180)
    time.sleep(1)
    left = subprocess.run(["pgrep", "-s", str(proc.pid)], capture_output=True, text=True).stdout.split()
    assert left == [], f"processes of the run left after Ctrl-C: {left}"
    assert proc.returncode != 0, err
    assert no_traceback(err) and "meta_path" not in err and "Error" not in err, err
    after = err.split("Terminating processes on user request")[1].splitlines()[1:]
    assert after[0].startswith("Interrupted. Completed outputs are kept") and len(after) <= 2, err
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (tmp_path / "results" / "1" / f"1_2021-01-01_{end}.nc").exists()


def record(msg, level=logging.INFO, **extra):
    rec = logging.LogRecord("snakemake.logging", level, "x", 1, msg, None, None)
    rec.__dict__.update(extra)
    return rec


JOB_130 = (
    'RuleException:\nCalledProcessError in file "workflow/rules/tile.smk", line 24:\n'
    "Command 'set -euo pipefail;  python tmp.tile.py' returned non-zero exit status 130."
)


@pytest.mark.parametrize("order", ["notice first", "job first"])
def test_after_ctrl_c_only_snakemakes_notice_and_ours_are_shown(order):
    """The jobs stopped by Ctrl-C fail, and Snakemake may report one of them before
    its own "Terminating" notice (seen once in the end-to-end test): either way the
    console shows the notice and nothing about the killed jobs."""
    console = ConsoleFilter(compact=True)
    notice = record("Terminating processes on user request, this might take some time.")
    records = [notice, record(JOB_130, logging.ERROR)]
    if order == "job first":
        records.reverse()
    records += [
        record("Removing output files of failed job tile since they might be corrupted:\nresults/1/tile/2021-03"),
        record(
            JOB_130.replace("130", "-2").replace("returned non-zero exit status -2", "died with <Signals.SIGINT: 2>."),
            logging.ERROR,
        ),
        record("Error in rule tile", logging.ERROR, event="job_error"),
        record("Complete log(s): .snakemake/log/x.log"),
        record("WorkflowError:\nAt least one job did not complete successfully.", logging.ERROR),
        record("Elapsed time: 0:00:02"),
    ]
    shown = [r.msg for r in records if console.filter(r)]
    assert shown == [notice.msg, "Elapsed time: 0:00:02"] and console.interrupted


def test_a_failing_job_is_still_shown():
    console = ConsoleFilter(compact=True)
    failure = record(JOB_130.replace("130", "1"), logging.ERROR)
    assert console.filter(failure) and not console.interrupted
    assert not console.filter(record("Select jobs to execute..."))  # a per-round line
