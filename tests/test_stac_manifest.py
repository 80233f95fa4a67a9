"""STAC manifest stage on real Planetary Computer item metadata, from a static
catalog and from a real STAC API server (rustac) on 127.0.0.1."""

import copy
import csv
import json

import numpy as np
import pytest
import shapely.geometry
from conftest import MPC_ITEMS, free_port, load_features, local_item, write_static_catalog

from s2ts.errors import UserError
from s2ts.stac_manifest import stac_manifest

# A field near Boulder, Colorado, inside MGRS tile 13TDE.
AOI_13TDE = shapely.geometry.box(-105.15, 39.95, -105.05, 40.05)


def write_grid(path, geom, aoi_id="site"):
    lon = geom.centroid.x
    path.write_text(
        json.dumps(
            {
                "id": aoi_id,
                "geometry_4326": shapely.geometry.mapping(geom),
                "bbox_4326": list(geom.bounds),
                "centroid_4326": [lon, geom.centroid.y],
            }
        )
    )
    return path


def run_manifest(tmp_path, catalog, geom=AOI_13TDE, cc=20, start="2024-01-01", end="2025-01-01", timeout=60, **kw):
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    grid = write_grid(tmp_path / "grid.json", geom)
    args = dict(bands=["B03", "B04", "B08"], mask_band="SCL", collection="sentinel-2-l2a")
    args.update(kw)
    info = stac_manifest(
        grid,
        str(catalog),
        args["collection"],
        start,
        end,
        cc,
        args["bands"],
        args["mask_band"],
        out / "manifest.csv",
        out / "manifest.json",
        out / "items",
        timeout=timeout,
    )
    rows = list(csv.DictReader(open(out / "manifest.csv")))
    return info, rows, out


def expected_ids(features, geom, cc, start="2024-01-01", end="2025-01-01"):
    """Independent reading of the raw JSON: the items the search must keep. The
    recorded items hold a real reprocessing (same product id up to the generation
    time): keep the highest baseline, then the latest generation."""
    box = shapely.geometry.box(*geom.bounds)
    best = {}
    for f in features:
        p = f["properties"]
        if p["eo:cloud_cover"] < cc and start <= p["datetime"][:10] < end:
            if shapely.geometry.shape(f["geometry"]).intersects(box):
                product = f["id"].rsplit("_", 1)[0]
                rank = (p["s2:processing_baseline"], f["id"])
                best[product] = max(best.get(product, rank), rank)
    return sorted(r[1] for r in best.values())


@pytest.fixture
def tde(tmp_path):
    feats = load_features("tile-13TDE-2024.json")
    return feats, write_static_catalog(tmp_path / "cat", feats)


def test_static_catalog_cloud_filter_and_solar_days(tmp_path, tde):
    feats, cat = tde
    info, rows, out = run_manifest(tmp_path, cat)
    want = expected_ids(feats, AOI_13TDE, 20)
    assert 10 < len(want) < len(feats)  # the filter has real work on these items
    assert sorted(r["id"] for r in rows) == want
    assert all(float(r["cloud_cover"]) < 20 for r in rows)
    # 17:4x UTC at 105 W is 10:4x local solar time: same calendar day
    for r in rows:
        assert r["date"] == r["datetime"][:10]
        assert r["epsg"] == "32613" and r["mgrs_tile"] == "13TDE"
        assert r["processing_baseline"] in ("05.10", "05.11")
        assert r["href_B03"].startswith("https://") and r["href_SCL"].endswith("_SCL_20m.tif")
    # one item file per solar day, holding exactly that day's items
    files = sorted(p.stem for p in (out / "items").glob("*.json"))
    assert files == sorted({r["date"] for r in rows}) == info["dates"]
    for d in files:
        fc = json.loads((out / "items" / f"{d}.json").read_text())
        assert sorted(f["id"] for f in fc["features"]) == sorted(r["id"] for r in rows if r["date"] == d)
        assert all("links" not in f for f in fc["features"])
    assert info["counts"]["items"] == len(want)


def test_cloud_cover_100_keeps_everything(tmp_path, tde):
    feats, cat = tde
    _, rows, _ = run_manifest(tmp_path, cat, cc=100)
    assert sorted(r["id"] for r in rows) == expected_ids(feats, AOI_13TDE, 101)


