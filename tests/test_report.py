"""The Snakemake HTML report of a run: rendered offline, self-contained, and drawn by a real
browser (headless Chromium) with the workflow page and a figure actually on screen.

Chromium: `apt-get install -y chromium` (Debian 12: /usr/bin/chromium). The browser tests
skip, with that reason, only when /usr/bin/chromium is missing, and fail then in CI
(CI=true, set by .ci/run, which installs it).

The report is a single-page React app without URL routing: to put a figure on screen, a
copy of the report gets one extra <script> that calls the app's own ``app.setView`` with the
figure's embedded data URI, exactly what the figure's view button does on a click.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from conftest import service_missing  # noqa: E402
from test_figures import VENV_BIN, short_demo_run  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture
def chromium_installed():
    """Skip locally when Chromium is missing, with the reason; fail in CI (CI=true), which installs it."""
    if not CHROMIUM.exists():
        service_missing("headless Chromium not installed: /usr/bin/chromium is missing (apt-get install -y chromium)")
    return CHROMIUM


needs_chromium = pytest.mark.usefixtures("chromium_installed")
FIGURES = ["false_colour.png", "false_colour.gif", "pixel_series.png", "sandbank_area.png", "data_quality.png"]


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[Path, Path]:
    """(report.html, results) for the short demo run."""
    results = short_demo_run(tmp_path_factory)
    out = results.parent / "report.html"
    if not out.exists():
        make_report(results.parent / "cfg.yaml", out)
    return out, results


def make_report(cfg: Path, out: Path) -> None:
    """`snakemake --report out` for the run of the demo configuration layered with ``cfg``."""
    cmd = [
        str(VENV_BIN / "snakemake"),
        "--configfile", str(ROOT / "config" / "demo.yaml"), str(cfg),
        "--report", str(out),
    ]  # fmt: skip
    env = {**os.environ, "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}"}
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "Report created" in proc.stderr


def embedded_results(html: str) -> dict:
    m = re.search(r'<script id="results">\s*var results = (\{.*?\});\s*</script>', html, re.S)
    assert m, "no results block in the report"
    return json.loads(m.group(1))


def test_report_embeds_every_figure_and_the_benchmarks(report):
    path, results = report
    html = path.read_text(encoding="utf-8")
    entries = embedded_results(html)
    by_name = {Path(k).name: v for k, v in entries.items()}
    for name in [*FIGURES, "sandbank_area.csv", "summary.csv", "summary.html"]:
        assert name in by_name, f"{name} not in the report"
    for name in FIGURES:
        e = by_name[name]
        assert e["caption"].strip(), name
        assert e["labels"]["AOI"] == "1"
        # the file itself, embedded (self-contained report: no link to the results folder)
        payload = e["data_uri"].split("base64,", 1)[1]
        assert base64.b64decode(payload) == (results / "1" / "figures" / name).read_bytes()
    assert by_name["summary.html"]["mime_type"] == "text/html"
    # the workflow description was rendered with this run's configuration
    assert "2022-01-01" in html and "NDWI" in html
    # nothing is fetched at view time (offline): no external script or stylesheet
    assert not re.search(r'<script[^>]+src="https?://', html)
    assert not re.search(r'<link[^>]+href="https?://', html)


def chromium(tmp: Path, url: str, *extra: str) -> subprocess.CompletedProcess:
    cmd = [
        str(CHROMIUM),
        "--headless", "--no-sandbox", "--disable-gpu",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--no-first-run", f"--user-data-dir={tmp / 'chromium-profile'}",
        "--window-size=1400,1000", "--virtual-time-budget=10000",
        *extra, url,
    ]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def screenshot(tmp: Path, url: str, name: str) -> np.ndarray:
    from PIL import Image

    shot = tmp / name
    proc = chromium(tmp, url, f"--screenshot={shot}")
    assert shot.exists(), proc.stderr[-2000:]
    with Image.open(shot) as im:
        return np.asarray(im.convert("RGB"))


def red_pixels(rgb: np.ndarray) -> int:
    """Pixels of the false colour's vegetation red (the report's own UI has none)."""
    r, g, b = (rgb[..., k].astype(int) for k in range(3))
    return int(((r > 150) & (g < 90) & (b < 90)).sum())


@needs_chromium
def test_report_renders_in_headless_chromium(report, tmp_path):
    path, _ = report
    rgb = screenshot(tmp_path, path.resolve().as_uri(), "workflow.png")
    assert rgb.shape[:2] == (1000, 1400)
    assert rgb.std() > 20, "blank screenshot"
    colours = np.unique(rgb[::2, ::2].reshape(-1, 3), axis=0)
    assert len(colours) > 50, f"only {len(colours)} colours: the app did not render"
    # the JavaScript app replaced the loading screen: its DOM has the menu and the description
    dom = chromium(tmp_path, path.resolve().as_uri(), "--dump-dom").stdout
    for text in ("Figures", "Benchmarks", "Sentinel-2 L2A time series over polygons"):
        assert text in dom, text
    assert red_pixels(rgb) < 200


@needs_chromium
def test_a_figure_is_drawn_in_the_report(report, tmp_path):
    path, results = report
    html = path.read_text(encoding="utf-8")
    inject = """<script>
