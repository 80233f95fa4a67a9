"""AOI stage: polygons from a vector file, their search bbox and target grid.

Two halves:

* :func:`read_aois` runs when the workflow is parsed: it reads ``aoi.path``,
  checks every feature and returns one :class:`Aoi` per polygon (its id becomes
  the ``{aoi}`` wildcard). Every problem is one :class:`UserError` naming the
  feature and the fix, raised before any job runs.
  It stays light (pyogrio, shapely and pyproj; no geopandas), because it runs
  every time Snakemake starts.
* :func:`aoi_grid` is the rule's work: from one polygon (EPSG:4326) and the grid
  settings it writes ``grid.json`` (bbox in EPSG:4326, target grid in
  ``grid.crs``) and ``inside.npy`` (pixels whose centre is inside the polygon).
  The job reads its polygon with geopandas (pyogrio engine, :func:`read_polygon`)
  and reprojects with ``GeoSeries.to_crs``; the rule's ``params`` carry a digest
  of the polygon (:attr:`Aoi.digest`), so editing one polygon reruns that AOI only.

Id normalisation (documented in the README): the attribute value is turned into
text (integral numbers lose their ``.0``, e.g. ``1.0`` -> ``"1"``) and
surrounding blanks are stripped. The result must match ``[A-Za-z0-9_-]+``;
nothing else is rewritten, so an id is never silently changed into another.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from s2ts.errors import UserError

ID_RE = re.compile(r"^[A-Za-z0-9_-]+$")
#: Formats whose standard fixes the CRS (RFC 7946: GeoJSON is WGS 84 lon/lat).
CRS_BY_STANDARD = {"GeoJSON": "EPSG:4326", "GeoJSONSeq": "EPSG:4326"}


@dataclass(frozen=True)
class Aoi:
    id: str
    geojson: str  # the polygon in EPSG:4326 as a GeoJSON geometry string (exact floats)

    @property
    def geometry(self):
        import shapely.geometry

        return shapely.geometry.shape(json.loads(self.geojson))

    @property
    def digest(self) -> str:
        """Digest of the polygon (EPSG:4326): the aoi_grid rule's params value."""
        return geometry_digest(self.geojson)


def geometry_digest(geojson: str) -> str:
    return hashlib.sha1(geojson.encode()).hexdigest()[:16]


def geojson_of(geom) -> str:
    """The GeoJSON text of a shapely geometry (exact floats), as params and grid.json hold it."""
    import shapely.geometry

    return json.dumps(shapely.geometry.mapping(geom))


def normalise_id(value) -> str | None:
    """Text form of an id attribute, or None when it is empty."""
    if value is None:
        return None
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if value.is_integer():
            value = int(value)
    text = str(value).strip()
    return text or None


@contextlib.contextmanager
def _pyogrio_without_geopandas():
    """pyogrio for the parse-time reader, without geopandas.

    ``import pyogrio`` imports geopandas whenever it is installed (pyogrio's
    ``read_dataframe`` half), which the parse never needs: while the reader runs,
    geopandas cannot be imported, and pyogrio's modules are forgotten afterwards,
    so a later ``import pyogrio`` in the same process comes with geopandas as usual.
    Nothing changes when geopandas or pyogrio is already imported."""
    if "geopandas" in sys.modules or "pyogrio" in sys.modules:
        yield
        return
    sys.modules["geopandas"] = None  # import geopandas raises ImportError: pyogrio goes without
    try:
        yield
    finally:
        del sys.modules["geopandas"]
        for name in [m for m in sys.modules if m == "pyogrio" or m.startswith("pyogrio.")]:
            del sys.modules[name]


def read_aois(path: str | Path, id_field: str = "id", layer: str | None = None, source: str | None = None) -> list[Aoi]:
    """Read and check every polygon of a vector file; return them in file order.

    ``layer`` picks the layer of a multi-layer file (aoi.layer); ``source`` names the
    config file that sets aoi.path, for the messages (default "your config")."""
    with _pyogrio_without_geopandas():
        return _read_aois(Path(path), id_field, layer, source)


