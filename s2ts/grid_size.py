"""How big a run will be, before any job: pixels, dates and memory of each AOI's grid.

Checked when the workflow is parsed (workflow/rules/common.smk): a grid above
``grid.max_pixels`` is refused with its numbers and the fix; a large one that is
allowed gets a warning on the console. Everything here is arithmetic on the grid
(:func:`s2ts.aoi_grid.target_grid`) and the configuration: no data is read.

The estimates, said in every message:

* **dates**: Sentinel-2's revisit, one acquisition every 5 days with Sentinel-2A
  and 2B together (from July 2017), every 10 days before (Sentinel-2A alone, from
  its launch on 23 June 2015); up to twice as many where two orbits overlap (as
  at Arcachon), which is the upper figure used for sizes.
* **memory of a tile job** (one date; the per-date jobs hold the whole grid): for
  each of up to 2 items of the date, every band as uint16 twice (odc-stac's load
  and the array taken from it), the scene classification at 20 m (``f`` =
  resolution / 20 m sub-cells per pixel edge: a byte each, and a 2-byte class
  bitmask) and a validity byte; then the mosaic (bands, class, bitmask, source)
  and its two int64 index arrays. Measured with tracemalloc on real COGs it is
  within 20 % above the arrays a tile job allocates (tests/test_grid_size.py);
  Python and GDAL add a few hundred MB.
* **cube**: the gap-filled cube, dates x pixels x bands x 2 bytes, uncompressed.
"""

from __future__ import annotations

import datetime as dt
import math

from s2ts.errors import UserError

S2A_START = dt.date(2015, 6, 23)  # Sentinel-2A launch: 10-day revisit
S2B_START = dt.date(2017, 7, 1)  # Sentinel-2B in routine operations: 5 days with both
ITEMS_PER_DATE = 2  # items mosaicked on one date (neighbouring tiles or orbits)
#: A grid this large (uncompressed cube, bytes) is worth a warning even below the limit.
WARN_CUBE_BYTES = 4e9
#: ... and so is one above this share of grid.max_pixels.
WARN_SHARE = 0.1


def _overlap(a0: dt.date, a1: dt.date, b0: dt.date, b1: dt.date) -> int:
    return max(0, (min(a1, b1) - max(a0, b0)).days)


def estimate_dates(start: str, end: str) -> tuple[int, int]:
    """(expected, upper) number of acquisition dates in [start, end)."""
    d0, d1 = dt.date.fromisoformat(start), dt.date.fromisoformat(end)
    one = _overlap(d0, d1, S2A_START, S2B_START) / 10
    two = _overlap(d0, d1, S2B_START, dt.date.max) / 5
    expected = math.ceil(one + two)
    return expected, 2 * expected


def tile_job_bytes(pixels: int, n_bands: int, resolution: float) -> int:
    """Memory of one tile job (one date): see the module's docstring."""
    f = max(1, math.ceil(resolution / 20 - 1e-9))
    per_item = 4 * n_bands + 3 * f * f + 1  # bands uint16 x 2; SCL uint8 and its uint16 bitmask; validity
    mosaic = 2 * n_bands + 4 + 16  # bands, SCL, bitmask, source; int64 first-valid index and its take
    return pixels * (ITEMS_PER_DATE * per_item + mosaic)


def human(n_bytes: float) -> str:
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if n_bytes >= size:
            return f"{n_bytes / size:.1f} {unit}"
    return f"{n_bytes / 1e3:.0f} kB"


def coarser(resolution: float, pixels: int, limit: int) -> float:
    """The resolution (m) at which the grid falls under ``limit`` pixels, rounded up."""
    need = resolution * math.sqrt(pixels / limit) * 1.01
    if need >= 1:
        return float(math.ceil(need))
    digits = -math.floor(math.log10(need)) + 1
    return math.ceil(need * 10**digits) / 10**digits


def describe(aoi_id: str, grid: dict, config: dict) -> dict:
    """The size of one AOI's run: pixels, dates, memory and disk, with the text that says so."""
    pixels = int(grid["width"]) * int(grid["height"])
    n_bands = len(config["bands"])
    start, end = config["dates"]["start"], config["dates"]["end"]
    dates, dates_max = estimate_dates(start, end)
    memory = tile_job_bytes(pixels, n_bands, grid["resolution"])
    cube = dates_max * pixels * n_bands * 2
    res = grid["resolution"]
    text = (
        f"AOI '{aoi_id}' is a grid of {grid['width']:,} x {grid['height']:,} = {pixels:,} pixels at "
        f"{res:g} m in {grid['crs']}; with {n_bands} band(s) from {start} to {end} (about {dates:,} to "
        f"{dates_max:,} dates: Sentinel-2 revisits every 5 days, every 10 before July 2017, and twice as "
        f"often where orbits overlap) that is about {human(memory)} of memory per tile job (one date) "
        f"and {human(cube)} for the gap-filled cube (uncompressed)"
    )
    return {"aoi": aoi_id, "pixels": pixels, "dates": (dates, dates_max), "memory": memory, "cube": cube, "text": text}


def check_grid_size(aoi_id: str, grid: dict, config: dict) -> str | None:
    """Refuse a grid above grid.max_pixels (UserError); return a warning for a large one."""
    limit = int(config["grid"]["max_pixels"])
    size = describe(aoi_id, grid, config)
    if size["pixels"] > limit:
        raise UserError(
            f"grid.max_pixels: {size['text']}, above grid.max_pixels = {limit:,} pixels. Use a coarser "
            f"grid.resolution ({coarser(grid['resolution'], size['pixels'], limit):g} m or more for this "
            "polygon; Sentinel-2 bands are 10, 20 and 60 m), split the polygon into smaller ones, or raise "
            "grid.max_pixels if your machine has the memory and disk."
        )
    if size["pixels"] > WARN_SHARE * limit or size["cube"] > WARN_CUBE_BYTES:
        return (
            f"WARNING: large grid: {size['text']}. It will run (grid.max_pixels = {limit:,}); a coarser "
            "grid.resolution makes it faster and smaller."
        )
    return None
