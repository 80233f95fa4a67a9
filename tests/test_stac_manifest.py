"""STAC manifest stage on real Planetary Computer item metadata, from a static
catalog and from a real STAC API server (rustac) on 127.0.0.1."""

import copy
import csv
import json

import pytest
import shapely.geometry
from conftest import MPC_ITEMS, free_port, load_features, write_static_catalog

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


def test_no_items_gives_empty_manifest_and_warning(tmp_path, tde):
    _, cat = tde
    far = shapely.geometry.box(-1.28, 44.55, -1.20, 44.63)  # Arcachon: not in tile 13TDE
    info, rows, out = run_manifest(tmp_path, cat, geom=far)
    assert rows == []
    assert (out / "manifest.csv").read_text().startswith("date,id,datetime")
    assert list((out / "items").iterdir()) == []
    assert "no sentinel-2-l2a item" in info["warning"]


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
