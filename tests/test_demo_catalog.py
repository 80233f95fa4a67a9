"""The embedded offline demo catalog (s2ts.demo_catalog).

The expectations here come from the brief and from Sentinel-2 facts, not from the
generator's internals: the +1000 DN offset rule (PB >= 04.00), the SCL codes, the
MPC id layout, the tutorial's Banc d'Arguin polygon, landmark coordinates. The
pixels are compared with the ground truth saved beside the catalog.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pystac
import pytest
import rasterio
import shapely
from pyproj import Transformer
from shapely.geometry import Polygon, shape

from s2ts import demo_catalog as dc
from s2ts.demo_catalog import common, generate, plan
from s2ts.errors import UserError

START, END = "2022-01-01", "2022-03-01"  # both sides of the PB 04.00 switch (2022-01-25)
ID_RE = re.compile(
    r"^(?P<platform>S2[ABC])_MSIL2A_(?P<sensing>\d{8}T\d{6})_R(?P<orbit>\d{3})_T(?P<tile>\d{2}[A-Z]{3})_"
    r"(?P<generation>\d{8}T\d{6})$"
)
EXT = {
    "eo": "https://stac-extensions.github.io/eo/v1.0.0/schema.json",
    "sat": "https://stac-extensions.github.io/sat/v1.0.0/schema.json",
    "projection": "https://stac-extensions.github.io/projection/v1.0.0/schema.json",
}
REQUIRED_PROPS = [
    "datetime",
    "platform",
    "constellation",
    "instruments",
    "eo:cloud_cover",
    "s2:processing_baseline",
    "s2:mgrs_tile",
    "sat:relative_orbit",
    "sat:orbit_state",
    "s2:product_uri",
    "s2:generation_time",
    "s2:datatake_id",
    "s2:nodata_pixel_percentage",
    "s2:high_proba_clouds_percentage",
    "s2:medium_proba_clouds_percentage",
    "s2:thin_cirrus_percentage",
    "s2:cloud_shadow_percentage",
    "s2:water_percentage",
]
CLEAR_SCL = [4, 5, 6]
# Tutorial polygon of the reference analysis (lon, lat)
AOI = [(-1.274220, 44.631470), (-1.195282, 44.630387), (-1.200359, 44.547238), (-1.283357, 44.548504)]
LONLAT_BOX = (-1.30, 44.535, -1.18, 44.66)


# Processing baseline of a sensing date (first date of each, docs/demo_catalog.md after the
# Copernicus ground segment; 02.04 before the first)
BASELINE_SINCE = [
    (dt.date(2017, 4, 27), "02.05"),
    (dt.date(2017, 10, 23), "02.06"),
    (dt.date(2018, 11, 6), "02.07"),
    (dt.date(2019, 7, 8), "02.08"),
    (dt.date(2020, 1, 28), "02.09"),
    (dt.date(2021, 6, 30), "03.00"),
    (dt.date(2021, 11, 16), "03.01"),
    (dt.date(2022, 1, 25), "04.00"),
    (dt.date(2022, 12, 6), "05.09"),
    (dt.date(2023, 12, 13), "05.10"),
    (dt.date(2024, 7, 23), "05.11"),
]
MIXED_PAIR_DAY = dt.date(2022, 1, 28)  # first R094 pass after the switch: 30TXQ 04.00, 30TXR 03.01


def expected_offset(pb: str) -> int:
    """ESA: from processing baseline 04.00 on, L2A DN = reflectance * 10000 + 1000."""
    return 1000 if tuple(int(p) for p in pb.split(".")) >= (4, 0) else 0


def expected_baseline(day: dt.date) -> str:
    return next((pb for first, pb in reversed(BASELINE_SINCE) if day >= first), "02.04")


# ---------------------------------------------------------------------------
# fixtures
# ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "catalog"
    path = dc.generate_demo_catalog(out, start=START, end=END, seed=0, workers=2)
    return path


@pytest.fixture(scope="session")
def raw_items(demo):
    coll = demo.parent / "sentinel-2-l2a"
    items = {}
    for p in sorted(coll.glob("*/*.json")):
        d = json.loads(p.read_text())
        items[d["id"]] = (p, d)
    return items


@pytest.fixture(scope="session")
def truth(demo):
    return dc.load_truth(demo.parent)


def read(item_path: Path, asset: str):
    with rasterio.open(item_path.parent / f"{asset}.tif") as src:
        return src.read(1), src.transform


def pixel_centres(transform, shape, step=1):
    rows = np.arange(0, shape[0], step)
    cols = np.arange(0, shape[1], step)
    xs = transform.c + (cols + 0.5) * transform.a
    ys = transform.f + (rows + 0.5) * transform.e
    return np.meshgrid(xs, ys), rows, cols


def scl_at_10m(scl, rows, cols):
    return scl[rows[:, None] // 2, cols[None, :] // 2]


# ---------------------------------------------------------------------------
# structure
# ---------------------------------------------------------------------------


def test_catalog_loads_with_pystac(demo, raw_items):
    cat = pystac.Catalog.from_file(str(demo))
    assert cat.id == "s2ts-demo"
    coll = cat.get_child("sentinel-2-l2a")
    assert isinstance(coll, pystac.Collection)
    items = list(coll.get_items())
    assert len(items) == len(raw_items) > 20
    assert {i.id for i in items} == set(raw_items)
    for item in items:
        for key in ("B03", "B04", "B08", "SCL"):
            href = item.assets[key].get_absolute_href()
            assert Path(href).is_file(), href
    summaries = coll.summaries.to_dict()
    assert {b["name"] for b in summaries["eo:bands"]} == {"B03", "B04", "B08"}
    t0, t1 = coll.extent.temporal.intervals[0]
    assert t0 >= dt.datetime(2022, 1, 1, tzinfo=dt.UTC) and t1 < dt.datetime(2022, 3, 1, tzinfo=dt.UTC)


def test_links_and_hrefs_are_relative(demo, raw_items):
    docs = [json.loads(demo.read_text()), json.loads((demo.parent / "sentinel-2-l2a" / "collection.json").read_text())]
    docs += [d for _, d in raw_items.values()]
    for d in docs:
        for link in d["links"]:
            assert link["href"].startswith("./") or link["href"].startswith("../"), link
        for a in d.get("assets", {}).values():
            assert a["href"].startswith("./"), a


def test_items_are_structurally_valid_stac(raw_items):
    for item_id, (_, d) in raw_items.items():
        assert d["type"] == "Feature" and d["stac_version"].startswith("1.")
        assert set(EXT.values()) <= set(d["stac_extensions"])
        assert d["collection"] == "sentinel-2-l2a"
        geom = shape(d["geometry"])
        assert geom.geom_type == "Polygon" and geom.is_valid
        assert d["bbox"] == pytest.approx(list(geom.bounds))
        lon0, lat0, lon1, lat1 = LONLAT_BOX
        assert lon0 - 0.01 <= d["bbox"][0] < d["bbox"][2] <= lon1 + 0.01
        assert lat0 - 0.01 <= d["bbox"][1] < d["bbox"][3] <= lat1 + 0.01
        p = d["properties"]
        for key in REQUIRED_PROPS:
            assert key in p, (item_id, key)
        assert type(p["proj:epsg"]) is int and p["proj:epsg"] == 32630  # raw JSON form, like MPC
        assert isinstance(p["s2:processing_baseline"], str) and re.fullmatch(r"\d\d\.\d\d", p["s2:processing_baseline"])
        assert type(p["sat:relative_orbit"]) is int
        assert p["platform"] in ("Sentinel-2A", "Sentinel-2B")
        assert 0.0 <= p["eo:cloud_cover"] <= 100.0
        assert p["datetime"].endswith("Z")
        t = dt.datetime.fromisoformat(p["datetime"].replace("Z", "+00:00"))
        assert dt.time(10, 56) <= t.time() <= dt.time(11, 7)
        assert (
            p["s2:product_uri"].endswith(".SAFE")
            and f"N{p['s2:processing_baseline'].replace('.', '')}" in (p["s2:product_uri"])
        )
        assert p["s2:datatake_id"].endswith(f"_N{p['s2:processing_baseline']}")
        for key in ("B03", "B04", "B08", "SCL"):
            a = d["assets"][key]
            assert a["type"] == "image/tiff; application=geotiff; profile=cloud-optimized"
            assert a["roles"] == ["data"]
            assert a["gsd"] == (20.0 if key == "SCL" else 10.0)
            assert len(a["proj:transform"]) == 6 and len(a["proj:shape"]) == 2 and len(a["proj:bbox"]) == 4
            if key != "SCL":
                (band,) = a["eo:bands"]
                assert band["name"] == key and {"common_name", "center_wavelength"} <= set(band)


def test_asset_grids_match_the_files_and_are_cogs(raw_items):
    for path, d in raw_items.values():
        for key in ("B03", "B04", "B08", "SCL"):
            a = d["assets"][key]
            with rasterio.open(path.parent / f"{key}.tif") as src:
                assert list(src.transform)[:6] == pytest.approx(a["proj:transform"])
                assert [src.height, src.width] == a["proj:shape"]
                assert list(src.bounds) == pytest.approx(a["proj:bbox"])
                assert src.crs.to_epsg() == 32630
                assert src.nodata == 0
                assert src.dtypes[0] == ("uint8" if key == "SCL" else "uint16")
                assert src.overviews(1), (path, key)
                assert src.profile["tiled"]
                tags = src.tags(ns="IMAGE_STRUCTURE")
                assert tags.get("LAYOUT") == "COG"
                assert tags.get("COMPRESSION") == "DEFLATE"
                if key != "SCL":
                    assert tags.get("PREDICTOR") == "2"


def test_ids_parse_and_are_unique(demo, raw_items, truth):
    for item_id, (_, d) in raw_items.items():
        m = ID_RE.match(item_id)
        assert m, item_id
        p = d["properties"]
        assert p["platform"] == {"S2A": "Sentinel-2A", "S2B": "Sentinel-2B", "S2C": "Sentinel-2C"}[m["platform"]]
        t = dt.datetime.fromisoformat(p["datetime"].replace("Z", "+00:00"))
        assert t.strftime("%Y%m%dT%H%M%S") == m["sensing"]
        assert int(m["orbit"]) == p["sat:relative_orbit"] and m["orbit"] in ("094", "137")
        assert m["tile"] == p["s2:mgrs_tile"] and m["tile"] in ("30TXQ", "30TXR")
        g = dt.datetime.fromisoformat(p["s2:generation_time"].replace("Z", "+00:00"))
        assert g.strftime("%Y%m%dT%H%M%S") == m["generation"]
        assert g > t
    # one id per planned item: the truth lists every item of every acquisition and the
    # collection links every item written (two items with one id share one file, so the
    # files alone cannot show a repeated id)
    planned = [i for a in truth.doc["acquisitions"] for i in a["item_ids"]]
    coll = json.loads((demo.parent / "sentinel-2-l2a" / "collection.json").read_text())
    linked = [link["href"] for link in coll["links"] if link["rel"] == "item"]
    assert len(planned) == len(set(planned)) == len(raw_items)
    assert len(linked) == len(set(linked)) == len(raw_items)


def test_acquisition_pattern(raw_items):
    """S2A and S2B, 10-day repeat each offset by 5 days; R137 two days after R094."""
    by_key = {}
    for _, d in raw_items.values():
        p = d["properties"]
        day = dt.date.fromisoformat(p["datetime"][:10])
        by_key.setdefault((p["platform"], p["sat:relative_orbit"]), set()).add(day)
    for days in by_key.values():
        days = sorted(days)
        assert all((b - a).days == 10 for a, b in zip(days, days[1:]))
    a94 = min(by_key[("Sentinel-2A", 94)])
    b94 = min(by_key[("Sentinel-2B", 94)])
    assert abs((a94 - b94).days) % 10 == 5
    for platform in ("Sentinel-2A", "Sentinel-2B"):
        for day in by_key[(platform, 137)]:
            before = day - dt.timedelta(days=2)
            assert before in by_key[(platform, 94)] or before < dt.date(2022, 1, 1)


def test_baselines_follow_the_sensing_date(raw_items):
    seen = set()
    for item_id, (_, d) in raw_items.items():
        p = d["properties"]
        day = dt.date.fromisoformat(p["datetime"][:10])
        pb = p["s2:processing_baseline"]
        if pb == "05.00":  # Collection-1 reprocessing of older data
            assert day < dt.date(2022, 1, 25), item_id
        elif day == MIXED_PAIR_DAY and p["s2:mgrs_tile"] == "30TXR":
            assert pb == "03.01", item_id
        else:
            assert pb == expected_baseline(day), item_id
        seen.add(pb)
    assert seen == {"03.01", "04.00", "05.00"}


# ---------------------------------------------------------------------------
# pixels against the saved truth
# ---------------------------------------------------------------------------


def test_clear_pixels_equal_truth_plus_baseline_offset(raw_items, truth):
    checked = set()
    for item_id, (path, d) in raw_items.items():
        p = d["properties"]
        off = expected_offset(p["s2:processing_baseline"])
        scl, _ = read(path, "SCL")
        b = {k: read(path, k)[0] for k in ("B03", "B04", "B08")}
        transform = read(path, "B03")[1]
        (xs, ys), rows, cols = pixel_centres(transform, b["B03"].shape, step=3)
        clear = np.isin(scl_at_10m(scl, rows, cols), CLEAR_SCL)
        if clear.sum() < 1000:
            continue
        ref = truth.reflectance(p["datetime"], xs, ys, "EPSG:32630")
        for k in ("B03", "B04", "B08"):
            dn = b[k][rows[:, None], cols[None, :]].astype(np.float64)
            diff = dn[clear] - ref[k][clear] - off
            assert abs(np.median(diff)) < 5, (item_id, k, np.median(diff))
            assert np.abs(diff).max() <= 3, (item_id, k)  # noise and rounding only
        checked.add(p["s2:processing_baseline"])
    # both sides of the switch, and a Collection-1 reprocessing, were exercised
    assert {"03.01", "04.00", "05.00"} <= checked


def test_reprocessing_pixels_carry_their_own_baseline_offset(raw_items):
    groups = {}
    for path, d in raw_items.values():
        p = d["properties"]
        groups.setdefault((p["datetime"], p["s2:mgrs_tile"]), []).append((path, p))
    dups = [g for g in groups.values() if len(g) > 1]
    assert dups, "the test period has a reprocessing duplicate (2022-01-23, PB 05.00)"
    pbs = {p["s2:processing_baseline"] for g in dups for _, p in g}
    assert "05.00" in pbs
    for g in dups:
        ids = {p["s2:datatake_id"].rsplit("_N", 1)[0] for _, p in g}
        assert len(ids) == 1  # same datatake
        (pa, a), (pb_, b) = g[:2]
        va, vb = read(pa, "B03")[0].astype(np.int64), read(pb_, "B03")[0].astype(np.int64)
        valid = va > 0
        shift = expected_offset(a["s2:processing_baseline"]) - expected_offset(b["s2:processing_baseline"])
        sat = (va == 65535) | (vb == 65535)
        assert np.array_equal((va - vb)[valid & ~sat], np.full((valid & ~sat).sum(), shift))


def test_two_tile_overlap_is_identical_up_to_offset(raw_items):
    by_time = {}
    for _, (path, d) in raw_items.items():
        by_time.setdefault(d["properties"]["datetime"], {})[d["properties"]["s2:mgrs_tile"]] = (path, d)
    pairs = [v for v in by_time.values() if {"30TXQ", "30TXR"} <= set(v)]
    assert pairs
    mixed = False
    for v in pairs:
        (pq, q), (pr, r) = v["30TXQ"], v["30TXR"]
        assert q["properties"]["s2:datatake_id"][:-6] == r["properties"]["s2:datatake_id"][:-6]
        offq = expected_offset(q["properties"]["s2:processing_baseline"])
        offr = expected_offset(r["properties"]["s2:processing_baseline"])
        mixed |= offq != offr
        for k in ("B03", "B08"):
            aq, tq = read(pq, k)
            ar, tr = read(pr, k)
            # the northern tile's grid is a row window of ours
            assert tq.a == tr.a and tq.c == tr.c
            r0 = int(round((tq.f - tr.f) / tq.e))
            sub = aq[r0 : r0 + ar.shape[0]].astype(np.int64)
            valid = (sub > 0) & (sub < 65535)
            assert np.array_equal(sub[valid] - offq, ar.astype(np.int64)[valid] - offr)
        sq, _ = read(pq, "SCL")
        sr, _ = read(pr, "SCL")
        r20 = r0 // 2
        assert np.array_equal(sq[r20 : r20 + sr.shape[0]], sr)
    assert mixed, "the pair right after 2022-01-25 mixes PB 03.01 and 04.00"
    # the northern tile only covers the northern part of the extent
    _, r = pairs[0]["30TXR"]
    _, q = pairs[0]["30TXQ"]
    assert r["bbox"][1] > q["bbox"][1] + 0.02 and r["bbox"][3] == pytest.approx(q["bbox"][3])


def test_nodata_is_zero_everywhere_and_valid_pixels_are_positive(raw_items):
    for item_id, (path, d) in raw_items.items():
        b03, b04, b08 = (read(path, k)[0] for k in ("B03", "B04", "B08"))
        nodata = b03 == 0
        assert np.array_equal(nodata, b04 == 0) and np.array_equal(nodata, b08 == 0), item_id
        assert b03[~nodata].min() >= 1
        scl, _ = read(path, "SCL")
        # a 20 m SCL pixel is no-data exactly where its four 10 m pixels are
        up = np.repeat(np.repeat(scl == 0, 2, axis=0), 2, axis=1)
        assert np.array_equal(up, nodata), item_id
        if expected_offset(d["properties"]["s2:processing_baseline"]):
            # with the offset even dark water is far above 0
            assert b08[~nodata].min() > 1000


def test_cloud_cover_matches_scl(raw_items):
    values = []
    for item_id, (path, d) in raw_items.items():
        scl, _ = read(path, "SCL")
        valid = scl != 0
        cc = 100.0 * np.isin(scl, [8, 9, 10]).sum() / valid.sum()
        assert d["properties"]["eo:cloud_cover"] == pytest.approx(cc, abs=1e-4), item_id
        shadow = 100.0 * (scl == 3).sum() / valid.sum()
        assert d["properties"]["s2:cloud_shadow_percentage"] == pytest.approx(shadow, abs=1e-4)
        nd = 100.0 * (~valid).sum() / scl.size
        assert d["properties"]["s2:nodata_pixel_percentage"] == pytest.approx(nd, abs=1e-4)
        values.append(cc)
    values = np.array(values)
    # winter months: mostly cloudy, but both clear and cloudy items exist
    assert (values < 20).any() and (values > 80).any()


def test_clouds_are_bright_and_shadows_dark(raw_items, truth):
    """Against the clear-sky truth: cloud pixels (SCL 8, 9) are brighter, opaque cloud
    (SCL 9: mean opacity >= 0.45) much brighter, cloud shadows (SCL 3) darker; the
    winter test period has many items with each."""
    n_cloud = n_opaque = n_shadow = 0
    for item_id, (path, d) in raw_items.items():
        p = d["properties"]
        off = expected_offset(p["s2:processing_baseline"])
        scl, _ = read(path, "SCL")
        b03, transform = read(path, "B03")
        (xs, ys), rows, cols = pixel_centres(transform, b03.shape, step=4)
        s10 = scl_at_10m(scl, rows, cols)
        cloud = np.isin(s10, [8, 9])
        opaque = s10 == 9
        shadow = s10 == 3
        ref = truth.reflectance(p["datetime"], xs, ys, "EPSG:32630")["B03"]
        dn = b03[rows[:, None], cols[None, :]].astype(np.float64) - off
        if cloud.sum() >= 200:
            assert np.median(dn[cloud] - ref[cloud]) > 500, item_id
            n_cloud += 1
        if opaque.sum() >= 200:
            assert np.median(dn[opaque] - ref[opaque]) > 3000, item_id
            n_opaque += 1
        if shadow.sum() >= 200:
            assert np.median(dn[shadow] - ref[shadow]) < -20, item_id
            assert np.all(dn[shadow] <= ref[shadow] + 3), item_id
            n_shadow += 1
    assert n_cloud >= 10 and n_opaque >= 10 and n_shadow >= 10, (n_cloud, n_opaque, n_shadow)


def test_partial_swath_items(raw_items):
    extent = None
    partial = full = 0
    for item_id, (path, d) in raw_items.items():
        p = d["properties"]
        b03, transform = read(path, "B03")
        nodata = b03 == 0
        geom = shape(d["geometry"])
        if p["s2:mgrs_tile"] == "30TXQ" and extent is None and p["sat:relative_orbit"] == 94:
            extent = geom
        if p["sat:relative_orbit"] == 137:
            partial += 1
            frac = nodata.mean()
            assert 0.2 < frac < 0.8, (item_id, frac)
            assert p["s2:nodata_pixel_percentage"] > 20
            # straight edge at an angle: the no-data part is the west, its edge column drifts with the row
            first_valid = np.argmax(~nodata, axis=1)
            assert first_valid[0] != first_valid[-1]
            assert np.all(np.diff(first_valid) <= 0) or np.all(np.diff(first_valid) >= 0)
            assert nodata[:, 0].all() and not nodata[:, -1].any()
        else:
            full += 1
            assert not nodata.any(), item_id
            assert p["s2:nodata_pixel_percentage"] == 0
    assert partial >= 5 and full >= 5
    for path, d in raw_items.values():
        if d["properties"]["sat:relative_orbit"] == 137:
            geom = shape(d["geometry"])
            assert geom.area < 0.8 * extent.area
            assert not geom.buffer(1e-4).contains(extent)
            # the geometry is the footprint of the valid pixels
            b03, transform = read(path, "B03")
            (xs, ys), rows, cols = pixel_centres(transform, b03.shape, step=7)
            lon, lat = Transformer.from_crs(32630, 4326, always_xy=True).transform(xs, ys)
            valid = b03[rows[:, None], cols[None, :]] > 0
            inside = shapely.contains_xy(geom.buffer(2e-4), lon, lat)
            outside = ~shapely.contains_xy(geom.buffer(-2e-4), lon, lat)
            assert np.all(inside[valid]) and np.all(outside[~valid])


# ---------------------------------------------------------------------------
# ground truth
# ---------------------------------------------------------------------------


def test_truth_is_saved_beside_the_catalog(demo, truth, raw_items):
    doc = json.loads((demo.parent / "truth" / "truth.json").read_text())
    acqs = doc["acquisitions"]
    assert len(acqs) == len(truth.acquisitions) == len(truth.dates)
    ids = {i for a in acqs for i in a["item_ids"]}
    assert ids == set(raw_items)
    for a in acqs:
        for key in ("datetime", "solar_day", "tide_m", "sand_wkt", "sand_area_km2", "item_ids"):
            assert key in a
        poly = shapely.from_wkt(a["sand_wkt"])
        assert poly.area / 1e6 == pytest.approx(a["sand_area_km2"], rel=1e-3)
    assert all(t.tzinfo is not None for t in truth.acquisitions)
    assert truth.acquisitions == sorted(truth.acquisitions)
    for _, d in raw_items.values():
        t = dt.datetime.fromisoformat(d["properties"]["datetime"].replace("Z", "+00:00"))
        assert t in truth.acquisitions


def test_sandbank_position_area_and_tide(truth, tmp_path):
    aoi = Polygon([Transformer.from_crs(4326, 32630, always_xy=True).transform(*p) for p in AOI])
    centre = Transformer.from_crs(4326, 32630, always_xy=True).transform(-1.25, 44.59)
    areas, tides = [], []
    for t in truth.acquisitions:
        poly = truth.sand_polygon(t)
        assert poly.geom_type == "Polygon" and poly.is_valid
        assert aoi.contains(poly)
        assert poly.centroid.distance(shapely.Point(centre)) < 1500
        assert 1.0 < poly.area / 1e6 < 10.0
        areas.append(poly.area)
        tides.append(truth.acquisition(t)["tide_m"])
    # higher tide -> smaller emerged bank (rank correlation)
    ra, rt = np.argsort(np.argsort(areas)), np.argsort(np.argsort(tides))
    assert np.corrcoef(ra, rt)[0, 1] < -0.9
    assert max(tides) - min(tides) > 1.5  # semi-diurnal tide sampled at different phases
    # low tide: about 4 km x 2 km
    low = truth.sand_polygon(truth.acquisitions[int(np.argmin(tides))])
    rect = low.minimum_rotated_rectangle
    sides = sorted(
        shapely.Point(rect.exterior.coords[i]).distance(shapely.Point(rect.exterior.coords[i + 1])) for i in range(2)
    )
    assert 2.5e3 < sides[1] < 5.5e3 and 1.0e3 < sides[0] < 3.0e3


def test_sandbank_migrates_over_years(truth, tmp_path):
    later = dc.generate_demo_catalog(tmp_path / "later", start="2024-06-01", end="2024-06-04", seed=0, workers=1)
    t2 = dc.load_truth(later.parent)
    assert len(t2.acquisitions) >= 1
    a = truth.acquisition(truth.acquisitions[0])
    b = t2.acquisition(t2.acquisitions[0])
    pa, pb = shapely.from_wkt(a["lowtide_wkt"]), shapely.from_wkt(b["lowtide_wkt"])
    moved = pa.centroid.distance(pb.centroid)
    years = (t2.acquisitions[0] - truth.acquisitions[0]).days / 365.25
    assert 50 * years < moved < 400 * years  # ~100-200 m/yr
    # the shape changes too, not just its position
    dx, dy = pb.centroid.x - pa.centroid.x, pb.centroid.y - pa.centroid.y
    moved_a = shapely.affinity.translate(pa, dx, dy)
    assert moved_a.symmetric_difference(pb).area / pb.area > 0.03
    # and the emerged part (tide dependent) sits inside the low-tide bank
    assert pb.buffer(1.0).contains(t2.sand_polygon(t2.acquisitions[0]))


def test_truth_landmarks_and_plausible_reflectance(truth):
    t = truth.acquisitions[0]
    pts = {
        "ocean": (-1.295, 44.55),
        "dune": (-1.213, 44.589),
        "forest": (-1.19, 44.56),
        "cap_ferret": (-1.252, 44.655),
    }
    lon = np.array([p[0] for p in pts.values()])
    lat = np.array([p[1] for p in pts.values()])
    cls = dict(zip(pts, truth.classes(t, lon, lat, "EPSG:4326")))
    assert cls["ocean"] == 1 and cls["dune"] == 4 and cls["forest"] == 5
    assert cls["cap_ferret"] in (3, 5, 6)  # land of the peninsula
    r = truth.reflectance(t, lon, lat, "EPSG:4326")
    ocean, dune, forest = 0, 1, 2
    assert r["B08"][ocean] < 400 and r["B03"][ocean] < r["B03"][dune]
    assert 1500 <= r["B03"][dune] <= 2700 and 1800 <= r["B04"][dune] <= 3000 and 2200 <= r["B08"][dune] <= 3500
    assert r["B08"][forest] > 3 * r["B04"][forest]  # vegetation: bright NIR, dark red
    # the emerged bank (the saved sand polygon) is sand: its outer 100 m wet sand (B03 1500,
    # B04 1750, B08 2150 DN), the core dry sand (2150, 2450, 2850), +-5 % texture; points
    # 50 m and 150 m inside its outline, on every acquisition
    wet = {"B03": 1500.0, "B04": 1750.0, "B08": 2150.0}
    dry = {"B03": 2150.0, "B04": 2450.0, "B08": 2850.0}
    for when in truth.acquisitions:
        bank = truth.sand_polygon(when)
        for inset, code, spectrum in ((50.0, 2, wet), (150.0, 3, dry)):
            ring = bank.buffer(-inset).exterior
            pts = shapely.line_interpolate_point(ring, np.linspace(0.0, 1.0, 16, endpoint=False), normalized=True)
            xs, ys = shapely.get_coordinates(pts).T
            assert np.all(truth.classes(when, xs, ys, "EPSG:32630") == code), (when, inset)
            r = truth.reflectance(when, xs, ys, "EPSG:32630")
            for band, value in spectrum.items():
                np.testing.assert_allclose(r[band], value, rtol=0.05, err_msg=f"{when} {inset} m {band}")


def test_truth_outside_extent_is_nan_and_accepts_several_time_forms(truth):
    t = truth.acquisitions[3]
    r = truth.reflectance(t, np.array([-1.5, -1.25]), np.array([44.6, 44.59]), "EPSG:4326")
    assert np.isnan(r["B03"][0]) and np.isfinite(r["B03"][1])
    assert truth.classes(t, np.array([-1.5]), np.array([44.6]), "EPSG:4326")[0] == 0
    same = [t, t.isoformat(), t.replace(tzinfo=None), np.datetime64(t.replace(tzinfo=None)), t.date()]
    for v in same:
        assert truth.sand_polygon(v).equals(truth.sand_polygon(t))
    with pytest.raises(KeyError):
        truth.sand_polygon(dt.datetime(2022, 1, 1, 12, tzinfo=dt.UTC))


def test_truth_in_another_crs(truth):
    t = truth.acquisitions[5]
    # a grid of points in EPSG:3035 over the tutorial polygon (its 3035 bounds), plus outside points
    xs, ys = np.meshgrid(np.linspace(3426000, 3435500, 37), np.linspace(2448000, 2459500, 41))
    r3035 = truth.reflectance(t, xs, ys, "EPSG:3035")
    ux, uy = Transformer.from_crs(3035, 32630, always_xy=True).transform(xs, ys)
    r326 = truth.reflectance(t, ux, uy, "EPSG:32630")
    for k in ("B03", "B04", "B08"):
        assert r3035[k].shape == xs.shape
        np.testing.assert_allclose(r3035[k], r326[k], rtol=0, atol=1e-3, equal_nan=True)
        assert np.isfinite(r3035[k]).mean() > 0.9
    np.testing.assert_array_equal(truth.classes(t, xs, ys, "EPSG:3035"), truth.classes(t, ux, uy, "EPSG:32630"))


# ---------------------------------------------------------------------------
# determinism, periods, atomicity, entry points
# ---------------------------------------------------------------------------


def test_deterministic_and_period_independent(tmp_path, raw_items):
    a = dc.generate_demo_catalog(tmp_path / "a", start="2022-01-20", end="2022-02-01", seed=0, workers=1)
    b = dc.generate_demo_catalog(tmp_path / "b", start="2022-01-20", end="2022-02-01", seed=0, workers=2)
    fa = sorted(p.relative_to(a.parent) for p in a.parent.rglob("*.json"))
    fb = sorted(p.relative_to(b.parent) for p in b.parent.rglob("*.json"))
    assert fa == fb and len(fa) > 5
    for rel in fa:
        assert (a.parent / rel).read_bytes() == (b.parent / rel).read_bytes(), rel
    # the same datatakes inside a longer period give the same items
    shared = 0
    for p in (a.parent / "sentinel-2-l2a").glob("*/*.json"):
        d = json.loads(p.read_text())
        assert d["id"] in raw_items
        assert raw_items[d["id"]][0].read_bytes() == p.read_bytes()
        shared += 1
    assert shared >= 5
    # another seed gives other clouds
    c = dc.generate_demo_catalog(tmp_path / "c", start="2022-01-20", end="2022-02-01", seed=1, workers=1)
    cc = lambda root: sorted(  # noqa: E731
        json.loads(p.read_text())["properties"]["eo:cloud_cover"] for p in root.parent.glob("sentinel-2-l2a/*/*.json")
    )
    assert cc(a) != cc(c)


def test_empty_period_and_bad_arguments(tmp_path):
    p = dc.generate_demo_catalog(tmp_path / "empty", start="2022-01-01", end="2022-01-02", workers=1)
    cat = pystac.Catalog.from_file(str(p))
    assert list(cat.get_child("sentinel-2-l2a").get_items()) == []
    assert dc.load_truth(p.parent).acquisitions == []
    with pytest.raises(UserError, match="after start"):
        dc.generate_demo_catalog(tmp_path / "x", start="2022-02-01", end="2022-01-01")
    with pytest.raises(UserError, match="ISO date"):
        dc.generate_demo_catalog(tmp_path / "x", start="yesterday")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "precious.txt").write_text("keep me")
    with pytest.raises(UserError, match="not a demo catalog"):
        dc.generate_demo_catalog(foreign, start="2022-01-01", end="2022-01-02")
    assert (foreign / "precious.txt").exists()


def test_long_period_plan():
    """Any period: 2016-2025 plans without rendering; platforms and baselines as in reality."""
    dts = plan.plan_datatakes(dt.date(2016, 1, 1), dt.date(2025, 1, 1), seed=0)
    items = [i for d in dts for i in d.items]
    assert len({i.id for i in items}) == len(items) > 1200
    assert not [d for d in dts if d.platform == "S2B" and d.sensing.date() < dt.date(2017, 3, 1)]
    for d in dts:
        main = d.items[0]
        assert (main.tile, main.reprocessing) == ("30TXQ", False)
        assert main.baseline == expected_baseline(d.sensing.date()), d.sensing
    assert {d.items[0].baseline for d in dts} == {"02.04"} | {pb for _, pb in BASELINE_SINCE}


def test_interrupted_run_leaves_nothing(tmp_path, monkeypatch):
    def boom(task):
        raise RuntimeError("interrupted")

    monkeypatch.setattr(generate, "_datatake_job", boom)
    out = tmp_path / "cat"
    with pytest.raises(RuntimeError):
        dc.generate_demo_catalog(out, start="2022-01-03", end="2022-01-09", workers=1)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_snakemake_entry_point(tmp_path):
    smk = SimpleNamespace(
        output=SimpleNamespace(catalog=str(tmp_path / "demo" / "catalog.json")),
        params=SimpleNamespace(start="2022-01-03", end="2022-01-04", seed=3),
        threads=1,
    )
    dc.demo_catalog_from_snakemake(smk)
    cat = pystac.Catalog.from_file(smk.output.catalog)
    items = list(cat.get_child("sentinel-2-l2a").get_items())
    assert len(items) >= 1
    assert json.loads((tmp_path / "demo" / "truth" / "truth.json").read_text())["seed"] == 3


def test_extent_km_generates_a_square_scene_around_the_default_one(tmp_path):
    """benchmarks/scale.py's larger scenes: the COGs cover a square of the asked
    size (UTM 30N, snapped outwards to 60 m), centred on the default scene; the
    default extent is restored afterwards."""
    import rasterio

    default = common.scene_grid()
    cat = dc.generate_demo_catalog(
        tmp_path / "big", start="2021-01-03", end="2021-01-04", seed=0, workers=1, extent_km=16
    )
    tifs = sorted(cat.parent.glob("sentinel-2-l2a/*T30TXQ*/B03.tif"))
    assert tifs
    with rasterio.open(tifs[0]) as src:
        left, bottom, right, top = src.bounds
    cx, cy = (default.x0 + default.x1) / 2, (default.y0 + default.y1) / 2
    for lo, hi, c in ((left, right, cx), (bottom, top, cy)):
        assert 16000 <= hi - lo <= 16000 + 2 * 60 + 1000  # 16 km, snapped out (+ the lon/lat box's bulge)
        assert abs((lo + hi) / 2 - c) <= 60 + 500
    truth = dc.load_truth(cat)
    assert truth.scene["extent"] == [left, bottom, right, top]
    assert common.scene_grid() == default