setTimeout(function () {
  var key = Object.keys(results).find(function (k) { return k.endsWith("figures/false_colour.png"); });
  app.setView({content: "img", contentPath: results[key].data_uri, resultPath: key});
}, 300);
</script>"""
    i = html.rindex("</body>")
    page = tmp_path / "report-figure.html"
    page.write_text(html[:i] + inject + html[i:], encoding="utf-8")
    dom = chromium(tmp_path, page.as_uri(), "--dump-dom").stdout
    imgs = re.findall(r'<img src="(data:image/png;[^"]*filename=false_colour\.png;base64,[^"]+)"', dom)
    assert imgs, "no <img> of false_colour.png in the rendered page"
    payload = imgs[0].split("base64,", 1)[1]
    assert base64.b64decode(payload) == (results / "1" / "figures" / "false_colour.png").read_bytes()
    rgb = screenshot(tmp_path, page.as_uri(), "figure.png")
    assert rgb.std() > 20
    # the figure's red (forest) and its many colours are on screen
    assert red_pixels(rgb) > 2000, red_pixels(rgb)
    assert len(np.unique(rgb[::2, ::2].reshape(-1, 3), axis=0)) > 500


def test_make_demo_ends_with_the_report():
    text = (ROOT / "Makefile").read_text()
    demo = text.split("\ndemo:", 1)[1].split("\n\n", 1)[0]
    assert "--report results/demo/report.html" in demo
    sites = text.split("\ndemo-sites:", 1)[1].split("\n\n", 1)[0]
    assert "--report results/demo-sites/report.html" in sites


def test_chromium_path_is_the_documented_one():
    """The skip reason above names the path CI installs; keep them in sync with docs/figures.md."""
    doc = (ROOT / "docs" / "figures.md").read_text()
    assert "apt-get install -y chromium" in doc and str(CHROMIUM) in doc
    if CHROMIUM.exists():
        assert shutil.which(str(CHROMIUM))


def test_report_of_the_options_run_shows_indices_and_regular_product(tmp_path_factory):
    """With indices and the regular product on, the report embeds the two extra figures
    with their captions, rendered with the run's configuration."""
    from conftest import OPTIONS, options_demo_run

    results = options_demo_run(tmp_path_factory)
    out = results.parent / "report.html"
    make_report(results / "override.yaml", out)
    html = out.read_text(encoding="utf-8")
    by_name = {Path(k).name: v for k, v in embedded_results(html).items()}
    for name in ("index_series.png", "regular_series.png"):
        e = by_name[name]
        payload = e["data_uri"].split("base64,", 1)[1]
        assert base64.b64decode(payload) == (results / "1" / "figures" / name).read_bytes()
    assert "NDWI, NDVI" in by_name["index_series.png"]["caption"]
    assert "McFeeters" in by_name["index_series.png"]["caption"]
    assert "steps of 10 days" in by_name["regular_series.png"]["caption"]
    assert "median" in by_name["regular_series.png"]["caption"]
    assert OPTIONS["regular"]["step_days"] == 10
