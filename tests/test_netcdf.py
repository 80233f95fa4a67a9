"""NetCDF stage: a CF-1.8 file that xarray decodes to reflectance, rioxarray
georeferences, and the IOOS compliance checker accepts, with values checked against
what the synthetic inputs were built to contain."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from types import SimpleNamespace

import netCDF4
import numpy as np
import pyproj
import pytest
import xarray as xr
import yaml
from conftest import assert_same_netcdf, write_batch_store

from s2ts.errors import UserError
from s2ts.gapfill import gapfill, gapfill_from_snakemake
from s2ts.netcdf import netcdf, netcdf_from_snakemake

ROOT = Path(__file__).resolve().parent.parent
FILL = -32768
DAY = 86400
BANDS = ["B03", "B04", "B08"]
WIDTH, HEIGHT = 70, 45
# acquisition times: irregular, fractional seconds (dropped in the cube: whole seconds)
DATETIMES = [
    "2021-12-30T11:07:29.024000Z",
    "2022-01-04T11:07:31.500000Z",
    "2022-01-26T11:07:29.024000Z",
    "2022-03-02T11:06:59.000000Z",
    "2022-03-12T11:07:10.999000Z",
]


def make_grid(crs: str, x0: float, y0: float, r: float = 40.0) -> dict:
    c = pyproj.CRS.from_user_input(crs)
    return {
        "crs": crs,
        "epsg": c.to_epsg(),
        "crs_wkt": c.to_wkt(),
        "resolution": r,
        "bounds": [x0, y0, x0 + r * WIDTH, y0 + r * HEIGHT],
        "width": WIDTH,
        "height": HEIGHT,
        "transform": [r, 0.0, x0, 0.0, -r, y0 + r * HEIGHT],
    }


GRID_3035 = make_grid("EPSG:3035", 3426440.0, 2448400.0)
GRID_UTM = make_grid("EPSG:32630", 633720.0, 4934360.0, r=20.0)


def seconds(iso: str) -> int:
    return int(np.datetime64(iso.rstrip("Z"), "us").astype("datetime64[s]").astype(np.int64))


def item_ids(i: int) -> list[str]:
    day = DATETIMES[i][:10].replace("-", "")
    return [f"S2A_MSIL2A_{day}T110431_R137_T30TXQ", f"S2A_MSIL2A_{day}T110431_R137_T30TYQ"]


def build(tmp_path: Path, grid: dict, bands=BANDS):
    """Masked stores with known content, gap-filled; returns (cube path, manifest path, truth)."""
    rng = np.random.default_rng(42)
    n_t = len(DATETIMES)
    cubes = {b: rng.integers(-1000, 12000, (n_t, HEIGHT, WIDTH)).astype(np.int16) for b in bands}
    for b in bands:
        c = cubes[b]
        c[:, 0, 0] = FILL  # observed once, on date 1: 1234 everywhere after filling
        c[1, 0, 0] = 1234
        c[:, 1, 1] = FILL  # never observed
        c[1:4, 2, 2] = FILL  # 0 at date 0, 1000 at date 4: interpolated in between
        c[0, 2, 2], c[4, 2, 2] = 0, 1000
        # a dark pixel, offset removed: B03 + B08 = 0 and B08 + B04 = 0 (indices undefined)
        c[:, 3, 3] = {"B08": -700}.get(b, 700)
    valid = [0.97, 0.5, 0.25, 1.0, 0.125]
    records = [
        json.dumps(
            [{"id": iid, "datetime": when, "processing_baseline": "03.01" if i < 2 else "04.00"} for iid in item_ids(i)]
        )
        for i, when in enumerate(DATETIMES)
    ]
    offsets = [json.dumps({"applied": i >= 2, "value": -1000 if i >= 2 else 0}) for i in range(n_t)]
    attrs = {"stage": "mask", "aoi": "arguin", "grid": grid, "bands": list(bands)}
    paths = []
    for k, sel in enumerate([[0, 1], [2, 3, 4]]):  # two batches, given in reverse order below
        paths.append(
            write_batch_store(
                tmp_path / "masked" / f"b{k}.zarr",
                grid,
                {b: cubes[b][sel] for b in bands},
                attrs,
                [DATETIMES[i] for i in sel],
                valid_fraction=np.array(valid, np.float32)[sel],
                item_records=[records[i] for i in sel],
                offset_correction=[offsets[i] for i in sel],
            )
        )
    cube = tmp_path / "arguin" / "gapfill.zarr"
    gapfill(paths[::-1], cube, list(bands))
    manifest = tmp_path / "arguin" / "manifest.json"
    manifest.write_text(
        json.dumps(
            {
                "aoi": "arguin",
                "catalog": "https://planetarycomputer.microsoft.com/api/stac/v1",
                "collection": "sentinel-2-l2a",
                "counts": {"returned": 12, "matching": 10, "duplicates_removed": 0, "items": 10, "dates": 5},
                "search": {"start": "2021-12-01", "end_exclusive": "2022-04-01", "max_cloud_cover": 20},
                "dates": [d[:10] for d in DATETIMES],
            }
        )
    )
    return cube, manifest, {"cubes": cubes, "valid": valid}


def the_config() -> dict:
    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    cfg["bands"] = BANDS
    return cfg


@pytest.fixture(scope="module")
def nc_3035(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("nc3035")
    cube, manifest, truth = build(tmp, GRID_3035)
    out = tmp / "arguin" / "arguin.nc"
    config = the_config()
    netcdf(cube, manifest, config, out)
    return out, config, truth


def test_xarray_decodes_reflectance(nc_3035):
    out, _, truth = nc_3035
    with xr.open_dataset(out) as ds:
        for b in BANDS:
            da = ds[b]
            assert da.dims == ("time", "y", "x")
            assert da.dtype == np.float32
            np.testing.assert_allclose(da.values[:, 0, 0], 0.1234, atol=1e-6)  # DN 1234 -> 0.1234
            assert np.isnan(da.values[:, 1, 1]).all()  # never observed -> fill -> NaN
            t = np.array([seconds(s) for s in DATETIMES], dtype=np.float64)
            expected = 1000 * (t[1:4] - t[0]) / (t[4] - t[0])  # linear in real time
            np.testing.assert_allclose(da.values[1:4, 2, 2], np.rint(expected) / 10000, atol=1e-6)
            # observed values: DN / 10000
            dn = truth["cubes"][b]
            obs = dn != FILL
            np.testing.assert_allclose(da.values[obs], dn[obs] / 10000.0, atol=1e-6)
            assert da.attrs["standard_name"] == "surface_bidirectional_reflectance"
            assert da.attrs["units"] == "1"
            assert da.attrs["grid_mapping"] == "spatial_ref"
            assert da.encoding["dtype"] == np.int16
            assert da.encoding["scale_factor"] == pytest.approx(1e-4)
            assert da.encoding["add_offset"] == 0.0
            assert da.encoding["_FillValue"] == FILL


def test_coordinates_and_times(nc_3035):
    out, _, _ = nc_3035
    r = GRID_3035["resolution"]
    x0, _, _, y1 = GRID_3035["bounds"]
    with xr.open_dataset(out) as ds:
        np.testing.assert_allclose(ds.x.values, [x0 + r / 2 + r * i for i in range(WIDTH)], rtol=0, atol=1e-6)
        np.testing.assert_allclose(ds.y.values, [y1 - r / 2 - r * j for j in range(HEIGHT)], rtol=0, atol=1e-6)
        assert ds.x.attrs["standard_name"] == "projection_x_coordinate" and ds.x.attrs["units"] == "m"
        assert ds.y.attrs["axis"] == "Y"
        expected = np.array([np.datetime64(s.rstrip("Z"), "us").astype("datetime64[s]") for s in DATETIMES])
        np.testing.assert_array_equal(ds.time.values.astype("datetime64[s]"), expected)
        # lat/lon of pixel centres, independently from pyproj
        tr = pyproj.Transformer.from_crs("EPSG:3035", "EPSG:4326", always_xy=True)
        lon, lat = tr.transform(x0 + r / 2, y1 - r / 2)
        assert ds.lon.values[0, 0] == pytest.approx(lon, abs=1e-9)
        assert ds.lat.values[0, 0] == pytest.approx(lat, abs=1e-9)
    with netCDF4.Dataset(out) as nc:
        assert nc["time"].units.startswith("seconds since 1970-01-01")  # xarray drops a 00:00:00
        assert nc["time"].dtype == np.float64 and "_FillValue" not in nc["time"].ncattrs()
        assert nc["time"].standard_name == "time" and nc["time"].axis == "T"
        assert nc["time"].calendar == "proleptic_gregorian"
        assert [seconds(s) for s in DATETIMES] == [int(v) for v in nc["time"][:]]  # whole seconds
        for name in [*BANDS, "flag"]:
            assert nc[name].coordinates == "lat lon spatial_ref"


def test_rioxarray_reports_the_crs_3035(nc_3035):
    import rioxarray  # noqa: F401

    out, _, _ = nc_3035
    with xr.open_dataset(out) as ds:
        assert ds.rio.crs is not None and ds.rio.crs.to_epsg() == 3035
        assert ds["B04"].rio.crs.to_epsg() == 3035
        assert pyproj.CRS(ds.rio.crs.to_wkt()) == pyproj.CRS("EPSG:3035")
        assert tuple(ds["B04"].rio.transform())[:6] == pytest.approx(GRID_3035["transform"])
    with netCDF4.Dataset(out) as nc:
        gm = nc["spatial_ref"]
        assert gm.epsg_code == "EPSG:3035"
        assert gm.grid_mapping_name == "lambert_azimuthal_equal_area"
        assert pyproj.CRS.from_wkt(gm.crs_wkt) == pyproj.CRS("EPSG:3035")
        assert pyproj.CRS.from_wkt(gm.spatial_ref) == pyproj.CRS("EPSG:3035")


def test_rioxarray_reports_the_crs_utm(tmp_path):
    import rioxarray  # noqa: F401

    cube, manifest, _ = build(tmp_path, GRID_UTM)
    out = tmp_path / "utm.nc"
    netcdf(cube, manifest, the_config(), out)
    with xr.open_dataset(out) as ds:
        assert ds.rio.crs.to_epsg() == 32630
        assert pyproj.CRS(ds["B08"].rio.crs.to_wkt()) == pyproj.CRS("EPSG:32630")
        np.testing.assert_allclose(ds.x.values[:2], [633730.0, 633750.0])
    with netCDF4.Dataset(out) as nc:
        assert nc["spatial_ref"].grid_mapping_name == "transverse_mercator"
        assert nc["spatial_ref"].epsg_code == "EPSG:32630"


def test_flag_valid_fraction_source_items(nc_3035):
    out, _, truth = nc_3035
    with xr.open_dataset(out) as ds:
        f = ds.flag
        assert f.dims == ("time", "y", "x") and f.dtype == np.uint8
        assert list(f.attrs["flag_values"]) == [0, 1, 2, 3]
        assert f.attrs["flag_meanings"] == "missing observed interpolated end_filled"
        assert "scale_factor" not in f.encoding
        assert f.values[:, 0, 0].tolist() == [3, 1, 3, 3, 3]
        assert f.values[:, 1, 1].tolist() == [0, 0, 0, 0, 0]
        assert f.values[:, 2, 2].tolist() == [1, 2, 2, 2, 1]
        obs = truth["cubes"]["B04"] != FILL
        assert (f.values[obs] == 1).all() and (f.values[~obs] != 1).all()
        np.testing.assert_allclose(ds.valid_fraction.values, truth["valid"], atol=1e-7)
        assert ds.valid_fraction.dtype == np.float32
        assert list(ds.source_items.values) == [",".join(item_ids(i)) for i in range(len(DATETIMES))]
        assert list(ds.processing_baseline.values)[0] == "03.01,03.01"
        assert json.loads(str(ds.offset_correction.values[2])) == {"applied": True, "value": -1000}


def test_compressed_and_chunked_for_time_series(nc_3035):
    out, _, _ = nc_3035
    with netCDF4.Dataset(out) as nc:
        assert nc.data_model == "NETCDF4"
        for name in [*BANDS, "flag"]:
            v = nc[name]
            assert v.dimensions == ("time", "y", "x")
            assert v.chunking() == [len(DATETIMES), 32, 32]  # the cube's 16 dates, here all 5
            filt = v.filters()
            assert filt["zlib"] is True and filt["complevel"] == 1 and filt["shuffle"] is True
        assert nc["B04"].dtype == np.int16
        assert nc.dimensions["time"].isunlimited()  # a later product can grow from this one


def test_global_attributes(nc_3035):
    out, config, _ = nc_3035
    with netCDF4.Dataset(out) as nc:
        a = {k: nc.getncattr(k) for k in nc.ncattrs()}
    assert a["Conventions"] == "CF-1.8"
    for key in ("title", "summary", "history", "institution", "references", "date_created"):
        assert a[key].strip()
    assert a["source"] == (
        "Sentinel-2 L2A from https://planetarycomputer.microsoft.com/api/stac/v1 collection sentinel-2-l2a"
    )
    assert a["stac_catalog"] == "https://planetarycomputer.microsoft.com/api/stac/v1"
    assert a["stac_collection"] == "sentinel-2-l2a"
    assert a["aoi_id"] == "arguin"
    assert json.loads(a["configuration"]) == config
    versions = json.loads(a["software_versions"])
    for key in ("s2ts", "numpy", "zarr", "netCDF4", "pyproj"):
        assert versions[key]
    assert versions["netCDF4"] == netCDF4.__version__
    dt.datetime.fromisoformat(a["date_created"].replace("Z", "+00:00"))
    assert a["history"].startswith(a["date_created"][:10])


def test_no_token_or_query_string_written(tmp_path):
    cube, manifest, _ = build(tmp_path, GRID_3035)
    info = json.loads(manifest.read_text())
    info["catalog"] = "https://planetarycomputer.microsoft.com/api/stac/v1?st=2024&sig=SECRETSIG"
    manifest.write_text(json.dumps(info))
    config = the_config()
    config["stac"]["catalog"] = "https://example.org/stac?token=SECRETTOKEN#frag"
    out = tmp_path / "t.nc"
    netcdf(cube, manifest, config, out)
    raw = out.read_bytes()
    assert b"SECRET" not in raw and b"sig=" not in raw and b"token=" not in raw
    with netCDF4.Dataset(out) as nc:
        assert nc.stac_catalog == "https://planetarycomputer.microsoft.com/api/stac/v1"
        assert json.loads(nc.configuration)["stac"]["catalog"] == "https://example.org/stac"


def check_cf_1_8(out, tmp_path, no_network):
    from compliance_checker.runner import CheckSuite, ComplianceChecker

    report = tmp_path / "cf.json"
    CheckSuite.load_all_available_checkers()
    passed, errors = ComplianceChecker.run_checker(
        str(out), ["cf:1.8"], verbose=0, criteria="normal", output_filename=str(report), output_format="json"
    )
    result = json.loads(report.read_text())
    (res,) = result.values()
    failing = {level: [(c["name"], c["msgs"]) for c in res[level] if c["msgs"]] for level in ("high_priorities",)}
    assert errors is False
    assert passed is True, failing
    assert res["high_count"] == 0, failing
    assert not failing["high_priorities"]
    assert res["scored_points"] == res["possible_points"]  # not even a warning
    assert no_network == []  # offline: packaged standard-name table, no download


def test_compliance_checker_cf_1_8_no_errors(nc_3035, tmp_path, no_network):
    check_cf_1_8(nc_3035[0], tmp_path, no_network)


def test_written_atomically(tmp_path, monkeypatch):
    cube, manifest, _ = build(tmp_path, GRID_3035)
    out = tmp_path / "out" / "a.nc"
    config = the_config()
    config["bands"] = ["B03", "B11"]  # not in the cube
    with pytest.raises(UserError, match="B11"):
        netcdf(cube, manifest, config, out)
    assert not out.exists()

    real = xr.Dataset.to_netcdf

    def interrupted(self, path, *a, **k):  # the file is written, then the job is interrupted
        real(self, path, *a, **k)
        raise KeyboardInterrupt

    monkeypatch.setattr(xr.Dataset, "to_netcdf", interrupted)
    with pytest.raises(KeyboardInterrupt):
        netcdf(cube, manifest, the_config(), out)
    assert list(out.parent.iterdir()) == []  # neither the file nor a temporary left
    monkeypatch.undo()
    netcdf(cube, manifest, the_config(), out)
    assert sorted(p.name for p in out.parent.iterdir()) == [".a.nc.state.json", "a.nc"]  # the file and its sidecar


def test_from_snakemake_wrappers(tmp_path):
    cube, manifest, _ = build(tmp_path, GRID_3035)
    masked = sorted(str(p / "zarr.json") for p in (tmp_path / "masked").iterdir())
    smk = SimpleNamespace(
        input=SimpleNamespace(masked=masked),
        output=SimpleNamespace(cube=str(tmp_path / "again.zarr" / "zarr.json")),
        params=SimpleNamespace(bands=BANDS, fill_ends=True, max_gap_days=None),
        threads=2,
    )
    gapfill_from_snakemake(smk)
    smk = SimpleNamespace(
        input=SimpleNamespace(cube=str(tmp_path / "again.zarr" / "zarr.json"), manifest_info=str(manifest)),
        output=SimpleNamespace(nc=str(tmp_path / "again.nc")),
        params=SimpleNamespace(config=the_config()),
        threads=1,
    )
    netcdf_from_snakemake(smk)
    with xr.open_dataset(tmp_path / "again.nc") as ds:
        np.testing.assert_allclose(ds.B04.values[:, 0, 0], 0.1234, atol=1e-6)


# ----------------------------------------------------------------------------- spectral indices
INDEX_BANDS = ["B03", "B04", "B08", "B11"]
#: the published definitions, written out here (not read from s2ts.indices)
DEFINITIONS = {
    "NDWI": ("B03", "B08"),  # McFeeters 1996: (green - NIR) / (green + NIR)
    "NDVI": ("B08", "B04"),  # Rouse et al. 1974: (NIR - red) / (NIR + red)
    "MNDWI": ("B03", "B11"),  # Xu 2006: (green - SWIR1) / (green + SWIR1)
    "NDMI": ("B08", "B11"),  # Gao 1996, Wilson and Sader 2002: (NIR - SWIR1) / (NIR + SWIR1)
}


@pytest.fixture(scope="module")
def nc_indices(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ncidx")
    cube, manifest, truth = build(tmp, GRID_3035, INDEX_BANDS)
    out = tmp / "arguin" / "arguin.nc"
    config = the_config()
    config["bands"] = INDEX_BANDS
    config["indices"] = list(DEFINITIONS)
    netcdf(cube, manifest, config, out)
    return out, truth


def test_indices_equal_their_definitions(nc_indices):
    """Each index from the gap-filled reflectance as published: observed pixels straight from
    the synthetic DN, the interpolated pixel (2, 2) from its analytic DN, NaN where a band is
    missing (never observed) or the denominator is zero (the dark pixel (3, 3))."""
    out, truth = nc_indices
    t = np.array([seconds(s) for s in DATETIMES], dtype=np.float64)
    with netCDF4.Dataset(out) as nc:  # the file's gap-filled DN, as stored
        nc.set_auto_maskandscale(False)
        dn = {b: np.asarray(nc[b][:]).astype(np.float64) for b in INDEX_BANDS}
    refl = {b: np.where(v == FILL, np.nan, v * 1e-4) for b, v in dn.items()}
    with xr.open_dataset(out) as ds:
        for name, (a, b) in DEFINITIONS.items():
            v = ds[name]
            assert v.dtype == np.float32 and v.dims == ("time", "y", "x")
            assert v.encoding["dtype"] == np.float32
            dn_a, dn_b = truth["cubes"][a].astype(np.float64), truth["cubes"][b].astype(np.float64)
            obs = (dn_a != FILL) & (dn_b != FILL) & (dn_a + dn_b != 0)
            ratio = (dn_a - dn_b)[obs] / (dn_a + dn_b)[obs]
            np.testing.assert_allclose(v.values[obs], ratio, rtol=2e-6, atol=1e-7)
            # filled pixels: from the decoded reflectance, whatever the method
            with np.errstate(divide="ignore", invalid="ignore"):
                expected = (refl[a] - refl[b]) / (refl[a] + refl[b])
            finite = np.isfinite(expected)
            np.testing.assert_allclose(v.values[finite], expected[finite], rtol=2e-6, atol=1e-7)
            assert np.isnan(v.values[:, 1, 1]).all()  # never observed
            zero = (dn[a] + dn[b] == 0) & (dn[a] != FILL)
            assert zero[:, 3, 3].all() == (name != "MNDWI")  # B03 = B11 = 700, B08 = -700 at (3, 3)
            assert np.isnan(v.values[zero]).all()
            assert (np.isnan(v.values) == ~finite).all()
            dn_interp = np.rint(1000 * (t[1:4] - t[0]) / (t[4] - t[0]))  # (2, 2): 0 .. 1000 in every band
            np.testing.assert_allclose(v.values[1:4, 2, 2], 0.0, atol=1e-7)  # a - b = 0 there
            assert dn_interp.min() > 0
            attrs = v.attrs
            assert attrs["formula"] == f"({a} - {b}) / ({a} + {b})"
            assert attrs["units"] == "1" and attrs["grid_mapping"] == "spatial_ref"
    with netCDF4.Dataset(out) as nc:
        refs = {name: nc[name].references for name in DEFINITIONS}
        assert nc["NDVI"].standard_name == "normalized_difference_vegetation_index"
        assert "indices" in nc.configuration and "NDWI" in nc.summary
    assert "McFeeters" in refs["NDWI"] and "1996" in refs["NDWI"] and "10.1080/01431169608948714" in refs["NDWI"]
    assert "Rouse" in refs["NDVI"] and "1974" in refs["NDVI"]
    assert "Xu, H. (2006)" in refs["MNDWI"] and "10.1080/01431160600589179" in refs["MNDWI"]
    assert "Gao" in refs["NDMI"] and "Wilson" in refs["NDMI"]


def test_indices_on_pure_spectra():
    """Analytic values: water, vegetation and sand DN from the demo's spectra
    (docs/demo_catalog.md) give the textbook signs."""
    from s2ts.indices import index_values

    water = {"B03": np.int16(480), "B04": np.int16(260), "B08": np.int16(140)}
    forest = {"B03": np.int16(420), "B04": np.int16(300), "B08": np.int16(2400)}
    assert index_values("NDWI", water) == pytest.approx((480 - 140) / (480 + 140), rel=1e-6)  # 0.548
    assert index_values("NDVI", forest) == pytest.approx((2400 - 300) / 2700, rel=1e-6)  # 0.778
    assert index_values("NDWI", forest) < 0 < index_values("NDWI", water)
    missing = {"B03": np.int16(FILL), "B08": np.int16(140)}
    assert np.isnan(index_values("NDWI", missing))


def test_no_index_by_default_and_cf_with_indices(nc_3035, nc_indices, tmp_path, no_network):
    with netCDF4.Dataset(nc_3035[0]) as nc:
        assert not {"NDWI", "NDVI", "MNDWI", "NDMI"} & set(nc.variables)
    check_cf_1_8(nc_indices[0], tmp_path, no_network)


def netcdf_peak(tmp_path, n: int, n_t: int = 24) -> tuple[int, int]:
    """(cube bytes, peak Python-traced bytes while writing the NetCDF with NDWI) of a
    random n x n cube of 2 bands, gap-filled first (not measured)."""
    import tracemalloc

    grid = {**make_grid("EPSG:3035", 3426440.0, 2448400.0), "width": n, "height": n}
    grid["bounds"] = [3426440.0, 2448400.0, 3426440.0 + 40 * n, 2448400.0 + 40 * n]
    rng = np.random.default_rng(0)
    cubes = {b: rng.integers(0, 5000, (n_t, n, n)).astype(np.int16) for b in ("B03", "B08")}
    whens = [f"2022-{1 + i // 4:02d}-{1 + 7 * (i % 4):02d}T11:00:00Z" for i in range(n_t)]
    attrs = {"stage": "mask", "aoi": "big", "grid": grid, "bands": ["B03", "B08"]}
    p = write_batch_store(tmp_path / f"m{n}.zarr", grid, cubes, attrs, whens, valid_fraction=[1.0] * n_t)
    cube_bytes = sum(c.nbytes for c in cubes.values())
    del cubes
    gapfill([p], tmp_path / f"g{n}.zarr", ["B03", "B08"])
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"aoi": "big"}))
    config = {"bands": ["B03", "B08"], "indices": ["NDWI"], "mask": {"classes": [0]}}
    tracemalloc.start()
    try:
        netcdf(tmp_path / f"g{n}.zarr", manifest, config, tmp_path / f"big{n}.nc")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    with xr.open_dataset(tmp_path / f"big{n}.nc") as ds:
        assert np.isfinite(ds.NDWI.values[:, ::97, ::89]).all()
    return cube_bytes, peak


def test_indices_keep_the_write_chunk_by_chunk(tmp_path, monkeypatch):
    """With indices the NetCDF is still written chunk by chunk: from a 384 to a 768 pixel
    square cube (24 dates, 2 bands: 14 -> 57 MB), the peak of Python-traced memory grows by
    a small part of the cube's growth. A first version, the index as its own dask branch
    reading the bands, held the chunks until the end (166 MB for a 205 MB cube)."""
    import s2ts.gapfill as gf
    import s2ts.zarr_io as zio

    monkeypatch.setattr(zio, "CHUNK", 128)
    monkeypatch.setattr(gf, "CHUNK", 128)
    small, small_peak = netcdf_peak(tmp_path, 384)
    big, big_peak = netcdf_peak(tmp_path, 768)
    assert big_peak - small_peak < 0.1 * (big - small), (small_peak / 1e6, big_peak / 1e6)


def test_demo_indices_match_the_truth(options_run):
    """NDWI and NDVI of the options run at observed pixels against the same indices of
    the generator's clear-sky truth (measured on the whole demo: median 0.0003, 90th
    percentile 0.0012; up to 0.46 at shorelines, where a 40 m pixel mixes water and sand)."""
    from conftest import demo_truth_images

    nc = options_run / "1" / "1_2022-01-01_2022-04-01.nc"
    inside = np.load(options_run / "1" / "aoi" / "inside.npy").astype(bool)
    with xr.open_dataset(nc) as ds:
        times = ds.time.values
        truth = demo_truth_images(options_run, times)
        errors = {"NDWI": [], "NDVI": []}
        for i, t in enumerate(times):
            tb = truth[t]
            expected = {
                "NDWI": (tb["B03"] - tb["B08"]) / (tb["B03"] + tb["B08"]),
                "NDVI": (tb["B08"] - tb["B04"]) / (tb["B08"] + tb["B04"]),
            }
            observed = (ds.flag.values[i] == 1) & inside
            for name in errors:
                errors[name].append(np.abs(ds[name].values[i] - expected[name])[observed])
    for name, e in errors.items():
        e = np.concatenate(e)
        assert e.size > 100_000
        assert np.median(e) < 0.002 and np.percentile(e, 90) < 0.01, (name, np.percentile(e, [50, 90, 99, 100]))


# ----------------------------------------------------------------------------- updates for new dates
def update_scene(tmp_path, monkeypatch, before, after, changed=None, seed=3):
    """An earlier and a later gap-filled cube of one scene (each filled from scratch,
    as s2ts.gapfill's tests check that an update makes the same cube), small chunks:
    4 dates by 8 columns in the cube, 4 x 4 x 4 in the NetCDF, so that a product has
    many regions and a region many NetCDF chunks."""
    from test_gapfill import series_scene, write_series_stores

    import s2ts.gapfill as gf
    import s2ts.netcdf as ncmod

    monkeypatch.setattr(gf, "CHUNK", 8)
    monkeypatch.setattr(gf, "TIME_CHUNK", 4)
    monkeypatch.setattr(ncmod, "TIME_CHUNK", 4)
    monkeypatch.setattr(ncmod, "PIXEL_CHUNK", 4)
    grid, cubes, strings = series_scene(seed)
    earlier = cubes
    if changed is not None:  # the earlier run saw other values on those dates
        earlier = {b: c.copy() for b, c in cubes.items()}
        for c in earlier.values():
            c[changed] = np.where(c[changed] == FILL, 4321, FILL)
    paths = {}
    for name, c, dates in (("old", earlier, before), ("new", cubes, after)):
        paths[name] = tmp_path / name / "gapfill.zarr"
        gapfill(write_series_stores(tmp_path / f"masked-{name}", grid, c, strings, list(dates)), paths[name], BANDS)
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"aoi": "site_1", "catalog": "demo", "collection": "sentinel-2-l2a"}))
    return paths, manifest, cubes, strings


def period_config(end: str, indices=()) -> dict:
    cfg = the_config()
    cfg["dates"] = {"start": "2022-01-01", "end": end}
    cfg["indices"] = list(indices)
    return cfg


def changed_regions(old_cube, new_cube) -> int:
    """The cube chunks whose values differ between two cubes, from the values: a time
    chunk new or holding more dates, or a value of a band or the flag not the same."""
    from s2ts.zarr_io import open_dataset

    a, b = open_dataset(old_cube).load(), open_dataset(new_cube).load()
    ct, cy, cx = b["flag"].encoding["chunks"]
    n_old, n_new = a.sizes["time"], b.sizes["time"]
    count = 0
    for t0 in range(0, n_new, ct):
        for y0 in range(0, b.sizes["y"], cy):
            for x0 in range(0, b.sizes["x"], cx):
                sel = {"time": slice(t0, t0 + ct), "y": slice(y0, y0 + cy), "x": slice(x0, x0 + cx)}
                grown = min(ct, n_new - t0) != min(ct, max(0, n_old - t0))
                count += grown or any(
                    not np.array_equal(a[v].isel(sel).values, b[v].isel(sel).values) for v in [*BANDS, "flag"]
                )
    return count


UPDATED = {  # (dates of the earlier product, dates of the later one, dates the earlier cube had otherwise)
    "one-new-date": (range(29), range(30), None),
    "new-dates-across-time-chunks": (range(23), range(30), None),
    "changed-dates-in-the-middle": (range(30), range(30), [13, 14]),
    "nothing-changed": (range(30), range(30), None),
    "one-new-date-with-indices": (range(29), range(30), None),
}


@pytest.mark.parametrize("scenario", list(UPDATED))
def test_a_product_updated_from_an_earlier_one_equals_a_full_write(tmp_path, monkeypatch, caplog, scenario):
    """A later product made from an earlier one of its folder: the update path is
    taken, it writes again exactly the cube regions whose values changed (counted from
    the cubes' values), and the file equals a full write of the same cube (every
    variable's stored values, types, chunks, filters and attributes, the global
    attributes, the unlimited time dimension); the bands are the linear interpolation
    of the new series (numpy reference); the earlier product is kept as it was."""
    import logging

    from test_gapfill import epoch_seconds, reference_series

    before, after, changed = UPDATED[scenario]
    cubes_at, manifest, cubes, strings = update_scene(tmp_path, monkeypatch, before, after, changed)
    folder = tmp_path / "site_1"
    old_nc, new_nc = folder / "site_1_2022-01-01_2023-06-01.nc", folder / "site_1_2022-01-01_2023-07-01.nc"
    indices = ["NDWI", "NDVI"] if scenario.endswith("indices") else []
    netcdf(cubes_at["old"], manifest, period_config("2023-06-01", indices), old_nc, code="c1")
    kept = old_nc.read_bytes()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="netcdf"):
        netcdf(cubes_at["new"], manifest, period_config("2023-07-01", indices), new_nc, code="c1")
    n = changed_regions(cubes_at["old"], cubes_at["new"])
    assert f"updated {new_nc.name} from {old_nc.name} ({len(before)} dates): {n} of the cube's " in caplog.text
    assert (n == 0) == (scenario == "nothing-changed") and "written in full" not in caplog.text
    full = tmp_path / "full" / new_nc.name
    netcdf(cubes_at["new"], manifest, period_config("2023-07-01", indices), full, code="c1")
    assert_same_netcdf(new_nc, full)
    assert old_nc.read_bytes() == kept
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [old_nc.name, new_nc.name, f".{old_nc.name}.state.json", f".{new_nc.name}.state.json"]
    )
    times = np.array([epoch_seconds(strings[i]) for i in after], dtype=np.float64)
    with netCDF4.Dataset(new_nc) as ds:
        ds.set_auto_maskandscale(False)
        for b in BANDS:
            ref, ref_flag = reference_series(cubes[b][list(after)], times)
            got = np.asarray(ds[b][:])
            known = ref_flag > 0
            np.testing.assert_allclose(got[known], np.rint(ref[known]), atol=1)  # rounding ties
            assert (got[~known] == FILL).all()
        for name in indices:  # the indices of the written bands, by their definitions
            x, y = (np.asarray(ds[b][:], np.float64) for b in DEFINITIONS[name])
            with np.errstate(invalid="ignore", divide="ignore"):
                want = np.where((x == FILL) | (y == FILL) | (x + y == 0), np.nan, (x - y) / (x + y))
            np.testing.assert_allclose(np.asarray(ds[name][:]), want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    "change, reason",
    [
        ("dates-dropped", "are not the first dates of the new series"),
        ("other-settings", "no earlier product of the same settings"),
        ("other-code", "no earlier product of the same settings"),
        ("earlier-product-edited", "has changed since it was written"),
        ("earlier-product-touched", None),
        ("sidecar-damaged", "no earlier product of the same settings"),
        ("earlier-product-grown", "by updates, from"),
        ("most-regions-changed", "regions changed since"),
    ],
)
def test_a_product_that_cannot_be_updated_is_written_in_full(tmp_path, monkeypatch, caplog, change, reason):
    """Every case where an earlier product cannot be the base (its sidecar damaged
    included: no traceback): the log says why, and the product is the full write's. A base whose modification time alone changed (Snakemake
    touches its outputs) is still updated from."""
    import logging
    import os

    import s2ts.netcdf as ncmod

    before, after = (range(30), range(26)) if change == "dates-dropped" else (range(29), range(30))
    # most-regions-changed: the earlier cube had other values on every date
    changed = list(before) if change == "most-regions-changed" else None
    cubes_at, manifest, _, _ = update_scene(tmp_path, monkeypatch, before, after, changed)
    folder = tmp_path / "site_1"
    old_nc, new_nc = folder / "site_1_a.nc", folder / "site_1_b.nc"
    netcdf(cubes_at["old"], manifest, period_config("2023-06-01"), old_nc, code="c1")
    size = old_nc.stat().st_size
    config, code = period_config("2023-07-01"), "c1"
    if change == "other-settings":
        config["institution"] = "another lab"
    elif change == "other-code":
        code = "c2"
    elif change == "earlier-product-edited":  # a value changed in place, the file's size the same
        with netCDF4.Dataset(old_nc, "a") as ds:
            ds.set_auto_maskandscale(False)
            ds["B04"][0, 5, 5] = ds["B04"][0, 5, 5] + 1  # one DN
        assert old_nc.stat().st_size == size
    elif change == "earlier-product-touched":  # as Snakemake does to its outputs: still the base
        os.utime(old_nc, ns=(old_nc.stat().st_atime_ns, old_nc.stat().st_mtime_ns + 10**9))
    elif change == "sidecar-damaged":  # cut short, as by a full disk
        sidecar = folder / f".{old_nc.name}.state.json"
        sidecar.write_text(sidecar.read_text()[:200])
    elif change == "earlier-product-grown":
        monkeypatch.setattr(ncmod, "MAX_GROWTH", 0.9)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="netcdf"):
        netcdf(cubes_at["new"], manifest, config, new_nc, code=code)
    if reason is None:
        assert f"updated {new_nc.name} from {old_nc.name}" in caplog.text
    else:
        assert f"{new_nc.name} written in full: " in caplog.text and reason in caplog.text
        assert "updated" not in caplog.text
    full = tmp_path / "full" / new_nc.name
    netcdf(cubes_at["new"], manifest, config, full, code=code)
    assert_same_netcdf(new_nc, full)


def test_a_failed_update_leaves_the_earlier_product(tmp_path, monkeypatch):
    """An update interrupted while it writes: no new product, no temporary file, no
    sidecar for it; the earlier product and its sidecar are as they were. The next
    run updates it."""
    import s2ts.netcdf as ncmod

    cubes_at, manifest, _, _ = update_scene(tmp_path, monkeypatch, range(29), range(30))
    folder = tmp_path / "site_1"
    old_nc, new_nc = folder / "site_1_a.nc", folder / "site_1_b.nc"
    netcdf(cubes_at["old"], manifest, period_config("2023-06-01"), old_nc, code="c1")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    real = ncmod._encoded

    def failing(var, enc):
        if var.name == "flag":
            raise KeyboardInterrupt
        return real(var, enc)

    monkeypatch.setattr(ncmod, "_encoded", failing)
    with pytest.raises(KeyboardInterrupt):
        netcdf(cubes_at["new"], manifest, period_config("2023-07-01"), new_nc, code="c1")
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    monkeypatch.setattr(ncmod, "_encoded", real)
    netcdf(cubes_at["new"], manifest, period_config("2023-07-01"), new_nc, code="c1")
    full = tmp_path / "full" / new_nc.name
    netcdf(cubes_at["new"], manifest, period_config("2023-07-01"), full, code="c1")
    assert_same_netcdf(new_nc, full)
