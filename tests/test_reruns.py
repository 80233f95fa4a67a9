"""Reruns redo exactly what changed (issue: monitoring-grade workflow).

A small base run (three Arcachon sites, one month of the demo catalog) is made
once in its own working directory with its own copy of the workflow code; each
scenario copies it (outputs, Snakemake's metadata and mtimes preserved), changes
one thing, reruns, and checks which jobs ran and that untouched outputs were not
rewritten."""

import json
import re
import shutil
import subprocess

import pytest
import yaml
from conftest import ROOT, jobs_run, run_workflow

CODE = ["Snakefile", "config.yaml", "workflow", "profiles", "scripts", "s2ts", "envs"]
START, END, LATER = "2022-01-20", "2022-02-15", "2022-03-05"


def make_workdir(dest):
    dest.mkdir(parents=True)
    for name in CODE:
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, dest / name)
    shutil.copy2(ROOT / "resources" / "arcachon_sites.geojson", dest / "sites.geojson")
    return dest


def config(workdir, **changes):
    cfg = {
        "aoi": {"path": "sites.geojson", "id_field": "id"},  # relative to the working directory
        "stac": {"catalog": "demo"},
        "dates": {"start": START, "end": END},
        "demo": {
            "path": str(ROOT / "resources" / "demo-catalog"),
            "start": "2021-01-01",
            "end": "2023-01-01",
            "seed": 0,
        },
        "results": "results",
    }
    for key, value in changes.items():
        node = cfg
        *path, last = key.split(".")
        for p in path:
            node = node.setdefault(p, {})
        node[last] = value
    return cfg


def run(workdir, cfg, check=True):
    path = workdir / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = run_workflow(
        workdir / "results",
        path,
        extra=["--directory", str(workdir), "-s", str(workdir / "Snakefile")],
        overrides={"results": "results"},  # relative: Snakemake's records stay valid in a copy
        check=check,
    )
    return proc, jobs_run(proc.stderr)


def snapshot(workdir):
    """mtime of every output file (Zarr stores: every file inside)."""
    res = workdir / "results"
    return {
        str(p.relative_to(res)): p.stat().st_mtime_ns
        for p in res.rglob("*")
        if p.is_file()
        and "logs" not in p.parts
        and "benchmarks" not in p.parts
        and p.suffix not in (".yaml", ".stderr")
    }


def rules_of(jobs):
    return {r for r, _ in jobs}


DATA = ["aoi_grid", "stac_manifest", "tile", "offset_fix", "mask", "gapfill", "netcdf"]


def assert_reran(jobs, first: str):
    """Exactly the data stages from ``first`` on ran (plus products derived from them)."""
    ran = rules_of(jobs)
    data_ran = [r for r in DATA if r in ran]
    assert data_ran == DATA[DATA.index(first) :], data_ran


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    wd = make_workdir(tmp_path_factory.mktemp("rerun") / "base")
    run(wd, config(wd))
    return wd


@pytest.fixture
def scenario(base, tmp_path):
    def copy():
        wd = tmp_path / "wd"
        subprocess.run(["cp", "-a", str(base), str(wd)], check=True)
        # the copy's absolute paths: point the config at its own polygons
        return wd

    return copy


def dates_of(wd, aoi):
    return json.loads((wd / "results" / aoi / "manifest.json").read_text())["dates"]


def test_nothing_changed_no_job(scenario):
    wd = scenario()
    before = snapshot(wd)
    proc, jobs = run(wd, config(wd))
    assert jobs == [] and "Nothing to be done" in proc.stderr
    assert snapshot(wd) == before


def read_log(wd, rule, aoi, batch):
    return (wd / "results" / "logs" / rule / aoi / f"{batch}.log").read_text()


