"""The configuration contract: every bad value stops the run before any job with one
message naming the key and what is allowed."""

import copy
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
    assert cfg["grid"] == {"crs": "EPSG:3035", "resolution": 40}
    assert cfg["mask"]["classes"] == [0, 1, 3, 8, 9, 10]
    assert cfg["gapfill"]["max_gap_days"] is None  # default filled from the schema


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
        ("gapfill.method", "cubic", r"'gapfill.method' = 'cubic' .* one of: linear"),
        ("aoi.path", DELETE, r"missing config key 'path' under 'aoi'"),
        (
            "tiles.batch",
            "week",
            r"'tiles.batch' = 'week' is not allowed: it must be one of: date, month, year or a integer >= 1",
        ),
        ("tiles.batch", 0, r"'tiles.batch' = 0 is not allowed"),
    ],
)
def test_bad_values_are_named_with_what_is_allowed(path, value, message):
    with pytest.raises(UserError, match=message):
        check_config(with_change(path, value))


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
