"""Grid size before any job (s2ts/grid_size.py): the estimates against real
acquisitions and measured allocations; a grid above grid.max_pixels is refused
with numbers and a fix that works; a large one is allowed with a warning."""

import json
import shutil
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest
import shapely.geometry
import yaml
from conftest import MPC_ITEMS, ROOT, load_features, local_item, utm_grid, write_grid_json, write_items_file

from s2ts.aoi_grid import Aoi, geojson_of, read_aois, target_grid
from s2ts.config import check_config
from s2ts.errors import UserError
from s2ts.grid_size import check_grid_size, coarser, estimate_dates, tile_job_bytes

BANC = ROOT / "resources" / "banc_arguin.geojson"
DEMO = {"dates": {"start": "2021-01-01", "end": "2023-01-01"}}


def config(**grid):
    cfg = yaml.safe_load((ROOT / "config.yaml").read_text()) | DEMO
    cfg["grid"].update(grid)
    return check_config(cfg)


def real_dates(name):
    items = json.loads((MPC_ITEMS / name).read_text())["features"]
    return sorted({it["properties"]["datetime"][:10] for it in items})


def test_dates_estimate_against_real_planetary_computer_items():
    # one relative orbit (R078), June-July 2020: the 5-day revisit itself
    single = real_dates("tile-35MNM-2020.json")
    expected, upper = estimate_dates("2020-06-01", "2020-08-01")
    assert len(single) == 13 and abs(expected - len(single)) <= 1 and len(single) <= upper
    # two relative orbits (R098, R141) over one tile, 2024: more than 5-day, within the upper figure
    double = real_dates("tile-13TDE-2024.json")
    expected, upper = estimate_dates(double[0], "2024-12-04")
    assert expected < len(double) <= upper


def test_dates_estimate_follows_the_constellation():
    assert estimate_dates("2010-01-01", "2015-01-01") == (0, 0)  # before Sentinel-2A
    assert estimate_dates("2016-01-01", "2017-01-01")[0] == 37  # Sentinel-2A alone: 366 / 10
    assert estimate_dates("2021-01-01", "2022-01-01")[0] == 73  # 2A and 2B: 365 / 5


@pytest.fixture(scope="module")
def two_items(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mem")
    base = load_features("tile-13TDE-2024.json")[0]
    n, x0, y1 = 512, 450000.0, 4420000.0
    items = []
    for k in range(2):
        rng = np.random.default_rng(k)
        bands = {b: rng.integers(1000, 3000, (n, n), dtype=np.uint16) for b in ("B03", "B04", "B08")}
        items.append(
            local_item(
                base,
                tmp / f"cog{k}",
                bands,
                np.full((n // 2, n // 2), 4, np.uint8),
                x0,
                y1,
                item_id=f"S2B_MSIL2A_20240601T174629_R098_T13TDE_{k}",
                datetime="2024-06-01T17:46:29Z",
            )  # fmt: skip
        )
    return tmp, write_items_file(tmp / "2024-06-01.json", items), (n, x0, y1)


@pytest.mark.parametrize("res", [10, 40])
def test_memory_estimate_bounds_what_a_tile_job_allocates(two_items, res):
    """tracemalloc's peak of one date of the tile stage (2 items, 3 bands), after a
    warm-up so that imports do not count: the estimate is above it, by < 50 %."""
    from s2ts.tile import tile_batch

    tmp, items, (n, x0, y1) = two_items
    bands = ["B03", "B04", "B08"]
    g0 = write_grid_json(tmp / "g0.json", utm_grid(32613, x0, y1, 8, 8, 10))
    tile_batch([items], g0, bands, "SCL", tmp / "warm")
    m = n * 10 // res
    grid = write_grid_json(tmp / f"g{res}.json", utm_grid(32613, x0, y1, m, m, res))
    shutil.rmtree(tmp / "out", ignore_errors=True)
    tracemalloc.start()
    try:
        tile_batch([items], grid, bands, "SCL", tmp / "out")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    estimate = tile_job_bytes(m * m, len(bands), res)
    assert peak <= estimate <= 1.5 * peak, (peak, estimate)


def test_refused_grid_gives_numbers_and_a_resolution_that_fits():
    (aoi,) = read_aois(BANC)
    cfg = config(resolution=1)
    grid = target_grid(aoi.geometry, "EPSG:3035", 1)
    with pytest.raises(UserError) as err:
        check_grid_size("1", grid, cfg)
    msg = str(err.value)
    assert msg.startswith(
        "grid.max_pixels: AOI '1' is a grid of 8,248 x 10,314 = 85,069,872 pixels at 1 m in EPSG:3035"
    )
    assert "about 146 to 292 dates: Sentinel-2 revisits every 5 days" in msg
    assert "above grid.max_pixels = 25,000,000 pixels" in msg and "GB of memory per tile job" in msg
    assert "Use a coarser grid.resolution (2 m or more for this polygon" in msg
    # the advice works: at that resolution the grid is accepted
    check_grid_size("1", target_grid(aoi.geometry, "EPSG:3035", 2), cfg)


def test_continent_sized_polygon_is_refused_before_numpy_is_asked():
    europe = Aoi("europe", geojson_of(shapely.geometry.box(-10, 35, 30, 70)))
    cfg = config()
    grid = target_grid(europe.geometry, "EPSG:3035", 40)
    with pytest.raises(UserError, match=r"AOI 'europe' is a grid of .* pixels at 40 m") as err:
        check_grid_size("europe", grid, cfg)
    res = float(str(err.value).split("grid.resolution (")[1].split(" m")[0])
    assert res > 40
    check_grid_size("europe", target_grid(europe.geometry, "EPSG:3035", res), cfg)


def test_coarser_rounds_up_to_a_resolution_under_the_limit():
    assert coarser(40, 100, 25) == 81  # sqrt(4) * 40 = 80, and a margin
    assert coarser(0.001, 85_047_942_904_834, 25_000_000) == 2


def test_large_grid_is_allowed_with_a_warning():
    (aoi,) = read_aois(BANC)
    warning = check_grid_size("1", target_grid(aoi.geometry, "EPSG:3035", 4), config(resolution=4))
    assert warning.startswith("WARNING: large grid: AOI '1' is a grid of 2,062 x 2,579 = 5,317,898 pixels at 4 m")
    assert "GB for the gap-filled cube" in warning and "It will run" in warning
    assert check_grid_size("1", target_grid(aoi.geometry, "EPSG:3035", 40), config()) is None


def snakemake_n(tmp_path, **grid):
    over = tmp_path / "grid.yaml"
    over.write_text(yaml.safe_dump({"grid": {"crs": "EPSG:3035", **grid}, "results": str(tmp_path / "r")}))
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--configfile", "config/demo.yaml", str(over)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )


def test_workflow_warns_for_a_large_grid_and_runs_a_raised_limit(tmp_path):
    proc = snakemake_n(tmp_path, resolution=4)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "WARNING: large grid: AOI '1' is a grid of 2,062 x 2,579" in proc.stderr
    proc = snakemake_n(tmp_path, resolution=1, max_pixels=100_000_000)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "WARNING: large grid: AOI '1' is a grid of 8,248 x 10,314" in proc.stderr
    proc = snakemake_n(tmp_path, resolution=1)
    assert proc.returncode != 0 and "ERROR: grid.max_pixels: AOI '1'" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "r").exists()