def test_same_manifest_from_static_catalog_and_rustac_api(tmp_path, tde, rustac_server):
    feats, cat = tde
    _, rows_static, out_static = run_manifest(tmp_path / "a", cat) if (tmp_path / "a").mkdir() is None else None
    fc = tmp_path / "items.json"
    fc.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    server = rustac_server(MPC_ITEMS / "collection.json", fc)
    (tmp_path / "b").mkdir()
    info, rows_api, out_api = run_manifest(tmp_path / "b", server.url)
    assert "client" in info["search"]["how"]  # rustac does not conform to query
    assert (out_api / "manifest.csv").read_bytes() == (out_static / "manifest.csv").read_bytes()
    assert sorted(p.name for p in (out_api / "items").iterdir()) == sorted(
        p.name for p in (out_static / "items").iterdir()
    )
    assert len(rows_api) == len(rows_static) > 0


def test_old_baseline_items_and_southern_hemisphere(tmp_path):
    feats = load_features("tile-35MNM-2020.json")
    cat = write_static_catalog(tmp_path / "cat", feats)
    geom = shapely.geometry.box(27.4, -7.8, 27.5, -7.7)
    _, rows, _ = run_manifest(tmp_path, cat, geom=geom, cc=100, start="2020-01-01", end="2021-01-01")
    assert len(rows) == len(expected_ids(feats, geom, 101, "2020-01-01", "2021-01-01")) > 0
    assert {r["epsg"] for r in rows} == {"32735"}
    assert {r["processing_baseline"] for r in rows} == {"02.12"}


def test_reprocessed_duplicates_reduce_to_newest_baseline(tmp_path):
    feats = load_features("tile-13TDE-2024.json")
    base = next(f for f in feats if f["properties"]["eo:cloud_cover"] < 5)
    dup = copy.deepcopy(base)
    dup["id"] = base["id"][:-15] + "20250101T000000"
    dup["properties"]["s2:processing_baseline"] = "05.99"
    cat = write_static_catalog(tmp_path / "cat", [base, dup])
    info, rows, _ = run_manifest(tmp_path, cat)
    assert [r["id"] for r in rows] == [dup["id"]]
    assert info["counts"]["duplicates_removed"] == 1


def test_no_items_gives_empty_manifest_and_warning(tmp_path, tde, caplog):
    _, cat = tde
    far = shapely.geometry.box(-1.28, 44.55, -1.20, 44.63)  # Arcachon: not in tile 13TDE
    info, rows, out = run_manifest(tmp_path, cat, geom=far)
    assert rows == []
    assert (out / "manifest.csv").read_text().startswith("date,id,datetime")
    assert list((out / "items").iterdir()) == []
    assert "no sentinel-2-l2a item" in info["warning"]
    # a warning the user must see: flagged for the terminal, not only the job's log
    assert [r.getMessage() for r in caplog.records if getattr(r, "console", False)] == [info["warning"]]


def test_unknown_collection(tmp_path, tde, rustac_server):
    feats, cat = tde
    with pytest.raises(UserError, match="'sentinel-2-l1c' is not a collection.*Available: sentinel-2-l2a"):
        run_manifest(tmp_path, cat, collection="sentinel-2-l1c")
    fc = tmp_path / "items.json"
    fc.write_text(json.dumps({"type": "FeatureCollection", "features": feats[:3]}))
    server = rustac_server(MPC_ITEMS / "collection.json", fc)
    with pytest.raises(UserError, match="'sentinel-2-l1c' is not a collection.*Available: sentinel-2-l2a"):
        run_manifest(tmp_path, server.url, collection="sentinel-2-l1c")
    assert not (tmp_path / "out" / "manifest.csv").exists()


def test_mask_band_not_in_catalog(tmp_path, tde):
    _, cat = tde
    with pytest.raises(UserError, match="mask band 'CLM' is not an asset"):
        run_manifest(tmp_path, cat, mask_band="CLM")
    assert not (tmp_path / "out" / "manifest.csv").exists()


def test_catalog_path_that_is_not_stac(tmp_path):
    bogus = tmp_path / "catalog.json"
    bogus.write_text(json.dumps({"hello": "world"}))
    with pytest.raises(UserError, match="is not a STAC catalog"):
        run_manifest(tmp_path, bogus)
    with pytest.raises(UserError, match="neither a URL nor an existing file"):
        run_manifest(tmp_path, tmp_path / "missing.json")


def test_unreachable_catalog_url_suggests_demo(tmp_path):
    url = f"http://127.0.0.1:{free_port()}/api/stac/v1"
    with pytest.raises(UserError, match="cannot reach the STAC catalog.*stac.catalog: demo"):
        run_manifest(tmp_path, url)
    assert not (tmp_path / "out" / "manifest.csv").exists()


