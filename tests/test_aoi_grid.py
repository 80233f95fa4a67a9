"""AOI stage: polygons, bbox and target grid, against the tutorial's published
figures and analytic cases; every bad vector input gives one clear message."""

import hashlib
import json
import os
import subprocess
import sys
import time

import geopandas as gpd
import numpy as np
import pyogrio
import pytest
import shapely.geometry
from conftest import ROOT
from pyproj import Transformer

from s2ts.aoi_grid import (
    aoi_grid,
    check_resolution,
    geojson_of,
    geometry_digest,
    normalise_id,
    read_aois,
    read_polygon,
    target_grid,
)
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
    with pytest.raises(UserError, match="does not exist. Point aoi.path in your config at a GeoJSON"):
        read_aois(tmp_path / "nope.geojson")
    with pytest.raises(UserError, match="does not exist. Point aoi.path in my-study.yaml at a GeoJSON"):
        read_aois(tmp_path / "nope.geojson", source="my-study.yaml")


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


# ----------------------------------------------------- coordinates, layers (issue 14)
def test_projected_geojson_without_crs_names_the_file_not_grid_crs(tmp_path):
    """A GeoJSON in EPSG:3035 metres with no "crs" member: its coordinates are not lon/lat."""
    l3035 = Transformer.from_crs("EPSG:4326", "EPSG:3035", always_xy=True)
    ring = [list(l3035.transform(x, y)) for x, y in SQUARE["coordinates"][0]]
    p = write_fc(tmp_path / "metres.geojson", [feat("a", {"type": "Polygon", "coordinates": [ring]})])
    assert "crs" not in json.loads(p.read_text())
    with pytest.raises(UserError) as err:
        read_aois(p)
    msg = str(err.value)
    assert msg.startswith(f"aoi.path: the coordinates of '{p}' are not longitude/latitude: feature #1 (id='a')")
    assert 'GeoJSON without a "crs" member' in msg and "ogr2ogr" in msg
    assert "grid.crs" not in msg


def test_lon_lat_geojson_is_accepted_at_the_edges(tmp_path):
    edge = {"type": "Polygon", "coordinates": [[[179.0, -89.0], [180.0, -89.0], [180.0, -88.0], [179.0, -89.0]]]}
    (a,) = read_aois(write_fc(tmp_path / "edge.geojson", [feat("e", edge)]))
    assert a.geometry.bounds == (179.0, -89.0, 180.0, -88.0)


@pytest.fixture
def two_layers(tmp_path):
    """A GeoPackage with a polygon layer and a second layer, like a QGIS project's."""
    gpkg = tmp_path / "project.gpkg"
    sq = shapely.geometry.shape(SQUARE)
    gpd.GeoDataFrame({"id": ["site"]}, geometry=[sq], crs="EPSG:4326").to_crs("EPSG:2154").to_file(gpkg, layer="sites")
    gpd.GeoDataFrame({"id": ["b1", "b2"]}, geometry=[sq.buffer(0.01), sq.buffer(0.02)], crs="EPSG:4326").to_file(
        gpkg, layer="buffers"
    )
    return gpkg, sq


def test_several_layers_without_aoi_layer_are_listed(two_layers):
    gpkg, _ = two_layers
    with pytest.raises(UserError, match=r"aoi.layer: '.*project.gpkg' has 2 layers \(sites, buffers\): set aoi.layer"):
        read_aois(gpkg)
    with pytest.raises(UserError, match=r"has no layer 'site' \(its layers: sites, buffers\)"):
        read_aois(gpkg, layer="site")


def test_aoi_layer_picks_the_layer_and_the_job_reads_the_same(two_layers):
    gpkg, sq = two_layers
    assert [a.id for a in read_aois(gpkg, layer="buffers")] == ["b1", "b2"]
    (a,) = read_aois(gpkg, layer="sites")
    assert a.id == "site"
    np.testing.assert_allclose(a.geometry.bounds, sq.bounds, atol=1e-7)  # back from Lambert-93
    job = read_polygon(gpkg, "id", "site", layer="sites")  # geopandas, GeoSeries.to_crs
    assert geometry_digest(geojson_of(job)) == a.digest  # the params digest is what the job reads


# ---------------------------------------------------- the job reads with geopandas
SITES = ROOT / "resources" / "arcachon_sites.geojson"


def test_job_polygon_equals_parse_time_polygon_exactly(tmp_path):
    """geopandas (pyogrio engine, to_crs) in the job, pyogrio.raw + pyproj at parse
    time: the same coordinates to the last bit, so the params digest is stable."""
    l93 = tmp_path / "sites_l93.gpkg"
    gpd.read_file(SITES).to_crs("EPSG:2154").to_file(l93)
    for src in (BANC, SITES, l93):
        for a in read_aois(src):
            assert geojson_of(read_polygon(src, "id", a.id)) == a.geojson


def _inside_by_vertices(geojson: str, grid: dict) -> np.ndarray:
    """The inside mask computed independently: each vertex projected with pyproj,
    pixel centres tested with shapely (the implementation before geopandas)."""
    tr = Transformer.from_crs("EPSG:4326", grid["crs"], always_xy=True)
    geom = shapely.transform(
        shapely.geometry.shape(json.loads(geojson)), lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1]))
    )
    r, x0, y1 = grid["resolution"], grid["bounds"][0], grid["bounds"][3]
    xx, yy = np.meshgrid(x0 + r * (np.arange(grid["width"]) + 0.5), y1 - r * (np.arange(grid["height"]) + 0.5))
    return shapely.contains_xy(geom, xx, yy).astype(np.uint8)


