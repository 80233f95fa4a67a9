"""CSV export stage: the long table holds exactly the NetCDF's values, one row per date
and pixel, missing values as empty fields; on the demo run it is requested by
export.csv and readable by pandas."""

from __future__ import annotations

import gzip
import sys
from pathlib import Path
from types import SimpleNamespace

import netCDF4
import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from test_figures import H, W, build_synthetic, short_demo_run  # noqa: E402

from s2ts.csv_export import csv_export, csv_export_from_snakemake  # noqa: E402
from s2ts.errors import UserError  # noqa: E402


def nc_values(nc) -> dict:
    with netCDF4.Dataset(nc) as ds:
        ds.set_auto_maskandscale(False)
        out = {b: np.asarray(ds[b][:]) for b in ("B03", "B04", "B08")}
        out["flag"] = np.asarray(ds["flag"][:]).view(np.uint8)
        out["time"] = np.asarray(ds["time"][:])
        out["x"], out["y"] = np.asarray(ds["x"][:]), np.asarray(ds["y"][:])
    return out


def check_table(df: pd.DataFrame, v: dict, inside: np.ndarray) -> None:
    n_t, h, w = v["B08"].shape
    assert list(df.columns) == ["time", "x", "y", "inside", "B03", "B04", "B08", "flag"]
    assert len(df) == n_t * h * w
    t = (pd.to_datetime(df["time"]) - pd.Timestamp("1970-01-01", tz="UTC")) // pd.Timedelta(seconds=1)
    np.testing.assert_array_equal(t.to_numpy().reshape(n_t, -1)[:, 0], v["time"].astype(np.int64))
    np.testing.assert_array_equal(df["x"].to_numpy().reshape(n_t, h, w)[0, 0], v["x"])
    np.testing.assert_array_equal(df["y"].to_numpy().reshape(n_t, h, w)[0, :, 0], v["y"])
    np.testing.assert_array_equal(df["inside"].to_numpy().reshape(n_t, h, w)[0], inside.astype(int))
    for b in ("B03", "B04", "B08"):
        got = df[b].to_numpy().reshape(n_t, h, w)
        dn = v[b]
        np.testing.assert_array_equal(np.isnan(got), dn == -32768)
        np.testing.assert_allclose(got[dn != -32768], dn[dn != -32768] * 1e-4, atol=5e-9)
    np.testing.assert_array_equal(df["flag"].to_numpy().reshape(n_t, h, w), v["flag"])


def test_synthetic_cube_round_trips(tmp_path):
    built = build_synthetic(tmp_path)
    inside = np.load(built["aoi"] / "aoi" / "inside.npy")
    out = tmp_path / "syn.csv.gz"
    smk = SimpleNamespace(
        input=SimpleNamespace(nc=str(built["nc"]), inside=str(built["aoi"] / "aoi" / "inside.npy")),
        output=SimpleNamespace(csv=str(out)),
    )
    csv_export_from_snakemake(smk)
    assert out.read_bytes()[:2] == b"\x1f\x8b"  # gzip
    df = pd.read_csv(out)
    check_table(df, nc_values(built["nc"]), inside)
    assert df.shape[0] == 6 * H * W
    # plain CSV when the name does not end in .gz; same content
    plain = tmp_path / "syn.csv"
    assert csv_export(built["nc"], built["aoi"] / "aoi" / "inside.npy", plain) == 6 * H * W
    assert plain.read_bytes() == gzip.decompress(out.read_bytes())
    assert list(tmp_path.glob(".*tmp-*")) == []


def test_missing_values_are_empty_fields(tmp_path):
    built = build_synthetic(tmp_path)
    with netCDF4.Dataset(built["nc"], "a") as ds:  # one missing value, as when max_gap_days leaves gaps
        ds.set_auto_maskandscale(False)
        ds["B04"][0, 0, 0] = -32768
        ds["flag"][0, 0, 0] = 0
    out = tmp_path / "m.csv"
    csv_export(built["nc"], built["aoi"] / "aoi" / "inside.npy", out)
    first = out.read_text().splitlines()[1].split(",")
    assert first[5] == "" and first[7] == "0"
    assert "nan" not in out.read_text()