# ----------------------------------------------------------------- the mask band
@pytest.mark.parametrize(
    "bands, mask_band, why",
    [
        (["B03", "B04"], "B08", "it is a spectral band"),  # a reflectance band the run does not load
        (["B03", "B04", "B08"], "visual", "it is a spectral band"),  # the true-colour composite
    ],
)
def test_mask_band_that_is_not_a_classification_is_refused(tmp_path, tde, bands, mask_band, why):
    """Real Planetary Computer metadata: B08 and the true-colour image carry eo:bands
    with centre wavelengths; SCL is the item's classification band."""
    _, cat = tde
    with pytest.raises(UserError) as err:
        run_manifest(tmp_path, cat, bands=bands, mask_band=mask_band)
    msg = str(err.value)
    assert msg.startswith(f"mask.band: '{mask_band}' of item S2")
    assert f"is not a classification band ({why}" in msg
    assert "must be a scene classification band such as SCL" in msg and "not a reflectance band" in msg
    assert "This item's classification band: SCL." in msg
    assert not (tmp_path / "out" / "manifest.csv").exists() and not (tmp_path / "out" / "items").exists()


def silent_items(tmp_path, base):
    """Two items on local COGs whose assets say nothing of what they hold (no title,
    roles, eo:bands or raster:bands): only the pixels can tell."""
    rng = np.random.default_rng(3)
    bands = {b: rng.integers(300, 3000, (64, 64), dtype=np.uint16) for b in ("B03", "B04", "B08")}
    scl = rng.choice(np.array([4, 5, 6, 8, 9], dtype=np.uint8), (32, 32))
    items = []
    for k, day in enumerate(("2024-06-06", "2024-06-16")):
        it = local_item(
            base, tmp_path / "cog", bands, scl, 480000.0, 4430000.0, item_id=f"silent-{k}", datetime=f"{day}T17:40:00Z"
        )
        for a in it["assets"].values():
            for key in ("title", "roles", "eo:bands", "raster:bands"):
                a.pop(key, None)
        items.append(it)
    return items, bands


def test_mask_band_judged_by_its_pixels_when_metadata_is_silent(tmp_path, tde):
    feats, _ = tde
    items, bands = silent_items(tmp_path, feats[0])
    cat = write_static_catalog(tmp_path / "cat", items)
    aoi = shapely.geometry.shape(items[0]["geometry"]).buffer(-0.001)
    # SCL: classes 4-9 in the file -> accepted
    (tmp_path / "scl").mkdir()
    _, rows, _ = run_manifest(tmp_path / "scl", cat, geom=aoi, cc=100, bands=["B03", "B08"], mask_band="SCL")
    assert [r["id"] for r in rows] == ["silent-0", "silent-1"]
    # B04 as the mask band (not loaded as a band): DN up to bands["B04"].max() -> refused
    (tmp_path / "b04").mkdir()
    with pytest.raises(UserError) as err:
        run_manifest(tmp_path / "b04", cat, geom=aoi, cc=100, bands=["B03", "B08"], mask_band="B04")
    msg = str(err.value)
    assert f"its pixels reach {int(bands['B04'].max())}" in msg and "such as SCL" in msg
    assert not (tmp_path / "b04" / "out" / "manifest.csv").exists()


# ----------------------------------------------------------------- assets without href
def without_href(feature, key):
    f = copy.deepcopy(feature)
    del f["assets"][key]["href"]
    return f


def test_asset_without_href_names_item_and_asset(tmp_path, tde, stac_api):
    feats, _ = tde
    broken = without_href(feats[0], "B04")
    for name, make in [
        ("static", lambda: write_static_catalog(tmp_path / "cat", [broken, *feats[1:]])),
        ("api", lambda: stac_api([broken, *feats[1:]]).url),
    ]:
        (tmp_path / name).mkdir()
        with pytest.raises(UserError) as err:
            run_manifest(tmp_path / name, make(), cc=100)
        msg = str(err.value)
        assert f"item {broken['id']} in " in msg and "asset 'B04' (bands) without href" in msg, name
        assert "fix that item's JSON" in msg
        assert not (tmp_path / name / "out" / "manifest.csv").exists()


