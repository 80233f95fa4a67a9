"""STAC documents: items (properties, ids, footprints, assets), the collection
and the catalog, laid out like the Planetary Computer's ``sentinel-2-l2a``."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
from shapely.geometry import Polygon, box
from shapely.geometry.polygon import orient

from s2ts.demo_catalog.common import EPSG, RES, UTM, _iso, _stamp, _transformer, _utm, scene_grid
from s2ts.demo_catalog.plan import PLATFORMS, SWATH_EDGE_AZIMUTH_DEG, SWATH_EDGE_LONLAT, Datatake, ItemPlan, pb_tuple
from s2ts.demo_catalog.scene import BANDS

COLLECTION_ID = "sentinel-2-l2a"
CATALOG_ID = "s2ts-demo"
STAC_VERSION = "1.0.0"
COG_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"
EO_BANDS = {
    "B03": {
        "name": "B03",
        "common_name": "green",
        "description": "Band 3 - Green",
        "center_wavelength": 0.56,
        "full_width_half_max": 0.045,
    },
    "B04": {
        "name": "B04",
        "common_name": "red",
        "description": "Band 4 - Red",
        "center_wavelength": 0.665,
        "full_width_half_max": 0.038,
    },
    "B08": {
        "name": "B08",
        "common_name": "nir",
        "description": "Band 8 - NIR",
        "center_wavelength": 0.842,
        "full_width_half_max": 0.145,
    },
}
ASSET_TITLES = {
    "B03": "Band 3 - Green - 10m",
    "B04": "Band 4 - Red - 10m",
    "B08": "Band 8 - NIR - 10m",
    "SCL": "Scene classfication map (SCL)",  # sic, as on the Planetary Computer
}
ITEM_EXTENSIONS = [
    "https://stac-extensions.github.io/eo/v1.0.0/schema.json",
    "https://stac-extensions.github.io/sat/v1.0.0/schema.json",
    "https://stac-extensions.github.io/projection/v1.0.0/schema.json",
]


def _site(platform: str, pb: str) -> str:
    return "ESRI" if pb_tuple(pb) < (3, 0) else f"{platform[1:]}PS"


def _product_ids(dtk: Datatake, item: ItemPlan) -> dict:
    pb = item.baseline
    gen2 = item.generation + dt.timedelta(seconds=7)
    site = _site(dtk.platform, pb)
    ds_start = dtk.sensing + dt.timedelta(seconds=64)
    return {
        "s2:product_uri": (
            f"{dtk.platform}_MSIL2A_{_stamp(dtk.sensing)}_N{pb.replace('.', '')}_R{dtk.orbit:03d}_T{item.tile}_"
            f"{_stamp(item.generation)}.SAFE"
        ),
        "s2:datatake_id": f"G{dtk.platform}_{_stamp(dtk.sensing)}_{dtk.abs_orbit:06d}_N{pb}",
        "s2:granule_id": f"{dtk.platform}_OPER_MSI_L2A_TL_{site}_{_stamp(gen2)}_A{dtk.abs_orbit:06d}_T{item.tile}_N{pb}",
        "s2:datastrip_id": f"{dtk.platform}_OPER_MSI_L2A_DS_{site}_{_stamp(gen2)}_S{_stamp(ds_start)}_N{pb}",
    }


def _reflectance_conversion_factor(t: dt.datetime) -> float:
    doy = t.timetuple().tm_yday
    return 1.0 / (1.0 - 0.01673 * math.cos(0.0172 * (doy - 4))) ** 2


def _scl_stats(scl: np.ndarray) -> dict:
    counts = np.bincount(scl.ravel(), minlength=12).astype(np.float64)
    total = float(scl.size)
    valid = total - counts[0]
    pct = (lambda c: round(100.0 * c / valid, 6)) if valid else (lambda c: 0.0)
    return {
        "eo:cloud_cover": pct(counts[8] + counts[9] + counts[10]),
        "s2:nodata_pixel_percentage": round(100.0 * counts[0] / total, 6),
        "s2:saturated_defective_pixel_percentage": pct(counts[1]),
        "s2:dark_features_percentage": pct(counts[2]),
        "s2:cloud_shadow_percentage": pct(counts[3]),
        "s2:vegetation_percentage": pct(counts[4]),
        "s2:not_vegetated_percentage": pct(counts[5]),
        "s2:water_percentage": pct(counts[6]),
        "s2:unclassified_percentage": pct(counts[7]),
        "s2:medium_proba_clouds_percentage": pct(counts[8]),
        "s2:high_proba_clouds_percentage": pct(counts[9]),
        "s2:thin_cirrus_percentage": pct(counts[10]),
        "s2:snow_ice_percentage": pct(counts[11]),
    }


def _footprint(row0: int, rows: int, partial: bool) -> Polygon:
    """Valid-data footprint of an item window in UTM."""
    g = scene_grid()
    ytop = g.y1 - row0 * RES
    fp = box(g.x0, ytop - rows * RES, g.x1, ytop)
    if partial:
        ex, ey = _utm(*SWATH_EDGE_LONLAT)
        az = math.radians(SWATH_EDGE_AZIMUTH_DEG)
        dx, dy = math.sin(az), math.cos(az)  # along the edge
        nx, ny = math.cos(az), -math.sin(az)  # towards the covered side
        big = 1e5
        half = Polygon(
            [
                (ex - big * dx, ey - big * dy),
                (ex + big * dx, ey + big * dy),
                (ex + big * dx + big * nx, ey + big * dy + big * ny),
                (ex - big * dx + big * nx, ey - big * dy + big * ny),
            ]
        )
        fp = fp.intersection(half)
    return orient(fp, 1.0)


def _to_lonlat(poly: Polygon) -> dict:
    t = _transformer(UTM, "EPSG:4326")
    coords = [[round(c, 8) for c in t.transform(x, y)] for x, y in poly.exterior.coords]
    return {"type": "Polygon", "coordinates": [coords]}


def _bbox(geom: dict) -> list[float]:
    xs = [c[0] for c in geom["coordinates"][0]]
    ys = [c[1] for c in geom["coordinates"][0]]
    return [min(xs), min(ys), max(xs), max(ys)]


def _asset(band: str, row0: int, rows: int) -> dict:
    g = scene_grid()
    res = RES if band != "SCL" else 2 * RES
    ytop = g.y1 - row0 * RES
    shape = [rows * RES // res, g.width * RES // res]
    a = {
        "href": f"./{band}.tif",
        "type": COG_TYPE,
        "roles": ["data"],
        "title": ASSET_TITLES[band],
        "gsd": float(res),
        "proj:bbox": [g.x0, ytop - rows * RES, g.x1, ytop],
        "proj:shape": shape,
        "proj:transform": [float(res), 0.0, g.x0, 0.0, -float(res), ytop],
    }
    if band in EO_BANDS:
        a["eo:bands"] = [dict(EO_BANDS[band])]
    return a


def _item_doc(dtk: Datatake, item: ItemPlan, stats: dict) -> dict:
    geom = _to_lonlat(_footprint(item.row0, item.rows, dtk.partial))
    props = {
        "datetime": _iso(dtk.sensing),
        "platform": PLATFORMS[dtk.platform]["name"],
        "constellation": "Sentinel 2",
        "instruments": ["msi"],
        "proj:epsg": EPSG,
        "s2:mgrs_tile": item.tile,
        "s2:processing_baseline": item.baseline,
        "s2:product_type": "S2MSI2A",
        "s2:datatake_type": "INS-NOBS",
        "s2:generation_time": _iso(item.generation),
        "s2:mean_solar_zenith": round(dtk.sun[0], 6),
        "s2:mean_solar_azimuth": round(dtk.sun[1], 6),
        "s2:reflectance_conversion_factor": round(_reflectance_conversion_factor(dtk.sensing), 12),
        "s2:degraded_msi_data_percentage": 0.0,
        "sat:orbit_state": "descending",
        "sat:relative_orbit": dtk.orbit,
        **_product_ids(dtk, item),
        **stats,
    }
    return {
        "type": "Feature",
        "stac_version": STAC_VERSION,
        "stac_extensions": list(ITEM_EXTENSIONS),
        "id": item.id,
        "collection": COLLECTION_ID,
        "geometry": geom,
        "bbox": _bbox(geom),
        "properties": props,
        "links": [
            {"rel": "collection", "href": "../collection.json", "type": "application/json"},
            {"rel": "parent", "href": "../collection.json", "type": "application/json"},
            {"rel": "root", "href": "../../catalog.json", "type": "application/json"},
        ],
        "assets": {b: _asset(b, item.row0, item.rows) for b in (*BANDS, "SCL")},
    }


def _collection_doc(datatakes: list[Datatake], item_ids: list[str], start: dt.date, end: dt.date) -> dict:
    t = _transformer(UTM, "EPSG:4326")
    g = scene_grid()
    lon0, lat0, lon1, lat1 = t.transform_bounds(g.x0, g.y0, g.x1, g.y1, densify_pts=21)
    if datatakes:
        interval = [_iso(datatakes[0].sensing), _iso(datatakes[-1].sensing)]
    else:
        interval = [f"{start.isoformat()}T00:00:00Z", f"{end.isoformat()}T00:00:00Z"]
    baselines = sorted({i.baseline for d in datatakes for i in d.items}, key=pb_tuple)
    platforms = sorted({PLATFORMS[d.platform]["name"] for d in datatakes})
    tiles = sorted({i.tile for d in datatakes for i in d.items})
    item_assets = {
        b: {k: v for k, v in _asset(b, 0, g.height).items() if k in ("type", "roles", "title", "gsd", "eo:bands")}
        for b in (*BANDS, "SCL")
    }
    return {
        "type": "Collection",
        "id": COLLECTION_ID,
        "stac_version": STAC_VERSION,
        "stac_extensions": ["https://stac-extensions.github.io/item-assets/v1.0.0/schema.json"],
        "title": "Sentinel-2 Level-2A (synthetic offline demo, Arcachon inlet)",
        "description": (
            "SYNTHETIC Sentinel-2 L2A items over the Arcachon inlet (France) generated by s2ts.demo_catalog, "
            "laid out like the Microsoft Planetary Computer sentinel-2-l2a collection: B03, B04, B08 (10 m) and "
            "SCL (20 m) as cloud-optimized GeoTIFFs, processing baselines and the PB >= 04.00 +1000 DN offset. "
            "Not real data."
        ),
        "license": "proprietary",
        "keywords": ["Sentinel", "Copernicus", "ESA", "Satellite", "Reflectance", "Synthetic", "Demo"],
        "providers": [
            {"name": "s2ts demo generator", "roles": ["producer", "processor", "host"]},
        ],
        "extent": {
            "spatial": {"bbox": [[round(lon0, 8), round(lat0, 8), round(lon1, 8), round(lat1, 8)]]},
            "temporal": {"interval": [interval]},
        },
        "summaries": {
            "gsd": [10, 20],
            "eo:bands": [{"gsd": 10, **EO_BANDS[b]} for b in BANDS],
            "platform": platforms,
            "constellation": ["sentinel-2"],
            "instruments": ["msi"],
            "proj:epsg": [EPSG],
            "s2:mgrs_tile": tiles,
            "s2:processing_baseline": baselines,
            "sat:relative_orbit": sorted({d.orbit for d in datatakes}),
        },
        "item_assets": item_assets,
        "links": [
            {"rel": "root", "href": "../catalog.json", "type": "application/json"},
            {"rel": "parent", "href": "../catalog.json", "type": "application/json"},
        ]
        + [{"rel": "item", "href": f"./{i}/{i}.json", "type": "application/geo+json"} for i in item_ids],
    }


def _catalog_doc() -> dict:
    return {
        "type": "Catalog",
        "id": CATALOG_ID,
        "stac_version": STAC_VERSION,
        "title": "s2ts offline demo catalog",
        "description": "Static STAC catalog of synthetic Sentinel-2 L2A items over the Arcachon inlet (s2ts demo).",
        "links": [
            {"rel": "root", "href": "./catalog.json", "type": "application/json"},
            {
                "rel": "child",
                "href": f"./{COLLECTION_ID}/collection.json",
                "type": "application/json",
                "title": "Sentinel-2 Level-2A (synthetic)",
            },
        ],
    }