@pytest.mark.parametrize("crs, res", [("EPSG:3035", 40), ("EPSG:32630", 10), ("EPSG:2154", 25)])
def test_inside_mask_equals_vertex_by_vertex_projection(tmp_path, crs, res):
    for a in read_aois(SITES):
        doc = aoi_grid(a.id, a.geojson, crs, res, tmp_path / a.id / "grid.json", tmp_path / a.id / "inside.npy")
        np.testing.assert_array_equal(
            np.load(tmp_path / a.id / "inside.npy"), _inside_by_vertices(a.geojson, doc["grid"])
        )


#: sha1 of grid.json and inside.npy written by main (commit 16c8864, before the job
#: read its polygon with geopandas) for the demo polygons at the demo grid (EPSG:3035, 40 m).
MAIN_OUTPUTS = {
    "1": ("85b5cf7af2ef01a325839ac1ffca9c9a3b85b10f", "f1f9d49fa537b8ca73046f019d7a1741c303f457"),
    "banc_arguin": ("6f0d30c6ca5697340e68eeac8db870c873cf0659", "f1f9d49fa537b8ca73046f019d7a1741c303f457"),
    "cap_ferret": ("9d65241b23bc5734083f139c709dbf21e7fdcd5c", "16876ac4e30549e3f5b4ef64ff929a70e02d7dcd"),
    "dune_du_pilat": ("b0ac4de6b1a33464304681a5b16c63954c7a64dd", "ff700d954d711d72a420e141649ca4848aedcde8"),
}


def run_aoi_jobs(tmp_path, vector, aois, *extra):
    """The aoi_grid jobs of ``aois`` through Snakemake (the real rule and script)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    over = tmp_path / "over.yaml"
    over.write_text(f"aoi: {{path: {vector}}}\nresults: {tmp_path / 'results'}\n")
    targets = [str(tmp_path / "results" / a / "aoi" / f) for a in aois for f in ("grid.json", "inside.npy")]
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", *targets, "--cores", "1", *extra,
         "--configfile", str(ROOT / "config" / "demo.yaml"), str(over)],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def sha1(path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


def test_demo_polygons_give_mains_bytes(tmp_path):
    for vector, aois in ((BANC, ["1"]), (SITES, ["banc_arguin", "cap_ferret", "dune_du_pilat"])):
        run_aoi_jobs(tmp_path / vector.stem, vector, aois)
        for a in aois:
            out = tmp_path / vector.stem / "results" / a / "aoi"
            assert (sha1(out / "grid.json"), sha1(out / "inside.npy")) == MAIN_OUTPUTS[a], a


def test_editing_one_polygon_reruns_that_aoi_only(tmp_path):
    vector = tmp_path / "sites.geojson"
    fc = json.loads(SITES.read_text())
    vector.write_text(json.dumps(fc))
    aois = [f["properties"]["id"] for f in fc["features"]]
    run_aoi_jobs(tmp_path, vector, aois)
    grids = {a: tmp_path / "results" / a / "aoi" / "grid.json" for a in aois}
    before = {a: p.stat().st_mtime_ns for a, p in grids.items()}
    time.sleep(0.05)
    # move the first vertex (and the closing one) of cap_ferret by ~50 m; touch the file's others
    f = next(f for f in fc["features"] if f["properties"]["id"] == "cap_ferret")
    ring = f["geometry"]["coordinates"][0] if f["geometry"]["type"] == "Polygon" else f["geometry"]["coordinates"][0][0]
    ring[0][0] += 0.0006
    ring[-1][0] += 0.0006
    vector.write_text(json.dumps(fc))
    run_aoi_jobs(tmp_path, vector, aois)
    after = {a: p.stat().st_mtime_ns for a, p in grids.items()}
    assert [a for a in aois if after[a] != before[a]] == ["cap_ferret"]
    doc = json.loads(grids["cap_ferret"].read_text())
    assert doc["geometry_4326"] == f["geometry"] or shapely.geometry.shape(doc["geometry_4326"]).equals(
        shapely.geometry.shape(f["geometry"])
    )
    os.utime(vector)  # the file's mtime alone reruns nothing: the rule has no input on it
    run_aoi_jobs(tmp_path, vector, aois)
    assert {a: p.stat().st_mtime_ns for a, p in grids.items()} == after


def test_parsing_the_workflow_imports_no_geopandas(tmp_path):
    """The Snakefile reads the polygons every time Snakemake starts: with pyogrio,
    shapely and pyproj only (geopandas is for the aoi_grid job)."""
    over = tmp_path / "over.yaml"
    over.write_text(f"results: {tmp_path / 'results'}\n")
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "snakemake", "-n", "--cores", "1",
         "--configfile", str(ROOT / "config" / "demo.yaml"), str(over)],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    imported = {ln.rsplit("|", 1)[-1].strip() for ln in proc.stderr.splitlines() if ln.startswith("import time:")}
    assert {"pyogrio._io", "shapely", "pyproj"} <= imported  # the reader ran, and -X importtime saw it
    assert not sorted(m for m in imported if m.startswith("geopandas."))
