"""AOI stage: polygons, bbox and target grid, against the tutorial's published
figures and analytic cases; every bad vector input gives one clear message."""

import json

import geopandas as gpd
import numpy as np
import pyogrio
import pytest
import shapely.geometry
from conftest import ROOT
from pyproj import Transformer

from s2ts.aoi_grid import aoi_grid, check_resolution, normalise_id, read_aois, target_grid
from s2ts.errors import UserError

BANC = ROOT / "resources" / "banc_arguin.geojson"


def test_tutorial_polygon_grid_matches_published_cube():
    (aoi,) = read_aois(BANC, "id")
    assert aoi.id == "1"
    # sentinel-2-facts.md: bounds EPSG:4326 and EPSG:3035, cube 259 rows x 207 columns at 40 m
    np.testing.assert_allclose(aoi.geometry.bounds, [-1.283357, 44.547238, -1.195282, 44.631470], atol=1e-6)
    g = target_grid(aoi.geometry, "EPSG:3035", 40)
    assert (g["height"], g["width"]) == (259, 207)
    x0, y0, x1, y1 = g["bounds"]
    assert x0 <= 3426472.02 and y0 <= 2448438.71 and x1 >= 3434719.22 and y1 >= 2458751.11
    assert all(v % 40 == 0 for v in g["bounds"])
    assert g["transform"] == [40.0, 0.0, x0, 0.0, -40.0, y1]


@pytest.mark.parametrize("crs, res", [("EPSG:32630", 10), ("EPSG:2154", 20), ("EPSG:3035", 60), ("EPSG:32630", 25)])
def test_grid_edges_are_multiples_and_cover_bbox(crs, res):
    (aoi,) = read_aois(BANC, "id")
    g = target_grid(aoi.geometry, crs, res)
    x0, y0, x1, y1 = g["bounds"]
    assert all(abs(v / res - round(v / res)) < 1e-9 for v in g["bounds"])
    assert g["width"] * res == pytest.approx(x1 - x0) and g["height"] * res == pytest.approx(y1 - y0)
    # every point of the 4326 bbox (densely sampled edges) falls inside the grid
    b = aoi.geometry.bounds
    ring = shapely.geometry.box(*b).exterior.segmentize(0.0005)
    xs, ys = Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(*np.array(ring.coords).T)
    assert xs.min() >= x0 and xs.max() <= x1 and ys.min() >= y0 and ys.max() <= y1
    # and the grid is no more than one pixel larger than needed on each side
    assert xs.min() - x0 < res and x1 - xs.max() < res and ys.min() - y0 < res and y1 - ys.max() < res


def test_inside_mask_of_a_square_is_exact(tmp_path):
    # A 1000 m x 1000 m square in EPSG:32630, aligned on the 20 m grid: exactly 50 x 50 pixel centres inside.
    to4326 = Transformer.from_crs("EPSG:32630", "EPSG:4326", always_xy=True)
    sq = shapely.geometry.box(640000, 4940000, 641000, 4941000)
    geom = shapely.transform(sq.segmentize(10), lambda xy: np.column_stack(to4326.transform(xy[:, 0], xy[:, 1])))
    doc = aoi_grid(
        "sq", json.dumps(shapely.geometry.mapping(geom)), "EPSG:32630", 20, tmp_path / "g.json", tmp_path / "i.npy"
    )
    inside = np.load(tmp_path / "i.npy")
    assert inside.shape == (doc["grid"]["height"], doc["grid"]["width"])
    assert inside.sum() == 2500 == doc["pixels_inside"]