def test_new_acquisitions_only_new_dates(scenario):
    """Defaults: a tile job per year of dates, offset_fix and mask per year too. The
    period grows from mid-February into March: the 2022 tile job reruns and reads the
    new dates only (its earlier stores are kept, untouched), the year's light stores
    are redone with the old dates' values unchanged."""
    import netCDF4
    import numpy as np

    from s2ts.zarr_io import open_dataset

    wd = scenario()
    aois = ("banc_arguin", "cap_ferret", "dune_du_pilat")
    old = {a: dates_of(wd, a) for a in aois}
    before = snapshot(wd)
    res = wd / "results"
    light_before = {
        a: {k: open_dataset(res / a / k / "2022.zarr").load() for k in ("offset_fix", "mask")} for a in aois
    }
    _, jobs = run(wd, config(wd, **{"dates.end": LATER}))
    new = {a: sorted(set(dates_of(wd, a)) - set(old[a])) for a in old}
    assert all(new.values())
    per_date = {(r, w) for r, w in jobs if r in ("tile", "offset_fix", "mask")}
    assert per_date == {(r, f"aoi={a}, batch=2022") for a in aois for r in ("tile", "offset_fix", "mask")}
    assert [r for r in DATA if r in rules_of(jobs)] == DATA[1:]
    after = snapshot(wd)
    old_tiles = [k for k in before if "/tile/" in k and ".zarr/" in k]
    assert old_tiles and all(after[k] == before[k] for k in old_tiles)  # existing tile stores untouched
    for a in aois:
        log = read_log(wd, "tile", a, "2022")
        assert f"{len(old[a])} kept from an earlier run, {len(new[a])} to read" in log
        assert f"of {len(new[a])} date(s) ({new[a][0]} .. {new[a][-1]})" in log  # one read: the new dates only
        assert sorted(p.stem for p in (res / a / "tile" / "2022").glob("*.zarr")) == old[a] + new[a]
        for k in ("offset_fix", "mask"):  # redone: the old dates' values are the same
            now = open_dataset(res / a / k / "2022.zarr").load()
            assert [str(d) for d in now.solar_day.values] == old[a] + new[a]
            was = light_before[a][k]
            for b in ("B03", "B04", "B08"):
                np.testing.assert_array_equal(now[b].values[: len(old[a])], was[b].values)
    # the gap-filled cube is updated (the new dates' digests differ, the old ones agree),
    # into the cube a fill from scratch of the same masked stores makes
    from s2ts.gapfill import gapfill

    for a in aois:
        log = (res / "logs" / "gapfill" / f"{a}.log").read_text()
        assert f"dates from {new[a][0]} ({len(new[a])} of {len(old[a]) + len(new[a])}) changed or new" in log
        assert "gap-filling" not in log
        cube = open_dataset(res / a / "gapfill.zarr").load()
        scratch = wd / f"{a}-scratch.zarr"
        gapfill(sorted((res / a / "mask").glob("*.zarr")), scratch, list(cube.attrs["bands"]))
        s = open_dataset(scratch).load()
        assert set(cube.data_vars) == set(s.data_vars)
        for v in cube.data_vars:
            np.testing.assert_array_equal(cube[v].values, s[v].values, err_msg=v)
    # the later period's NetCDF is the earlier period's, copied and updated where the cube
    # changed, into what a full write of the same cube makes; the earlier product is kept
    from conftest import assert_same_netcdf

    from s2ts.netcdf import netcdf

    for a in aois:
        earlier, later = f"{a}_{START}_{END}.nc", f"{a}_{START}_{LATER}.nc"
        assert after[f"{a}/{earlier}"] == before[f"{a}/{earlier}"]
        log = (res / "logs" / "netcdf" / f"{a}.log").read_text()
        # the earlier product found (same settings, unchanged), but every region of the cube
        # changed: its one time chunk grew (test_a_later_period_updates_the_earlier_netcdf)
        assert f"{later} written in full: 2 of the cube's 2 regions changed since {earlier}" in log
        with netCDF4.Dataset(res / a / later) as ds:
            config_written = json.loads(ds.getncattr("configuration"))
        full = wd / "full" / later
        netcdf(res / a / "gapfill.zarr", res / a / "manifest.json", config_written, full)
        assert_same_netcdf(res / a / later, full)


@pytest.mark.parametrize(
    "change, rerun, untouched",
    [
        ({"mask.classes": [0, 1, 3, 8, 9]}, "mask", ("/tile/", "/offset_fix/")),
        ({"offset.value": -999}, "offset_fix", ("/tile/",)),
    ],
    ids=["mask-classes", "offset"],
)
def test_parameter_changes_rerun_that_stage_and_downstream(scenario, change, rerun, untouched):
    wd = scenario()
    before = snapshot(wd)
    _, jobs = run(wd, config(wd, **change))
    assert_reran(jobs, rerun)
    after = snapshot(wd)
    keep = [k for k in before if any(u in k for u in untouched)]
    assert keep and all(after[k] == before[k] for k in keep)


def edit_sites(wd, fn):
    path = wd / "sites.geojson"
    fc = json.loads(path.read_text())
    fn(fc)
    path.write_text(json.dumps(fc))


def test_one_polygon_changed_only_that_aoi(scenario):
    wd = scenario()
    before = snapshot(wd)

    def move(fc):
        ring = fc["features"][2]["geometry"]["coordinates"][0]
        ring[1][0] += 0.002  # dune_du_pilat: one vertex moved ~160 m east
        ring[2][0] += 0.002

    edit_sites(wd, move)
    _, jobs = run(wd, config(wd))
    assert jobs and {w.split(",")[0] for r, w in jobs if w} == {"aoi=dune_du_pilat"}
    after = snapshot(wd)
    assert all(after[k] == before[k] for k in before if not k.startswith("dune_du_pilat/"))


