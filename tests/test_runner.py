"""The job side of the console (s2ts/runner.py): what a stage prints on the terminal
besides its log. Each case runs a job the way Snakemake's ``script:`` does, in its
own Python process whose stderr is the terminal."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    ROOT,
    ctrl_c_as_in_a_terminal,
    load_features,
    local_item,
    utm_grid,
    write_grid_json,
    write_items_file,
)

SECRET = "sig=SeCrEtSiGnAtUrE"

JOB = """
import json, logging, sys, types
sys.path.insert(0, {root!r})
from s2ts.runner import run

class Wildcards(dict):
    def __getattr__(self, k):
        return self[k]

spec = json.loads({spec!r})
smk = types.SimpleNamespace(
    rule=spec["rule"], log=[spec["log"]], threads=1,
    wildcards=Wildcards(spec["wildcards"]),
    input=types.SimpleNamespace(**spec.get("input", {{}})),
    output=types.SimpleNamespace(**spec.get("output", {{}})),
    params=types.SimpleNamespace(**spec.get("params", {{}})),
)
{body}
"""


def run_job(tmp_path, body: str, preexec_fn=None, **spec) -> subprocess.CompletedProcess:
    spec.setdefault("rule", "tile")
    spec.setdefault("wildcards", {"aoi": "a", "batch": "2024-06"})
    spec.setdefault("log", str(tmp_path / "job.log"))
    script = tmp_path / "job.py"
    script.write_text(JOB.format(root=str(ROOT), spec=json.dumps(spec), body=body))
    return subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, preexec_fn=preexec_fn
    )


def test_stage_warning_reaches_the_terminal_without_secrets(tmp_path):
    proc = run_job(
        tmp_path,
        f"""
def work(smk):
    logging.getLogger("tile").warning("read of https://acc.blob.core.windows.net/c/B04.tif?{SECRET}&se=x failed")
    logging.getLogger("rasterio").warning("a library's own warning")
    logging.getLogger("tile").info("an info line")
run(smk, work)
""",
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert lines == ["WARNING (tile aoi=a batch=2024-06): read of https://acc.blob.core.windows.net/c/B04.tif failed"]
    log = (tmp_path / "job.log").read_text()
    assert "a library's own warning" in log and "an info line" in log  # the log keeps everything
    assert "SeCrEt" not in proc.stderr + log


@pytest.fixture
def three_dates(tmp_path):
    """Three local items on three dates (real COGs), like tests/test_read_faults.py."""
    base = load_features("tile-13TDE-2024.json")[0]
    x0, y1, n = 450000.0, 4420000.0, 32
    files = []
    for k, day in enumerate(["2024-06-01", "2024-06-06", "2024-06-11"]):
        rng = np.random.default_rng(k)
        bands = {b: rng.integers(1000, 3000, (n, n), dtype=np.uint16) for b in ("B03", "B04", "B08")}
        it = local_item(
            base, tmp_path / "cog", bands, np.full((n // 2, n // 2), 4, np.uint8), x0, y1,
            item_id=f"S2B_MSIL2A_{day.replace('-', '')}T174629_R098_T13TDE_X", datetime=f"{day}T17:46:29Z",
        )  # fmt: skip
        files.append((write_items_file(tmp_path / f"{day}.json", [it]), it))
    grid = write_grid_json(tmp_path / "grid.json", utm_grid(32613, x0, y1, n, n, 10))
    return files, grid


def test_a_date_skipped_on_read_error_is_said_on_the_terminal(tmp_path, three_dates):
    """tiles.on_read_error: skip drops a date: the tile job says so on the terminal."""
    files, grid = three_dates
    dropped = files[1][1]
    Path(dropped["assets"]["B04"]["href"]).unlink()
    proc = run_job(
        tmp_path,
        "from s2ts.tile import tile_from_snakemake\nrun(smk, tile_from_snakemake)",
        input={"item_files": [str(f) for f, _ in files], "grid": str(grid)},
        output={"tiles": str(tmp_path / "tile" / "2024-06.json")},
        params={
            "bands": ["B03", "B04", "B08"],
            "mask_band": "SCL",
            "signing": "none",
            "on_read_error": "skip",
            "loader": "odc-stac",
            "overviews": "matching",
            "reads_in_flight": 8,
            "code": "c",
        },
    )
    assert proc.returncode == 0, proc.stderr
    (line,) = proc.stderr.splitlines()
    assert line.startswith(
        "WARNING (tile aoi=a batch=2024-06): date 2024-06-06 skipped (tiles.on_read_error: skip): "
        f"cannot read asset B04 of item {dropped['id']}"
    )
    assert sorted(p.name for p in (tmp_path / "tile" / "2024-06").glob("*.zarr")) == [
        "2024-06-01.zarr",
        "2024-06-11.zarr",
    ]
    # the batch's index lists the dates that have a store, not the skipped one
    assert json.loads((tmp_path / "tile" / "2024-06.json").read_text())["dates"] == ["2024-06-01", "2024-06-11"]


def test_a_stage_that_succeeds_ends_its_process_with_everything_flushed(tmp_path):
    """run() ends the process as soon as the stage succeeds (no interpreter teardown):
    status 0, nothing after run() executed, and what the stage printed or logged,
    buffered or not, is all there."""
    proc = run_job(
        tmp_path,
        f"""