def _read_aois(path: Path, id_field: str, layer: str | None, source: str | None) -> list[Aoi]:
    import pyogrio
    import pyogrio.raw
    import shapely
    import shapely.geometry
    import shapely.validation
    from pyproj import CRS, Transformer

    where_set = f"in {source}" if source else "in your config"
    if not path.exists():
        raise UserError(
            f"aoi.path: the vector file '{path}' does not exist. Point aoi.path {where_set} at a "
            "GeoJSON, GeoPackage or Shapefile of your polygons (paths are relative to the workflow folder)."
        )
    try:
        layers = [str(name) for name, _ in pyogrio.list_layers(path)]
        layer = check_layer(path, layers, layer)
        info = pyogrio.read_info(path, layer=layer)
        meta, _, geoms, fields = pyogrio.raw.read(path, layer=layer)
    except UserError:
        raise
    except Exception as exc:  # GDAL's own reason is the most useful part
        raise UserError(
            f"aoi.path: cannot read '{path}' as a vector file ({str(exc).strip()}). "
            "Use a format GDAL/OGR reads (GeoJSON, GeoPackage, Shapefile) and check the file is complete."
        ) from None
    in_layer = f" (layer '{layer}')" if len(layers) > 1 else ""
    if len(geoms) == 0:
        raise UserError(f"aoi.path: '{path}'{in_layer} has no features: add at least one polygon.")
    names = list(meta["fields"])
    if id_field not in names:
        raise UserError(
            f"aoi.id_field: the attribute '{id_field}' is not in '{path}'{in_layer} (its attributes: "
            f"{', '.join(names) or 'none'}). Set aoi.id_field to the attribute that holds each polygon's id."
        )
    crs = meta.get("crs") or CRS_BY_STANDARD.get(info.get("driver"))
    if not crs:
        raise UserError(
            f"aoi.path: '{path}' ({info.get('driver')}) has no coordinate reference system. "
            "Define it (e.g. a .prj beside a Shapefile, or ogr2ogr -a_srs EPSG:XXXX) or save the polygons as GeoJSON in lon/lat."
        )
    source_crs = CRS.from_user_input(crs)
    to_4326 = Transformer.from_crs(source_crs, "EPSG:4326", always_xy=True)
    ids = fields[names.index(id_field)]

    aois: list[Aoi] = []
    seen: dict[str, int] = {}
    for i, (raw_id, wkb) in enumerate(zip(ids, geoms)):
        aoi_id = normalise_id(raw_id)
        where = f"feature #{i + 1} of '{path}'"
        if aoi_id is None:
            raise UserError(f"aoi: {where} has an empty '{id_field}': give every polygon an id.")
        where = f"feature #{i + 1} ({id_field}={raw_id!r}) of '{path}'"
        if not ID_RE.match(aoi_id):
            raise UserError(
                f"aoi: {where} has an id that is unsafe as a folder name: ids may contain only letters, "
                "digits, '_' and '-' (no spaces, slashes or dots). Rename it, e.g. "
                f"'{re.sub(r'[^A-Za-z0-9_-]+', '_', aoi_id).strip('_') or 'site_1'}'."
            )
        if aoi_id in seen:
            raise UserError(
                f"aoi: {where} repeats the id '{aoi_id}' of feature #{seen[aoi_id] + 1}: ids must be unique."
            )
        seen[aoi_id] = i
        geom = shapely.from_wkb(wkb) if wkb is not None else None
        if geom is None or geom.is_empty:
            raise UserError(f"aoi: {where} has an empty geometry: draw the polygon or remove the feature.")
        if geom.geom_type not in ("Polygon", "MultiPolygon"):
            raise UserError(
                f"aoi: {where} is a {geom.geom_type}, not a polygon: the workflow needs an area (Polygon or MultiPolygon)."
            )
        if not geom.is_valid:
            raise UserError(
                f"aoi: {where} has an invalid geometry ({shapely.validation.explain_validity(geom)}). "
                "Repair it (QGIS 'Fix geometries', or shapely.make_valid) so it does not cross itself."
            )
        if source_crs.is_geographic:
            check_lon_lat(geom, path, f"feature #{i + 1} ({id_field}={raw_id!r})", info.get("driver"), crs)
        geom_4326 = reproject(geom, to_4326)
        aois.append(Aoi(aoi_id, geojson_of(geom_4326)))
    return aois


