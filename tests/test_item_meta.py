"""Item metadata read as real catalogs write it (real Planetary Computer items)."""

import datetime as dt

import pystac
import pytest
from conftest import load_features

from s2ts import item_meta as im


@pytest.mark.parametrize(
    "a, b",
    [("02.12", "04.00"), ("03.01", "04.00"), ("04.00", "05.00"), ("05.9", "05.10"), ("05.10", "05.11")],
)
def test_baselines_compare_as_versions(a, b):
    assert im.baseline_version(a) < im.baseline_version(b)
    # the text comparison is wrong for one of these: versions are not strings
    assert im.baseline_version("05.9") < im.baseline_version("05.10") and "05.9" > "05.10"


def test_baseline_of_real_items():
    seen = {
        im.baseline_version(f["properties"]["s2:processing_baseline"]) for f in load_features("tile-13TDE-2024.json")
    }
    assert seen == {(5, 10), (5, 11)}
    old = {
        im.baseline_version(f["properties"]["s2:processing_baseline"]) for f in load_features("tile-35MNM-2020.json")
    }
    assert old == {(2, 12)}
    assert im.baseline_version(None) is None


@pytest.mark.parametrize("name, epsg", [("tile-13TDE-2024.json", 32613), ("tile-35MNM-2020.json", 32735)])
def test_epsg_from_raw_and_pystac_migrated_items(name, epsg):
    raw = load_features(name)[0]
    assert "proj:epsg" in raw["properties"]
    migrated = pystac.Item.from_dict({**raw, "links": []}).to_dict()
    # pystac >= 1.12 rewrites proj:epsg as proj:code: both forms must be read
    assert "proj:epsg" not in migrated["properties"] and migrated["properties"]["proj:code"] == f"EPSG:{epsg}"
    assert im.item_epsg(raw) == epsg
    assert im.item_epsg(migrated) == epsg
    assert im.item_epsg(migrated, "B03") == epsg


def test_solar_day_shifts_by_longitude():
    t = dt.datetime(2024, 6, 1, 23, 30, tzinfo=dt.UTC)
    assert im.solar_day(t, 150.0) == dt.date(2024, 6, 2)  # +10 h: next day
    assert im.solar_day(t, 0.0) == dt.date(2024, 6, 1)
    assert im.solar_day(dt.datetime(2024, 6, 1, 1, 0, tzinfo=dt.UTC), -105.0) == dt.date(2024, 5, 31)


def test_real_item_fields():
    f = load_features("tile-13TDE-2024.json")[0]
    assert im.platform(f) == "Sentinel-2B"
    assert im.mgrs_tile(f) == "13TDE"
    assert im.relative_orbit(f) == 98
    assert im.item_datetime(f) == dt.datetime(2024, 12, 3, 17, 46, 29, 24000, tzinfo=dt.UTC)
    assert im.parsed_id(f)["generated"] == "20241203T211406"


def test_secrets_are_stripped_from_hrefs():
    signed = (
        "https://x.blob.core.windows.net/c/B03.tif?st=2024-01-01&se=2024-01-02&sp=rl&sv=2021&sr=c&sig=AbC%3D&keep=1"
    )
    assert im.strip_secrets(signed) == "https://x.blob.core.windows.net/c/B03.tif?keep=1"
    assert im.normalise_href("file:///data/a%20b/B03.tif") == "/data/a b/B03.tif"


def test_secrets_are_scrubbed_from_log_lines():
    """GDAL's retry warning and odc-stac's error name the signed URL mid-sentence."""
    line = (
        "CPLE_AppDefined in HTTP error code: 503 - http://a.blob.core.windows.net/d/S2B_X/B03.tif"
        "?st=2026-01-01T00%3A00%3A00Z&se=2026&sp=rl&sv=2021-06-08&sr=c&skoid=x&sig=SeCrEt. Retrying again in 1.0 secs"
        " / Failed to load 'https://b.blob.core.windows.net/c/SCL.tif?sig=OtHeR&keep=1'"
    )
    out = im.scrub_secrets(line)
    assert "SeCrEt" not in out and "OtHeR" not in out and "sig=" not in out and "skoid" not in out
    assert (
        "503 - http://a.blob.core.windows.net/d/S2B_X/B03.tif" in out and out.count("Retrying again in 1.0 secs") == 1
    )
    assert "'https://b.blob.core.windows.net/c/SCL.tif?keep=1'" in out
    assert im.scrub_secrets("no url here: B03 of item X") == "no url here: B03 of item X"


# Sentinel-2 L2A reflectance assets and the scene classification (../shared/reference/sentinel-2-facts.md)
REFLECTANCE = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12"]


@pytest.mark.parametrize("name", ["tile-13TDE-2024.json", "tile-35MNM-2020.json"])
def test_classification_band_told_from_real_asset_metadata(name):
    """Planetary Computer assets: SCL has no classification extension, only its title
    (misspelt "classfication"); reflectance bands have centre wavelengths; AOT and WVP
    say nothing either way (their pixels must decide)."""
    for f in load_features(name):
        assets = f["assets"]
        assert im.classification_evidence(assets["SCL"]) == (True, "its title is 'Scene classfication map (SCL)'")
        for b in REFLECTANCE + ["visual"]:
            is_class, why = im.classification_evidence(assets[b])
            assert is_class is False and why.startswith("it is a spectral band (centre wavelength"), b
        assert im.classification_evidence(assets["AOT"]) == (None, "")
        assert im.classification_evidence(assets["WVP"]) == (None, "")


@pytest.mark.parametrize(
    "asset, expected",
    [
        # Earth Search v1 style: roles and raster:bands
        ({"title": "Red (band 4) - 10m", "roles": ["data", "reflectance"]}, False),
        ({"title": "Scene classification map (SCL)", "raster:bands": [{"data_type": "uint8"}]}, True),
        (
            {"title": "Aerosol optical thickness (AOT)", "raster:bands": [{"data_type": "uint16", "scale": 0.001}]},
            False,
        ),
        # the classification extension, at asset level or per band (STAC 1.1 "bands")
        ({"classification:classes": [{"value": 9, "name": "cloud_high"}]}, True),
        ({"bands": [{"classification:classes": [{"value": 0, "name": "nodata"}]}]}, True),
        ({"bands": [{"eo:center_wavelength": 0.665, "data_type": "uint16"}]}, False),
        ({"raster:bands": [{"data_type": "float32"}]}, False),
        ({"title": "Band 4", "type": "image/tiff"}, None),
        ({}, None),
    ],
)
def test_classification_evidence_of_other_metadata_forms(asset, expected):
    assert im.classification_evidence(asset)[0] is expected