def work(smk):
    print("to stdout, block-buffered in a pipe")
    logging.getLogger("tile").info("last log line")
    logging.getLogger("tile").warning("a warning for the terminal")
run(smk, work)
open({str(tmp_path / "after")!r}, "w").write("run() returned")
""",
    )
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "after").exists()
    assert proc.stdout == "to stdout, block-buffered in a pipe\n"
    assert proc.stderr == "WARNING (tile aoi=a batch=2024-06): a warning for the terminal\n"
    assert (tmp_path / "job.log").read_text().splitlines()[-1].endswith("WARNING tile: a warning for the terminal")
    assert "INFO tile: last log line" in (tmp_path / "job.log").read_text()


def test_interrupt_is_one_line_in_the_log_and_nothing_on_the_terminal(tmp_path):
    proc = run_job(
        tmp_path,
        """
def work(smk):
    logging.getLogger("tile").info("working")
    raise KeyboardInterrupt
run(smk, work)
""",
    )
    assert proc.returncode == 130
    assert proc.stderr == ""
    log = (tmp_path / "job.log").read_text()
    assert "interrupted (Ctrl-C): job tile aoi=a batch=2024-06 stopped" in log
    assert "Traceback" not in log


def test_a_job_of_a_background_run_keeps_ignoring_ctrl_c(tmp_path):
    """A run started with SIGINT ignored (`snakemake ... &` in a script) is not
    stopped by it, and neither are its jobs."""
    import signal

    proc = run_job(
        tmp_path,
        """
import os, signal
def work(smk):
    os.kill(os.getpid(), signal.SIGINT)
    logging.getLogger("tile").info("still working")
run(smk, work)
""",
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    assert proc.returncode == 0 and proc.stderr == ""
    assert "still working" in (tmp_path / "job.log").read_text()


def test_log_filter_works_while_python_shuts_down(tmp_path):
    """After Ctrl-C, records are still filtered while the interpreter shuts down,
    when nothing can be imported any more ("ImportError: sys.meta_path is None",
    once per record, used to flood the terminal)."""
    code = f"""
import logging, sys
sys.path.insert(0, {str(ROOT)!r})
from s2ts.runner import ScrubSecrets
record = logging.LogRecord("tile", logging.WARNING, "tile.py", 1, "GET https://a.b/c.tif?{SECRET} failed", None, None)
scrub = ScrubSecrets()
for name in [m for m in sys.modules if m.startswith("s2ts.")]:
    del sys.modules[name]  # as at shutdown: modules gone...
sys.meta_path = None  # ...and the import system with them
ok = scrub.filter(record)
sys.stdout.write(f"{{ok}} {{record.msg}}\\n")
sys.stdout.flush()
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.stdout.strip() == "True GET https://a.b/c.tif failed", proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "meta_path" not in proc.stderr


@pytest.mark.parametrize("jobsite", [True, False])
def test_interrupt_before_the_stage_starts_is_quiet(tmp_path, jobsite):
    """Ctrl-C while a job's Python is still starting (Snakemake's preamble, the
    stage's imports): with workflow/jobsite on PYTHONPATH, as the Snakefile sets it
    for every job, the job ends with 130 and prints nothing (without: a traceback)."""
    import os
    import signal
    import time

    ready = tmp_path / "ready"
    code = f"import pathlib, time; pathlib.Path({str(ready)!r}).touch(); time.sleep(30)"
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT / "workflow" / "jobsite") if jobsite else ""
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stderr=subprocess.PIPE, text=True, env=env, preexec_fn=ctrl_c_as_in_a_terminal
    )
    t0 = time.time()
    while not ready.exists() and time.time() - t0 < 30:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    err = proc.communicate(timeout=30)[1]
    if jobsite:
        assert proc.returncode == 130 and err == ""
    else:
        assert "KeyboardInterrupt" in err  # what a job printed before