def check_layer(path: Path, layers: list[str], layer: str | None) -> str | None:
    """The layer to read: aoi.layer, or the only layer of the file."""
    if layer is None:
        if len(layers) > 1:
            raise UserError(
                f"aoi.layer: '{path}' has {len(layers)} layers ({', '.join(layers)}): set aoi.layer to "
                "the one that holds your polygons."
            )
        return None
    if layer not in layers:
        raise UserError(
            f"aoi.layer: '{path}' has no layer '{layer}' (its layers: {', '.join(layers) or 'none'}): "
            "set aoi.layer to one of them."
        )
    return layer


def check_lon_lat(geom, path: Path, where: str, driver: str | None, crs: str) -> None:
    """A file read as longitude/latitude must hold longitudes and latitudes."""
    x0, y0, x1, y1 = geom.bounds
    if -180 <= x0 and x1 <= 180 and -90 <= y0 and y1 <= 90:
        return
    why = (
        'it is GeoJSON without a "crs" member, so it is read as longitude/latitude (WGS 84, RFC 7946)'
        if driver in CRS_BY_STANDARD
        else f"its CRS ({crs}) says longitude/latitude"
    )
    raise UserError(
        f"aoi.path: the coordinates of '{path}' are not longitude/latitude: {where} spans x {x0:.6g} to "
        f"{x1:.6g}, y {y0:.6g} to {y1:.6g} (longitude must be within -180..180, latitude within -90..90), "
        f"but {why}. Its coordinates look projected: reproject the file to EPSG:4326 (e.g. ogr2ogr "
        "-s_srs EPSG:<its CRS> -t_srs EPSG:4326 out.geojson in.geojson) or save it as a GeoPackage with its CRS."
    )


def reproject(geom, transformer):
    """Geometry transformed vertex by vertex with a pyproj Transformer (always_xy)."""
    import shapely

    return shapely.transform(geom, lambda xy: _stack(transformer.transform(xy[:, 0], xy[:, 1])))


def _stack(xy):
    import numpy as np

    return np.column_stack(xy)


def bbox_4326(geom) -> list[float]:
    return [float(v) for v in geom.bounds]


def _densified_ring(bounds, n: int = 21):
    x0, y0, x1, y1 = bounds
    t = [i / (n - 1) for i in range(n)]
    xs = [x0 + (x1 - x0) * s for s in t] + [x1] * n + [x1 - (x1 - x0) * s for s in t] + [x0] * n
    ys = [y0] * n + [y0 + (y1 - y0) * s for s in t] + [y1] * n + [y1 - (y1 - y0) * s for s in t]
    return xs, ys


def target_grid(geom_4326, crs: str, resolution: float) -> dict:
    """Grid in ``crs`` whose pixel edges are integer multiples of ``resolution``
    and which covers the polygon's EPSG:4326 bounding box (edges densified, so the
    curved image of the box is covered, not only its corners)."""
    from pyproj import CRS, Transformer

    target = CRS.from_user_input(crs)
    tr = Transformer.from_crs("EPSG:4326", target, always_xy=True)
    xs, ys = tr.transform(*_densified_ring(bbox_4326(geom_4326)))
    if not all(map(math.isfinite, list(xs) + list(ys))):
        raise UserError(
            f"grid.crs {crs} cannot represent the polygon's area (coordinates out of the CRS's domain): "
            "choose a CRS that covers the polygons."
        )
    r = float(resolution)
    x0 = math.floor(min(xs) / r) * r
    x1 = math.ceil(max(xs) / r) * r
    y0 = math.floor(min(ys) / r) * r
    y1 = math.ceil(max(ys) / r) * r
    width, height = round((x1 - x0) / r), round((y1 - y0) / r)
    return {
        "crs": crs,
        "epsg": target.to_epsg(),
        "crs_wkt": target.to_wkt(),
        "resolution": r,
        "bounds": [x0, y0, x1, y1],
        "width": width,
        "height": height,
        "transform": [r, 0.0, x0, 0.0, -r, y1],
        "extent_m": [max(xs) - min(xs), max(ys) - min(ys)],
    }


def check_resolution(aoi: Aoi, crs: str, resolution: float) -> dict:
    """The resolution must be positive and smaller than the polygon's extent; return the grid."""
    if not resolution > 0:
        raise UserError(f"grid.resolution = {resolution} must be a positive number of metres (e.g. 10, 20, 40).")
    grid = target_grid(aoi.geometry, crs, resolution)
    w, h = grid["extent_m"]
    if resolution > min(w, h):
        raise UserError(
            f"grid.resolution = {resolution} m is larger than polygon '{aoi.id}' "
            f"({w:.0f} m x {h:.0f} m in {crs}): use a resolution below {min(w, h):.0f} m "
            "(Sentinel-2 is 10-60 m)."
        )
    return grid