def test_unused_asset_without_href_is_left_out(tmp_path, tde, stac_api):
    """An asset the run does not read (AOT) may lack its href: the item is kept, that asset dropped."""
    feats, _ = tde
    broken = without_href(feats[0], "AOT")
    for name, make in [
        ("static", lambda: write_static_catalog(tmp_path / "cat", [broken, *feats[1:]])),
        ("api", lambda: stac_api([broken, *feats[1:]]).url),
    ]:
        (tmp_path / name).mkdir()
        _, rows, out = run_manifest(tmp_path / name, make(), cc=100)
        row = next(r for r in rows if r["id"] == broken["id"])
        fc = json.loads((out / "items" / f"{row['date']}.json").read_text())
        kept = next(f for f in fc["features"] if f["id"] == broken["id"])
        assert "AOT" not in kept["assets"] and {"B03", "B04", "B08", "SCL"} <= set(kept["assets"]), name


# ----------------------------------------------------------------- solar days
def test_solar_days_cross_midnight_utc(tmp_path, tde):
    """Kamchatka, 158.65 E: local solar time is UTC + 10 h 34.6 min. Acquisitions at
    23:55 UTC on 10 June and 00:05 UTC on 11 June are both the morning of 11 June
    (10:29.6 and 10:39.6 solar time): one date. 23:50 UTC on 13 June is the morning of
    the 14th. UTC calendar dates would give three dates: 06-10, 06-11, 06-13."""
    feats, _ = tde
    aoi = shapely.geometry.box(158.60, 53.00, 158.70, 53.10)
    footprint = shapely.geometry.mapping(shapely.geometry.box(158.0, 52.5, 159.5, 53.6))
    items = []
    for k, when in enumerate(["2024-06-10T23:55:00Z", "2024-06-11T00:05:00Z", "2024-06-13T23:50:00Z"]):
        f = copy.deepcopy(feats[k])
        f["id"] = f"kamchatka-{k}"
        f["geometry"], f["bbox"] = footprint, [158.0, 52.5, 159.5, 53.6]
        f["properties"].update({"datetime": when, "eo:cloud_cover": 1.0, "s2:mgrs_tile": f"57UV{'ABC'[k]}"})
        items.append(f)
    cat = write_static_catalog(tmp_path / "cat", items)
    info, rows, out = run_manifest(tmp_path, cat, geom=aoi)
    want = {"2024-06-11": ["kamchatka-0", "kamchatka-1"], "2024-06-14": ["kamchatka-2"]}
    assert {r["id"]: r["date"] for r in rows} == {i: d for d, ids in want.items() for i in ids}
    assert info["dates"] == sorted(want)
    for date, ids in want.items():
        fc = json.loads((out / "items" / f"{date}.json").read_text())
        assert sorted(f["id"] for f in fc["features"]) == ids
    assert sorted(p.stem for p in (out / "items").glob("*.json")) == sorted(want)


# ----------------------------------------------------------------- baselines as versions
@pytest.mark.parametrize("higher, lower", [("05.10", "05.9"), ("10.00", "9.99"), ("10.00", "09.99")])
def test_reprocessings_keep_the_numerically_highest_baseline(tmp_path, tde, higher, lower):
    """Two reprocessings of one product: the one with the higher baseline as a version
    wins although the other has the later generation time and the larger id (so text,
    float or generation order would all pick the wrong one in the first two cases)."""
    feats, _ = tde
    base = next(f for f in feats if f["properties"]["eo:cloud_cover"] < 5)
    product = base["id"].rsplit("_", 1)[0]
    keep, drop = copy.deepcopy(base), copy.deepcopy(base)
    keep["id"], drop["id"] = f"{product}_20250101T000000", f"{product}_20250202T000000"
    keep["properties"].update({"s2:processing_baseline": higher, "s2:generation_time": "2025-01-01T00:00:00Z"})
    drop["properties"].update({"s2:processing_baseline": lower, "s2:generation_time": "2025-02-02T00:00:00Z"})
    cat = write_static_catalog(tmp_path / "cat", [drop, keep])
    info, rows, _ = run_manifest(tmp_path, cat)
    assert [(r["id"], r["processing_baseline"]) for r in rows] == [(keep["id"], higher)]
    assert info["counts"]["duplicates_removed"] == 1


def test_static_catalog_with_a_broken_item_file(tmp_path, tde):
    feats, _ = tde
    cat = write_static_catalog(tmp_path / "cat", feats[:5])
    broken = tmp_path / "cat" / "sentinel-2-l2a" / feats[3]["id"] / f"{feats[3]['id']}.json"
    broken.write_text(broken.read_text()[:500])  # cut short, as by an interrupted copy
    with pytest.raises(UserError, match=r"cannot read the items of collection 'sentinel-2-l2a' .*fix or regenerate"):
        run_manifest(tmp_path, cat, cc=100)
    assert not (tmp_path / "out" / "manifest.csv").exists()
