"""AOI stage: polygons from a vector file, their search bbox and target grid.

Two halves:

* :func:`read_aois` runs when the workflow is parsed: it reads ``aoi.path``,
  checks every feature and returns one :class:`Aoi` per polygon (its id becomes
  the ``{aoi}`` wildcard). Every problem is one :class:`UserError` naming the
  feature and the fix, raised before any job runs.
* :func:`aoi_grid` is the rule's work: from one polygon (GeoJSON, EPSG:4326) and
  the grid settings it writes ``grid.json`` (bbox in EPSG:4326, target grid in
  ``grid.crs``) and ``inside.npy`` (pixels whose centre is inside the polygon).

Id normalisation (documented in the README): the attribute value is turned into
text (integral numbers lose their ``.0``, e.g. ``1.0`` -> ``"1"``) and
surrounding blanks are stripped. The result must match ``[A-Za-z0-9_-]+``;
nothing else is rewritten, so an id is never silently changed into another.
"""

from __future__ import annotations

import json
import math
import re
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


def read_aois(path: str | Path, id_field: str = "id") -> list[Aoi]:
    """Read and check every polygon of a vector file; return them in file order."""
    import pyogrio
    import shapely
    import shapely.geometry
    import shapely.validation
    from pyproj import CRS, Transformer

    path = Path(path)
    if not path.exists():
        raise UserError(
            f"aoi.path: the vector file '{path}' does not exist. Point aoi.path in config.yaml at a "
            "GeoJSON, GeoPackage or Shapefile of your polygons (paths are relative to the workflow folder)."
        )
    try:
        info = pyogrio.read_info(path)
        meta, _, geoms, fields = pyogrio.raw.read(path)
    except Exception as exc:  # GDAL's own reason is the most useful part
        raise UserError(
            f"aoi.path: cannot read '{path}' as a vector file ({str(exc).strip()}). "
            "Use a format GDAL/OGR reads (GeoJSON, GeoPackage, Shapefile) and check the file is complete."
        ) from None
    if len(geoms) == 0:
        raise UserError(f"aoi.path: '{path}' has no features: add at least one polygon.")
    names = list(meta["fields"])
    if id_field not in names:
        raise UserError(
            f"aoi.id_field: the attribute '{id_field}' is not in '{path}' (its attributes: "
            f"{', '.join(names) or 'none'}). Set aoi.id_field to the attribute that holds each polygon's id."
        )
    crs = meta.get("crs") or CRS_BY_STANDARD.get(info.get("driver"))
    if not crs:
        raise UserError(
            f"aoi.path: '{path}' ({info.get('driver')}) has no coordinate reference system. "
            "Define it (e.g. a .prj beside a Shapefile, or ogr2ogr -a_srs EPSG:XXXX) or save the polygons as GeoJSON in lon/lat."
        )
    to_4326 = Transformer.from_crs(CRS.from_user_input(crs), "EPSG:4326", always_xy=True)
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
        geom_4326 = reproject(geom, to_4326)
        aois.append(Aoi(aoi_id, json.dumps(shapely.geometry.mapping(geom_4326))))
    return aois


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


def check_resolution(aoi: Aoi, crs: str, resolution: float) -> None:
    """The resolution must be positive and smaller than the polygon's extent."""
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


def inside_mask(geom_4326, grid: dict):
    """uint8 (height, width): 1 where the pixel centre is inside the polygon."""
    import numpy as np
    import shapely
    from pyproj import Transformer

    geom = reproject(geom_4326, Transformer.from_crs("EPSG:4326", grid["crs"], always_xy=True))
    r, x0, y1 = grid["resolution"], grid["bounds"][0], grid["bounds"][3]
    xs = x0 + r * (np.arange(grid["width"]) + 0.5)
    ys = y1 - r * (np.arange(grid["height"]) + 0.5)
    xx, yy = np.meshgrid(xs, ys)
    return shapely.contains_xy(geom, xx, yy).astype(np.uint8)


def aoi_grid(aoi_id: str, geojson: str, crs: str, resolution: float, grid_json, inside_npy) -> dict:
    """Write the AOI's grid description and inside-polygon mask (byte-deterministic)."""
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
    doc = aoi_grid(
        smk.wildcards.aoi,
        smk.params.geojson,
        smk.params.crs,
        smk.params.resolution,
        smk.output.grid,
        smk.output.inside,
    )
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
