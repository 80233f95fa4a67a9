"""The configuration contract: every bad value stops the run before any job with one
message naming the key and what is allowed."""

import copy
import datetime as dt
import os
import subprocess
import sys

import pytest
import yaml
from conftest import ROOT

from s2ts.config import check_config
from s2ts.errors import UserError

DEFAULT = yaml.safe_load((ROOT / "config.yaml").read_text())


def with_change(path: str, value):
    cfg = copy.deepcopy(DEFAULT)
    node = cfg
    keys = path.split(".")
    for k in keys[:-1]:
        node = node.setdefault(k, {})
    if value is DELETE:
        del node[keys[-1]]
    else:
        node[keys[-1]] = value
    return cfg


DELETE = object()


def test_default_config_is_the_tutorial_study():
    cfg = check_config(DEFAULT)
    assert cfg["stac"]["catalog"] == "https://planetarycomputer.microsoft.com/api/stac/v1"
    assert cfg["dates"] == {"start": "2016-01-01", "end": "2025-01-01"}
    assert cfg["grid"] == {"crs": "EPSG:3035", "resolution": 40, "max_pixels": 25_000_000}
    assert cfg["mask"]["classes"] == [0, 1, 3, 8, 9, 10]
    assert cfg["gapfill"]["max_gap_days"] is None  # default filled from the schema
    # the options of issue 15 are off by default: today's outputs unchanged
    assert cfg["indices"] == [] and "regular" not in cfg
    assert "regular" not in check_config(with_change("regular", None))  # null: off, as when absent
    assert cfg["mask"]["dilate_m"] == 0 and cfg["gapfill"]["method"] == "linear"


def test_indices_with_their_bands_and_regular_defaults():
    cfg = with_change("bands", ["B03", "B04", "B08", "B11"])
    cfg["indices"] = ["NDWI", "NDVI", "MNDWI", "NDMI"]
    cfg["regular"] = {"step_days": 10}
    checked = check_config(cfg)
    assert checked["indices"] == ["NDWI", "NDVI", "MNDWI", "NDMI"]
    assert checked["regular"] == {"step_days": 10, "method": "linear"}  # the default method filled in


@pytest.mark.parametrize(
    "path, value, message",
    [
        ("stac.colection", "x", r"unknown config key 'stac.colection'. Did you mean 'collection'\?"),
        ("gridd", {}, r"unknown config key 'gridd'. Did you mean 'grid'\?"),
        (
            "stac.signing",
            "yes",
            r"'stac.signing' = 'yes' is not allowed: it must be one of: auto, planetary_computer, none",
        ),
        ("stac.max_cloud_cover", 150, r"'stac.max_cloud_cover' = 150 .* <= 100"),
        ("dates.start", "2016/01/01", r"'dates.start' = '2016/01/01' .* YYYY-MM-DD"),
        ("dates.end", "2021-02-30", r"'dates.end' = '2021-02-30' is not a calendar date"),
        ("dates.end", "2015-01-01", r"dates.start \(2016-01-01\) must be before dates.end \(2015-01-01\)"),
        ("bands", ["B03", "B13"], r"'bands\[1\]' = 'B13' is not allowed: it must be one of: B01, .*B8A"),
        ("bands", [], r"'bands' is empty"),
        ("grid.resolution", 0, r"'grid.resolution' = 0 .* > 0"),
        ("grid.resolution", -10, r"'grid.resolution' = -10 .* > 0"),
        ("grid.crs", "EPSG:999999", r"'grid.crs' = 'EPSG:999999' is not a known CRS"),
        ("grid.crs", "EPSG:4326", r"'grid.crs' = 'EPSG:4326' is not a projected CRS in metres"),
        ("mask.classes", [0, 300], r"'mask.classes\[1\]' = 300 .* <= 255"),
        ("mask.band", "B03", r"mask.band 'B03' is a reflectance band: .* must be a scene classification band"),
        ("mask.band", "B11", r"mask.band 'B11' is a reflectance band: .*not a reflectance band. Set mask.band: SCL"),
        ("offset.since_baseline", "4.0", r"'offset.since_baseline' = '4.0' .* matching"),
        ("gapfill.method", "cubic", r"'gapfill.method' = 'cubic' .* one of: linear, nearest, pchip"),
        # an index needs its two bands: refused before any job, with the fix
        (
            "indices",
            ["NDWI", "NDMI"],
            r"^indices: NDMI = \(B08 - B11\) / \(B08 \+ B11\) needs B11, not in bands \[B03, B04, B08\]\. "
            r"Add B11 to bands \(bands: \[B03, B04, B08, B11\]\) or remove NDMI from indices\.$",
        ),
        ("indices", ["EVI"], r"'indices\[0\]' = 'EVI' is not allowed: it must be one of: NDWI, NDVI, MNDWI, NDMI"),
        ("indices", ["NDWI", "NDWI"], r"'indices' has repeated values"),
        ("regular", {}, r"missing config key 'step_days' under 'regular': it must be an integer >= 1"),
        ("regular", {"step_days": 0}, r"'regular.step_days' = 0 is not allowed: it must be an integer >= 1"),
        ("regular", {"step_days": 2.5}, r"'regular.step_days' = 2.5 is not allowed: it must be an integer"),
        ("regular", {"step_days": 5, "method": "mean"}, r"'regular.method' = 'mean' .* one of: linear, median"),
        ("regular", {"step": 5}, r"unknown config key 'regular.step'. Did you mean 'step_days'\?"),
        ("mask.dilate_m", -40, r"'mask.dilate_m' = -40 is not allowed: it must be a number >= 0"),
        ("aoi.path", DELETE, r"missing config key 'path' under 'aoi'"),
        (
            "tiles.batch",
            "week",
            r"'tiles.batch' = 'week' is not allowed: it must be one of: auto, date, month, year or an integer >= 1",
        ),
        ("tiles.batch", 0, r"'tiles.batch' = 0 is not allowed"),
        ("grid.max_pixels", 0, r"'grid.max_pixels' = 0 is not allowed: it must be an integer >= 1"),
        ("aoi.layer", "", r"'aoi.layer' = '' is not allowed"),
        # YAML reads an unquoted 2021-01-01 as a date: say "quote it", not "must be a string"
        (
            "dates.start",
            dt.date(2021, 1, 1),
            r"'dates.start' = 2021-01-01 is written without quotes, so YAML reads it as a date, not as text: "
            r'quote it, start: "2021-01-01"\.$',
        ),
        (
            "offset.since_baseline",
            4.0,
            r"'offset.since_baseline' = 4.0 is written without quotes, so YAML reads it as a number.*"
            r'quote it, e.g. since_baseline: "04.00"',
        ),
    ],
)
def test_bad_values_are_named_with_what_is_allowed(path, value, message):
    with pytest.raises(UserError, match=message):
        check_config(with_change(path, value))