def test_polygon_added_only_new_aoi(scenario):
    wd = scenario()
    before = snapshot(wd)

    def add(fc):
        f = json.loads(json.dumps(fc["features"][2]))
        f["properties"]["id"] = "pilat_south"
        for p in f["geometry"]["coordinates"][0]:
            p[1] -= 0.01
        fc["features"].append(f)

    edit_sites(wd, add)
    _, jobs = run(wd, config(wd))
    assert {w.split(",")[0] for r, w in jobs if w} == {"aoi=pilat_south"}
    after = snapshot(wd)
    assert all(after[k] == before[k] for k in before)


def test_grid_change_reruns_everything(scenario):
    wd = scenario()
    aois = ("banc_arguin", "cap_ferret", "dune_du_pilat")
    _, jobs = run(wd, config(wd, **{"grid.resolution": 60}))
    # every stage from the grid on; the search does not depend on the grid: not redone
    assert [r for r in DATA if r in rules_of(jobs)] == ["aoi_grid"] + DATA[2:]
    assert sum(r == "tile" for r, _ in jobs) == 3 and sum(r == "aoi_grid" for r, _ in jobs) == 3
    for a in aois:  # every date read again: no store of the old grid is kept
        assert f"0 kept from an earlier run, {len(dates_of(wd, a))} to read" in read_log(wd, "tile", a, "2022")


@pytest.mark.parametrize(
    "edited, stage, untouched",
    [("s2ts/mask.py", "mask", ("/tile/", "/offset_fix/")), ("scripts/offset_fix.py", "offset_fix", ("/tile/",))],
    ids=["module", "script"],
)
def test_stage_code_change_reruns_that_stage_and_downstream(scenario, edited, stage, untouched):
    """An edit to a stage's module (s2ts/<stage>.py) or its script (scripts/<stage>.py)."""
    wd = scenario()
    before = snapshot(wd)
    with open(wd / edited, "a") as f:
        f.write(f"\n# a change in the {stage} stage's code\n")
    _, jobs = run(wd, config(wd))
    assert_reran(jobs, stage)
    after = snapshot(wd)
    assert all(after[k] == before[k] for k in before if any(u in k for u in untouched))


# The README's rows not covered above: mask.rule and the offset keys besides value
# (a stage's module and script are tested above).
@pytest.mark.parametrize(
    "change, rerun, untouched",
    [
        ({"mask.rule": "nearest"}, "mask", ("/tile/", "/offset_fix/")),
        ({"offset.apply": False}, "offset_fix", ("/tile/",)),
        ({"offset.since_baseline": "05.00"}, "offset_fix", ("/tile/",)),
    ],
    ids=["mask-rule", "offset-apply", "offset-since-baseline"],
)
def test_more_parameter_changes_rerun_that_stage_and_downstream(scenario, change, rerun, untouched):
    wd = scenario()
    before = snapshot(wd)
    _, jobs = run(wd, config(wd, **change))
    assert_reran(jobs, rerun)
    after = snapshot(wd)
    keep = [k for k in before if any(u in k for u in untouched)]
    assert keep and all(after[k] == before[k] for k in keep)  # no tile reloaded
    redone = [k for k in before if f"/{rerun}/" in k]
    assert redone and all(after[k] != before[k] for k in redone)  # every store of that stage rewritten


# Issue 15's options: each reruns exactly what its output depends on.
def untouched(before, after, parts):
    keep = [k for k in before if any(p in k for p in parts)]
    return keep and all(after[k] == before[k] for k in keep)


AOIS = ("banc_arguin", "cap_ferret", "dune_du_pilat")
DERIVED = {"figures", "csv_export", "benchmark_summary", "all"}  # made from the NetCDF (and the regular product)


def test_indices_change_redoes_only_the_netcdf(scenario):
    wd = scenario()
    before = snapshot(wd)
    _, jobs = run(wd, config(wd, indices=["NDWI", "NDVI"]))
    assert_reran(jobs, "netcdf")
    assert rules_of(jobs) - {"netcdf"} <= DERIVED
    assert sum(r == "netcdf" for r, _ in jobs) == 3
    after = snapshot(wd)
    assert untouched(before, after, ("/tile/", "/offset_fix/", "/mask/", "gapfill.zarr/"))
    assert all(after[f"{a}/{a}_{START}_{END}.nc"] != before[f"{a}/{a}_{START}_{END}.nc"] for a in AOIS)


