"""Pixel read faults: a truncated COG and a missing asset file stop the date with
one message naming item and asset; `tiles.on_read_error: skip` drops the date
instead and the NetCDF's provenance records it. (Transient HTTP errors are
retried by GDAL: tests/test_signing.py.)"""

import json
from pathlib import Path

import netCDF4
import numpy as np
import pytest
from conftest import load_features, local_item, utm_grid, write_grid_json, write_items_file

from s2ts.batches import batch_stores
from s2ts.gapfill import gapfill
from s2ts.mask import mask
from s2ts.netcdf import netcdf
from s2ts.offset_fix import offset_fix
from s2ts.tile import ReadError, read_skipped, tile_batch

X0, Y1, N = 450000.0, 4420000.0, 32
BANDS = ["B03", "B04", "B08"]


@pytest.fixture
def items(tmp_path):
    base = load_features("tile-13TDE-2024.json")[0]
    out = []
    for k, day in enumerate(["2024-06-01", "2024-06-06", "2024-06-11"]):
        rng = np.random.default_rng(k)
        bands = {b: rng.integers(1000, 3000, (N, N), dtype=np.uint16) for b in BANDS}
        it = local_item(
            base, tmp_path / "cog", bands, np.full((N // 2, N // 2), 4, np.uint8), X0, Y1,
            item_id=f"S2B_MSIL2A_{day.replace('-', '')}T174629_R098_T13TDE_X", datetime=f"{day}T17:46:29Z",
        )  # fmt: skip
        out.append((day, it))
    grid = write_grid_json(tmp_path / "grid.json", utm_grid(32613, X0, Y1, N, N, 10))
    return out, grid


def truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


@pytest.mark.parametrize("fault", ["truncated", "missing"])
def test_fault_names_item_and_asset_and_writes_nothing(tmp_path, items, fault):
    (day, it), grid = items[0][0], items[1]
    href = it["assets"]["B04"]["href"]
    truncate(Path(href)) if fault == "truncated" else Path(href).unlink()
    f = write_items_file(tmp_path / f"{day}.json", [it])
    with pytest.raises(
        ReadError, match=rf"cannot read asset B04 of item {it['id']} \(.*B04.tif\).*on_read_error: skip"
    ):
        tile_batch([f], grid, BANDS, "SCL", tmp_path / "t")
    assert not (tmp_path / "t" / f"{day}.zarr").exists()


def test_skip_drops_the_date_and_records_it_in_the_netcdf(tmp_path, items):
    dated, grid = items
    truncate(Path(dated[1][1]["assets"]["SCL"]["href"]))
    files = [write_items_file(tmp_path / f"{d}.json", [it]) for d, it in dated]
    with pytest.raises(ReadError):
        tile_batch(files, grid, BANDS, "SCL", tmp_path / "fail")
    skipped = tile_batch(files, grid, BANDS, "SCL", tmp_path / "tile", on_read_error="skip")
    assert [s["date"] for s in skipped] == ["2024-06-06"] and "asset SCL" in skipped[0]["reason"]
    assert sorted(p.name for p in (tmp_path / "tile").glob("*.zarr")) == ["2024-06-01.zarr", "2024-06-11.zarr"]
    inside = tmp_path / "inside.npy"
    np.save(inside, np.ones((N, N), np.uint8))
    stores, skipped = batch_stores(tmp_path / "tile")
    assert skipped == read_skipped(tmp_path / "tile")
    offset_fix(stores, tmp_path / "off.zarr", skipped=skipped)
    mask(tmp_path / "off.zarr", inside, tmp_path / "mask.zarr", [0, 1, 3, 8, 9, 10])
    gapfill([tmp_path / "mask.zarr"], tmp_path / "cube.zarr", BANDS)
    manifest = tmp_path / "manifest.json"
    manifest.write_text(
        json.dumps({"aoi": "t", "catalog": "local", "collection": "sentinel-2-l2a", "counts": {}, "search": {}})
    )
    cfg = {"bands": BANDS, "mask": {"classes": [0, 1, 3, 8, 9, 10]}, "gapfill": {"fill_ends": True}}
    netcdf(tmp_path / "cube.zarr", manifest, cfg, tmp_path / "out.nc")
    ds = netCDF4.Dataset(tmp_path / "out.nc")
    assert len(ds["time"]) == 2
    recorded = json.loads(ds.getncattr("skipped_dates"))
    assert [r["date"] for r in recorded] == ["2024-06-06"]


def test_a_failed_tile_job_keeps_the_stores_it_wrote_and_the_rerun_reads_the_rest(tmp_path, small_demo_catalog):
    """A date whose COG is missing fails its tile job in a Snakemake run; the dates
    before it in the batch were read, and their stores stay on disk (the batch folder
    is not the rule's output, so Snakemake neither removes nor rolls it back). Once the
    file is back, the rerun reads only the dates without a store, and keeps the others
    untouched."""
    import os
    import shutil
    from collections import defaultdict

    from conftest import ROOT
    from test_reruns import config, make_workdir, run

    src = small_demo_catalog
    clear = defaultdict(list)  # date -> the items the search keeps (eo:cloud_cover < 20)
    for f in sorted((src / "sentinel-2-l2a").glob("*/*_T30TXQ_*.json")):
        props = json.loads(f.read_text())["properties"]
        if props["eo:cloud_cover"] < 20:
            clear[props["datetime"][:10]].append(f.parent.name)
    bad = [d for d in sorted(clear) if len(clear[d]) == 1][3]  # with clear dates before and after it
    (bad_id,) = clear[bad]
    # the catalog with one item folder of its own, without its B04
    cat = tmp_path / "catalog"
    (cat / "sentinel-2-l2a").mkdir(parents=True)
    shutil.copy2(src / "catalog.json", cat / "catalog.json")
    for entry in (src / "sentinel-2-l2a").iterdir():
        if entry.name != bad_id:
            os.symlink(entry, cat / "sentinel-2-l2a" / entry.name)
    item = cat / "sentinel-2-l2a" / bad_id
    item.mkdir()
    for f in (src / "sentinel-2-l2a" / bad_id).iterdir():
        if f.name != "B04.tif":
            shutil.copy2(f, item / f.name)

    wd = make_workdir(tmp_path / "wd")
    shutil.copy2(ROOT / "resources" / "banc_arguin.geojson", wd / "banc.geojson")
    cfg = config(wd, **{"aoi.path": "banc.geojson", "stac.catalog": str(cat / "catalog.json")})
    cfg.update(dates={"start": "2022-03-01", "end": "2022-05-01"})
    cfg["stac"]["max_cloud_cover"] = 20
    proc, _ = run(wd, cfg, check=False)
    assert proc.returncode != 0
    assert f"cannot read asset B04 of item {bad_id}" in proc.stderr
    res = wd / "results" / "1"
    dates = sorted(p.stem for p in (res / "items").glob("*.json"))
    before = [d for d in dates if d < bad]
    assert bad in dates and len(before) >= 2 and dates[-1] > bad
    assert dates.index(bad) < len(dates) // 2  # in the first of the job's two processes' shares
    (batch,) = {p.name for p in (res / "tile").iterdir() if p.is_dir()}
    stores = {p.stem: p for p in (res / "tile" / batch).glob("*.zarr")}
    # what was read before the failure is kept, whole (with two worker processes, the
    # second one's dates after the failed date may be there too); the failed date is not
    assert set(before) <= set(stores) and bad not in stores
    assert all((p / "zarr.json").exists() for p in stores.values())
    assert not (res / "tile" / f"{batch}.json").exists()  # the job's output: not written
    kept = {d: (p / "B04" / "0.0").stat().st_mtime_ns for d, p in stores.items()}

    shutil.copy2(src / "sentinel-2-l2a" / bad_id / "B04.tif", item / "B04.tif")  # the file is back
    run(wd, cfg)
    log = (wd / "results" / "logs" / "tile" / "1" / f"{batch}.log").read_text()
    n = len(dates)
    assert f"{n} date(s), {len(kept)} kept from an earlier run, {n - len(kept)} to read" in log
    assert {d: (res / "tile" / batch / f"{d}.zarr" / "B04" / "0.0").stat().st_mtime_ns for d in kept} == kept
    assert json.loads((res / "tile" / f"{batch}.json").read_text())["dates"] == dates
    (nc,) = res.glob("*.nc")
    assert len(netCDF4.Dataset(nc)["time"]) == n