@pytest.mark.parametrize("path", ["dates.start", "dates.end", "demo.start"])
def test_date_messages_read_as_english(path):
    """One article, no "a string a date": the allowed form of a date key."""
    with pytest.raises(UserError) as err:
        check_config(with_change(path, "2016/01/01") | ({"stac": {**DEFAULT["stac"], "catalog": "demo"}}))
    msg = str(err.value)
    assert (
        f"config key '{path}' = '2016/01/01' is not allowed: it must be a date written \"YYYY-MM-DD\", in quotes" in msg
    )
    assert "a string a date" not in msg


def test_results_that_is_a_file_is_refused(tmp_path):
    f = tmp_path / "results.txt"
    f.write_text("not a folder")
    with pytest.raises(UserError, match=r"results: '.*results.txt' is a file, not a folder. Point results at a folder"):
        check_config(with_change("results", str(f)))
    with pytest.raises(UserError, match=r"results: '.*results.txt/demo' is under '.*results.txt', which is a file"):
        check_config(with_change("results", str(f / "demo")))
    check_config(with_change("results", str(tmp_path / "new" / "folder")))  # created later by Snakemake


def run_snakemake(tmp_path, cfg, *args):
    cfgfile = tmp_path / "bad.yaml"
    cfgfile.write_text(yaml.safe_dump(cfg))
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--configfile", str(cfgfile), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )


@pytest.mark.parametrize(
    "path, value, message",
    [
        ("stac.signing", "maybe", "ERROR: config key 'stac.signing' = 'maybe' is not allowed"),
        (
            "aoi.path",
            "resources/missing.geojson",
            "ERROR: aoi.path: the vector file 'resources/missing.geojson' does not exist",
        ),
        ("grid.resolution", 50000, "ERROR: grid.resolution = 50000 m is larger than polygon '1'"),
        ("grid.resolution", 1, "ERROR: grid.max_pixels: AOI '1' is a grid of 8,248 x 10,314 = 85,069,872 pixels"),
        ("grid.resolution", 0.001, "pixels at 0.001 m in EPSG:3035"),
        (
            "indices",
            ["MNDWI"],
            "ERROR: indices: MNDWI = (B03 - B11) / (B03 + B11) needs B11, not in bands [B03, B04, B08]. "
            "Add B11 to bands",
        ),
    ],
)
def test_workflow_stops_before_any_job_with_one_message(tmp_path, path, value, message):
    cfg = with_change(path, value)
    cfg["results"] = str(tmp_path / "results")
    proc = run_snakemake(tmp_path, cfg)
    assert proc.returncode != 0
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr and 'File "' not in proc.stderr
    assert not (tmp_path / "results").exists()


def test_missing_aoi_file_names_the_config_file_that_sets_it(tmp_path):
    """The key came from the --configfile, not config.yaml: the message says so."""
    cfg = {"aoi": {"path": "resources/missing.geojson"}, "results": str(tmp_path / "results")}
    proc = run_snakemake(tmp_path, cfg)
    assert proc.returncode != 0
    assert f"Point aoi.path in {os.path.relpath(tmp_path / 'bad.yaml', ROOT)} at a GeoJSON" in proc.stderr
    assert "config.yaml at" not in proc.stderr


def test_unquoted_date_in_a_config_file_says_quote_it(tmp_path):
    """Through Snakemake's own YAML loading, the way a user meets it."""
    (tmp_path / "dates.yaml").write_text(f'dates:\n  start: 2021-01-01\n  end: "2021-03-01"\nresults: {tmp_path}/r\n')
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--configfile", str(tmp_path / "dates.yaml")],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0
    assert 'quote it, start: "2021-01-01"' in proc.stderr
    assert "Traceback" not in proc.stderr


def test_results_file_stops_before_snakemake_does(tmp_path):
    (tmp_path / "taken").write_text("a file")
    proc = run_snakemake(tmp_path, with_change("results", str(tmp_path / "taken")))
    assert proc.returncode != 0
    assert f"ERROR: results: '{tmp_path / 'taken'}' is a file, not a folder" in proc.stderr
    assert "Traceback" not in proc.stderr and 'File "' not in proc.stderr
    assert (tmp_path / "taken").read_text() == "a file"