def test_regular_change_redoes_only_the_regular_product(scenario):
    """Switching the regular product on makes it (and the figure that shows it); changing
    its method or step redoes it alone; the NetCDF and every store stay untouched. With
    the regular product on, changing the indices redoes the NetCDF and the regular product
    (both hold the indices), still no gap-fill."""
    wd = scenario()
    before = snapshot(wd)
    on = {"regular": {"step_days": 10}}
    _, jobs = run(wd, config(wd, **on))
    assert [r for r in DATA if r in rules_of(jobs)] == []
    assert "regular" in rules_of(jobs) and rules_of(jobs) - {"regular"} <= DERIVED
    after = snapshot(wd)
    assert untouched(before, after, ("/tile/", "/offset_fix/", "/mask/", "gapfill.zarr/", f"_{END}.nc"))
    assert all((wd / "results" / a / f"{a}_{START}_{END}_10d.nc").exists() for a in AOIS)
    for change in ({"regular": {"step_days": 10, "method": "median"}}, {"regular": {"step_days": 5}}):
        before = snapshot(wd)
        _, jobs = run(wd, config(wd, **change))
        assert [r for r in DATA if r in rules_of(jobs)] == [], change
        assert sum(r == "regular" for r, _ in jobs) == 3 and rules_of(jobs) - {"regular"} <= DERIVED
        assert untouched(before, snapshot(wd), ("/mask/", "gapfill.zarr/", f"_{END}.nc"))
    _, jobs = run(wd, config(wd, regular={"step_days": 5}, indices=["NDWI"]))
    assert [r for r in DATA if r in rules_of(jobs)] == ["netcdf"]
    assert sum(r == "regular" for r, _ in jobs) == 3


def test_gapfill_method_and_fill_rules_rerun_the_right_products(scenario):
    """gapfill.method: gap-fill and after, not the regular product (made from the
    observations); gapfill.max_gap_days: both (the linear regular product honours it)."""
    wd = scenario()
    on = {"regular": {"step_days": 10}}
    run(wd, config(wd, **on))
    _, jobs = run(wd, config(wd, **on, **{"gapfill.method": "pchip"}))
    assert_reran(jobs, "gapfill")
    assert "regular" not in rules_of(jobs)
    _, jobs = run(wd, config(wd, **on, **{"gapfill.method": "pchip", "gapfill.max_gap_days": 30}))
    assert_reran(jobs, "gapfill")
    assert sum(r == "regular" for r, _ in jobs) == 3


def test_dilation_change_redoes_mask_and_after_never_a_tile(scenario):
    wd = scenario()
    before = snapshot(wd)
    _, jobs = run(wd, config(wd, **{"mask.dilate_m": 80}))
    assert_reran(jobs, "mask")
    after = snapshot(wd)
    assert untouched(before, after, ("/tile/", "/offset_fix/"))
    redone = [k for k in before if "/mask/" in k]
    assert redone and all(after[k] != before[k] for k in redone)


def test_a_later_period_updates_the_earlier_netcdf(tmp_path):
    """Over more dates than one NetCDF chunk holds (16), a later ``dates.end`` makes the
    new period's NetCDF from the earlier one: the job's log says it updated it and wrote
    again fewer regions of the cube than it has (the earlier time chunks are kept), and
    the product equals a full write of the same cube; the earlier product is kept as it
    was. This runs through Snakemake, which touches its outputs after each job."""
    import netCDF4
    from conftest import assert_same_netcdf

    from s2ts.netcdf import netcdf

    wd = make_workdir(tmp_path / "wd")
    start, end, later = "2021-01-01", "2021-07-01", "2021-07-10"
    base = {"aoi.path": str(ROOT / "resources" / "banc_arguin.geojson"), "dates.start": start}
    run(wd, config(wd, **base, **{"dates.end": end}))
    res, a = wd / "results", "1"  # the tutorial polygon's id
    old = dates_of(wd, a)
    assert len(old) > 16  # more than one time chunk
    earlier, product = res / a / f"{a}_{start}_{end}.nc", res / a / f"{a}_{start}_{later}.nc"
    kept = earlier.read_bytes()
    _, jobs = run(wd, config(wd, **base, **{"dates.end": later}))
    assert len(dates_of(wd, a)) > len(old) and ("netcdf", f"aoi={a}") in jobs
    log = (res / "logs" / "netcdf" / f"{a}.log").read_text()
    m = re.search(
        rf"updated {product.name} from {earlier.name} \({len(old)} dates\): (\d+) of the cube's (\d+) regions", log
    )
    assert m and 0 < int(m[1]) < int(m[2]), log
    assert earlier.read_bytes() == kept
    with netCDF4.Dataset(product) as ds:
        config_written = json.loads(ds.getncattr("configuration"))
    full = tmp_path / "full" / product.name
    netcdf(res / a / "gapfill.zarr", res / a / "manifest.json", config_written, full)
    assert_same_netcdf(product, full)