def to_crs(geom, src: str, dst: str):
    """One geometry reprojected with geopandas (``GeoSeries.to_crs``: pyproj, always_xy)."""
    import geopandas as gpd

    return gpd.GeoSeries([geom], crs=src).to_crs(dst).iloc[0]


def inside_mask(geom_4326, grid: dict):
    """uint8 (height, width): 1 where the pixel centre is inside the polygon."""
    import numpy as np
    import shapely

    geom = to_crs(geom_4326, "EPSG:4326", grid["crs"])
    r, x0, y1 = grid["resolution"], grid["bounds"][0], grid["bounds"][3]
    xs = x0 + r * (np.arange(grid["width"]) + 0.5)
    ys = y1 - r * (np.arange(grid["height"]) + 0.5)
    xx, yy = np.meshgrid(xs, ys)
    return shapely.contains_xy(geom, xx, yy).astype(np.uint8)


def read_polygon(path, id_field: str, aoi_id: str, layer: str | None = None):
    """The polygon of one AOI in EPSG:4326, read with geopandas (pyogrio engine).

    The file was checked when the workflow was parsed (:func:`read_aois`); this
    finds the feature whose id is ``aoi_id`` and reprojects it with ``to_crs``."""
    import geopandas as gpd

    gdf = gpd.read_file(path, layer=layer, engine="pyogrio", columns=[id_field])
    rows = [i for i, value in enumerate(gdf[id_field]) if normalise_id(value) == aoi_id]
    if len(rows) != 1 or gdf.crs is None:
        raise UserError(
            f"aoi: '{path}' no longer holds one polygon with {id_field} '{aoi_id}' (the file changed "
            "while the workflow ran): run the workflow again."
        )
    return gdf.geometry.iloc[rows].to_crs("EPSG:4326").iloc[0]


def aoi_grid(aoi_id: str, geojson: str, crs: str, resolution: float, grid_json, inside_npy) -> dict:
    """Write the AOI's grid description and inside-polygon mask (byte-deterministic).

    ``geojson`` is the polygon in EPSG:4326 (GeoJSON text, as :func:`geojson_of` writes it)."""
    import io

    import numpy as np
    import shapely.geometry

    from s2ts.io import atomic_path, write_json

    geom = shapely.geometry.shape(json.loads(geojson))
    grid = target_grid(geom, crs, resolution)
    inside = inside_mask(geom, grid)
    lon, lat = geom.centroid.x, geom.centroid.y
    doc = {
        "id": aoi_id,
        "geometry_4326": json.loads(geojson),
        "bbox_4326": bbox_4326(geom),
        "centroid_4326": [lon, lat],
        "grid": grid,
        "pixels_inside": int(inside.sum()),
    }
    write_json(grid_json, doc)
    buf = io.BytesIO()
    np.save(buf, inside, allow_pickle=False)
    with atomic_path(inside_npy) as tmp:
        Path(tmp).write_bytes(buf.getvalue())
    return doc


def aoi_grid_from_snakemake(smk) -> None:
    """The rule's job: the polygon is read from aoi.path with geopandas; the params
    digest (what makes an edit rerun this AOI) must match what the job read."""
    aoi_cfg = smk.config["aoi"]
    aoi_id = smk.wildcards.aoi
    geom = read_polygon(aoi_cfg["path"], aoi_cfg.get("id_field", "id"), aoi_id, aoi_cfg.get("layer"))
    geojson = geojson_of(geom)
    if geometry_digest(geojson) != smk.params.polygon:
        raise UserError(
            f"aoi: the polygon of AOI '{aoi_id}' in '{aoi_cfg['path']}' changed while the workflow ran: "
            "run the workflow again."
        )
    doc = aoi_grid(aoi_id, geojson, smk.params.crs, smk.params.resolution, smk.output.grid, smk.output.inside)
    g = doc["grid"]
    import logging

    logging.getLogger("aoi_grid").info(
        "AOI %s: grid %s x %s at %s m in %s, %s pixels inside the polygon",
        doc["id"],
        g["width"],
        g["height"],
        g["resolution"],
        g["crs"],
        doc["pixels_inside"],
    )