def test_not_a_workflow_netcdf(tmp_path):
    nc = tmp_path / "x.nc"
    with netCDF4.Dataset(nc, "w") as ds:
        ds.createDimension("time", 1)
    with pytest.raises(UserError, match="not a workflow NetCDF"):
        csv_export(nc, None, tmp_path / "x.csv")


def test_demo_run_exports_the_netcdf(tmp_path_factory):
    results = short_demo_run(tmp_path_factory)
    out = next((results / "1").glob("1_*.csv.gz"))
    nc = out.with_name(out.name.replace(".csv.gz", ".nc"))
    assert nc.exists()
    df = pd.read_csv(out)
    check_table(df, nc_values(nc), np.load(results / "1" / "aoi" / "inside.npy"))
    assert "date" in (results / "logs" / "csv_export" / "1.log").read_text()


def test_indices_are_columns_with_their_values(tmp_path):
    """With indices in the NetCDF: one column each after the bands, the index of the
    pixel's DN by its definition (6 decimals), empty where undefined; the reflectance
    columns stay DN x 0.0001 (an index is never scaled as a band)."""
    import yaml

    from s2ts.netcdf import netcdf

    built = build_synthetic(tmp_path)
    aoi = built["aoi"]
    config = yaml.safe_load((Path(__file__).resolve().parent.parent / "config.yaml").read_text())
    config["indices"] = ["NDWI", "NDVI"]
    nc = tmp_path / "idx.nc"
    netcdf(aoi / "gapfill.zarr", aoi / "manifest.json", config, nc)
    with netCDF4.Dataset(nc, "a") as ds:  # one missing B08 value (max_gap_days): NDWI, NDVI undefined there
        ds.set_auto_maskandscale(False)
        ds["B08"][0, 0, 0] = -32768
        ds["NDWI"][0, 0, 0] = ds["NDVI"][0, 0, 0] = np.nan
    out = tmp_path / "idx.csv"
    csv_export(nc, aoi / "aoi" / "inside.npy", out)
    df = pd.read_csv(out)
    assert list(df.columns) == ["time", "x", "y", "inside", "B03", "B04", "B08", "NDWI", "NDVI", "flag"]
    v = nc_values(nc)
    n_t, h, w = v["B08"].shape
    b03, b04, b08 = (v[b].astype(np.float64) for b in ("B03", "B04", "B08"))
    with np.errstate(divide="ignore", invalid="ignore"):
        ndwi = np.where(b08 == -32768, np.nan, (b03 - b08) / (b03 + b08))
        ndvi = np.where(b08 == -32768, np.nan, (b08 - b04) / (b08 + b04))
    for name, expected in (("NDWI", ndwi), ("NDVI", ndvi)):
        got = df[name].to_numpy().reshape(n_t, h, w)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
        np.testing.assert_allclose(got[~np.isnan(got)], expected[~np.isnan(expected)], atol=5.1e-7)
    assert np.isnan(df["NDWI"][0]) and out.read_text().splitlines()[1].split(",")[7:9] == ["", ""]
    np.testing.assert_allclose(df["B03"].to_numpy().reshape(n_t, h, w), b03 * 1e-4, atol=5e-9)


def test_options_run_exports_the_indices(tmp_path_factory):
    from conftest import options_demo_run

    results = options_demo_run(tmp_path_factory)
    out = results / "1" / "1_2022-01-01_2022-04-01.csv.gz"
    df = pd.read_csv(out)
    assert list(df.columns) == ["time", "x", "y", "inside", "B03", "B04", "B08", "NDWI", "NDVI", "flag"]
    with netCDF4.Dataset(out.with_name("1_2022-01-01_2022-04-01.nc")) as ds:
        ndwi = np.asarray(ds["NDWI"][:], dtype=np.float64)
    got = df["NDWI"].to_numpy().reshape(ndwi.shape)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ndwi))
    np.testing.assert_allclose(got[~np.isnan(got)], ndwi[~np.isnan(ndwi)], atol=5.1e-7)
