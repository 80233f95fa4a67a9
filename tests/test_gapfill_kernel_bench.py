"""benchmarks/gapfill_kernel.py (the README's kernel figures): it must time the kernel on
the AOI's real cube, so its loading is checked against a synthetic cube's known pixels
and dates, and its block-size comparison against its own first block size (every
method's output must not depend on the block). No timing is asserted."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from conftest import ROOT
from test_gapfill import FILL, epoch_seconds, make_grid, make_masked_stores

from s2ts.gapfill import METHODS

sys.path.insert(0, str(ROOT / "benchmarks"))
import gapfill_kernel  # noqa: E402


@pytest.fixture
def results(tmp_path):
    """A results folder whose AOI "1" has three masked batch stores of 12 dates."""
    grid = make_grid(30, 20)
    _, cubes, strings, *_ = make_masked_stores(tmp_path, grid, ["B03", "B08"])
    (tmp_path / "res" / "1").mkdir(parents=True)
    (tmp_path / "masked").rename(tmp_path / "res" / "1" / "mask")
    return tmp_path / "res", cubes, strings


def test_the_cube_is_the_aois_pixels_in_the_kernels_layout_and_time_order(results):
    res, cubes, strings = results
    cube, times = gapfill_kernel.load_cube(res, "1", ["B03", "B08"])
    assert len(cube) == 2
    for block, band in zip(cube, ["B03", "B08"]):  # C-ordered (y, x, time), as the stage's dask hands them over
        assert block.shape == (20, 30, 12)
        assert block.flags.c_contiguous
        np.testing.assert_array_equal(block, cubes[band].transpose(1, 2, 0))  # cubes: (time, y, x), time order
    assert times.tolist() == [float(epoch_seconds(s)) for s in strings]


def test_every_method_and_block_size_is_timed_on_the_same_output(results, tmp_path):
    res, cubes, _ = results
    args = ["--results", str(res), "--bands", "B03,B08", "--repeat", "1", "--sample", "50"]
    # 2**10 and 2**12 elements: 85 and 341 pixels per block of 12 dates, over the
    # cube's 1,200 series: several blocks each, so a block-dependent result would differ
    fig = gapfill_kernel.main([*args, "--block", "10,12", "--json", str(tmp_path / "k.json")])
    assert set(fig["kernel_s"]) == set(METHODS) and all(s > 0 for s in fig["kernel_s"].values())
    assert set(fig["by_block"]) == {"2**10", "2**12"}
    assert all(set(row) == set(METHODS) for row in fig["by_block"].values())
    both = np.stack([cubes["B03"], cubes["B08"]])
    assert fig["missing_share"] == pytest.approx(np.mean(both == FILL), abs=5e-4)
    assert fig["scipy_pchip_per_series_us"] > 0
    assert (tmp_path / "k.json").exists()
    import s2ts.gapfill as gf

    assert gf._BLOCK_ELEMENTS == 2**22  # the comparison put the default back