def test_same_inputs_give_byte_identical_outputs(tmp_path):
    (aoi,) = read_aois(BANC, "id")
    for d in ("a", "b"):
        aoi_grid(aoi.id, aoi.geojson, "EPSG:3035", 40, tmp_path / d / "grid.json", tmp_path / d / "inside.npy")
    for f in ("grid.json", "inside.npy"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()


def test_sites_file_has_three_distinct_polygons():
    aois = read_aois(ROOT / "resources" / "arcachon_sites.geojson", "id")
    assert [a.id for a in aois] == ["banc_arguin", "cap_ferret", "dune_du_pilat"]
    assert all(a.geometry.area > 0 for a in aois)


@pytest.mark.parametrize(
    "value, text", [(1, "1"), (1.0, "1"), (" site_2 ", "site_2"), (2.5, "2.5"), ("", None), (None, None)]
)
def test_id_normalisation(value, text):
    assert normalise_id(value) == text


# ----------------------------------------------------------------- bad vector inputs
def write_fc(path, features, crs=None):
    fc = {"type": "FeatureCollection", "features": features}
    path.write_text(json.dumps(fc))
    return path


def feat(id_, geom, **props):
    return {"type": "Feature", "properties": {"id": id_, **props}, "geometry": geom}


SQUARE = {
    "type": "Polygon",
    "coordinates": [[[-1.25, 44.58], [-1.22, 44.58], [-1.22, 44.60], [-1.25, 44.60], [-1.25, 44.58]]],
}
BOWTIE = {
    "type": "Polygon",
    "coordinates": [[[-1.25, 44.58], [-1.22, 44.60], [-1.22, 44.58], [-1.25, 44.60], [-1.25, 44.58]]],
}


def test_missing_file(tmp_path):
    with pytest.raises(UserError, match="does not exist. Point aoi.path"):
        read_aois(tmp_path / "nope.geojson")


def test_unreadable_file(tmp_path):
    p = tmp_path / "broken.geojson"
    p.write_text('{"type": "FeatureCollection", "features": [')
    with pytest.raises(UserError, match="cannot read .*broken.geojson"):
        read_aois(p)


def test_no_features(tmp_path):
    with pytest.raises(UserError, match="has no features"):
        read_aois(write_fc(tmp_path / "e.geojson", []))


def test_empty_geometry(tmp_path):
    p = write_fc(tmp_path / "e.geojson", [feat("a", SQUARE), feat("b", {"type": "Polygon", "coordinates": []})])
    with pytest.raises(UserError, match=r"feature #2 \(id='b'\).*empty geometry"):
        read_aois(p)


def test_self_intersecting_geometry(tmp_path):
    with pytest.raises(UserError, match=r"feature #1 \(id='x'\).*invalid geometry \(Self-intersection.*Fix geometries"):
        read_aois(write_fc(tmp_path / "s.geojson", [feat("x", BOWTIE)]))


def test_not_a_polygon(tmp_path):
    with pytest.raises(UserError, match="is a Point, not a polygon"):
        read_aois(write_fc(tmp_path / "p.geojson", [feat("x", {"type": "Point", "coordinates": [-1.2, 44.6]})]))


def test_missing_id_field(tmp_path):
    p = write_fc(tmp_path / "m.geojson", [feat("a", SQUARE)])
    with pytest.raises(UserError, match="attribute 'site' is not in .*its attributes: id"):
        read_aois(p, "site")


def test_duplicate_ids(tmp_path):
    p = write_fc(tmp_path / "d.geojson", [feat("a", SQUARE), feat("b", SQUARE), feat("a", SQUARE)])
    with pytest.raises(UserError, match=r"feature #3 \(id='a'\).*repeats the id 'a' of feature #1"):
        read_aois(p)


@pytest.mark.parametrize("bad", ["../x", "my site", "a/b", "a.b", "é"])
def test_unsafe_ids(tmp_path, bad):
    with pytest.raises(UserError, match="unsafe as a folder name"):
        read_aois(write_fc(tmp_path / "u.geojson", [feat(bad, SQUARE)]))


@pytest.mark.filterwarnings("ignore:.crs. was not provided")
def test_shapefile_without_crs_is_refused_but_geojson_is_4326(tmp_path):
    geom = shapely.geometry.shape(SQUARE)
    shp = tmp_path / "nocrs.shp"
    pyogrio.write_dataframe(gpd.GeoDataFrame({"id": ["a"]}, geometry=[geom], crs=None), shp)
    with pytest.raises(UserError, match="has no coordinate reference system"):
        read_aois(shp)
    (a,) = read_aois(write_fc(tmp_path / "ok.geojson", [feat("a", SQUARE)]))
    assert a.geometry.equals(geom)


def test_gpkg_in_another_crs_is_reprojected_to_4326(tmp_path):
    geom = shapely.geometry.shape(SQUARE)
    gdf = gpd.GeoDataFrame({"id": [7]}, geometry=[geom], crs="EPSG:4326").to_crs("EPSG:2154")
    gpkg = tmp_path / "l93.gpkg"
    gdf.to_file(gpkg)
    (a,) = read_aois(gpkg)
    assert a.id == "7"
    np.testing.assert_allclose(a.geometry.bounds, geom.bounds, atol=1e-7)


def test_resolution_larger_than_aoi():
    (aoi,) = read_aois(BANC, "id")
    check_resolution(aoi, "EPSG:3035", 40)
    with pytest.raises(UserError, match="larger than polygon '1'"):
        check_resolution(aoi, "EPSG:3035", 9000)
