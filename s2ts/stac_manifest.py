"""STAC manifest stage: search a catalog for one AOI and write its item manifest.

* STAC APIs are searched with pystac-client (all pages, retries with backoff).
  The cloud filter is sent as a ``query`` only when the server declares the
  query conformance class; otherwise the search is bbox + datetime only and the
  filter runs here (some servers answer nothing to an unsupported ``query``).
* Local static catalogs (``catalog.json`` / ``collection.json``) are walked with
  pystac and filtered by the same predicate, :func:`item_matches`.
* Reprocessings of one product are reduced to one item (highest processing
  baseline, then latest generation time, then id); items are grouped by the
  AOI's local **solar day**.

Checked before anything is written: every band and the mask band are assets of
every item, with an href; the mask band is a classification band (its metadata,
else its pixels). Every request to a STAC API waits at most ``stac.timeout``, and
each retry is said on the console as it happens.

Outputs (deterministic, sorted keys, no signed URL ever):
``manifest.csv`` one row per item; ``manifest.json`` the search and its counts;
``items/<solar-day>.json`` the day's items as a GeoJSON FeatureCollection, so
that each per-date job depends on its own date's file only.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import logging
import os
import time
from pathlib import Path
from urllib.parse import urlsplit

from s2ts import item_meta as im
from s2ts.errors import UserError
from s2ts.runner import CONSOLE

log = logging.getLogger("stac_manifest")

MANIFEST_COLUMNS = [
    "date",
    "id",
    "datetime",
    "platform",
    "mgrs_tile",
    "relative_orbit",
    "epsg",
    "processing_baseline",
    "cloud_cover",
]


# --------------------------------------------------------------------------- predicate
def item_matches(item: dict, aoi_geom, start: dt.date, end: dt.date, max_cloud_cover: float) -> bool:
    """The search predicate: footprint intersects the AOI bbox, ``start <= datetime <
    end`` (UTC), and ``eo:cloud_cover < max_cloud_cover`` (100 keeps everything)."""
    import shapely
    import shapely.geometry

    t = im.item_datetime(item)
    t0 = dt.datetime.combine(start, dt.time(), dt.UTC)
    t1 = dt.datetime.combine(end, dt.time(), dt.UTC)
    if not (t0 <= t < t1):
        return False
    if max_cloud_cover < 100:
        cc = item.get("properties", {}).get("eo:cloud_cover")
        if cc is None or not float(cc) < max_cloud_cover:
            return False
    box = shapely.geometry.box(*aoi_geom.bounds)
    if item.get("geometry"):
        footprint = shapely.geometry.shape(item["geometry"])
    elif item.get("bbox"):
        footprint = shapely.geometry.box(*item["bbox"][:2], *item["bbox"][-2:]) if len(item["bbox"]) == 4 else None
    else:
        return False
    return bool(footprint is not None and footprint.intersects(box))


# --------------------------------------------------------------------------- sources
#: Retry policy of STAC API requests: per request (urllib3) up to 5 retries with
#: exponential backoff from BACKOFF seconds, honouring Retry-After; then up to
#: ATTEMPTS whole-search attempts.
BACKOFF = 0.5
ATTEMPTS = 4


def is_url(catalog: str) -> bool:
    return urlsplit(catalog).scheme in ("http", "https")


#: Seconds allowed to open a connection: ``stac.timeout`` when it is shorter.
CONNECT_TIMEOUT = 10.0


def _timeouts(timeout: float) -> tuple[float, float]:
    """(connect, read) timeouts of every request to the catalog (``stac.timeout``)."""
    return (min(CONNECT_TIMEOUT, float(timeout)), float(timeout))


def _describe_fault(error, response, timeout) -> str:
    """A retried request's fault, in words a user can act on."""
    if response is not None and getattr(response, "status", None):
        return f"the server answered HTTP {response.status}"
    text = f"{type(error).__name__}: {error}" if error is not None else "no answer"
    if "timed out" in text.lower() or "timeout" in type(error).__name__.lower():
        return f"no answer within stac.timeout = {timeout:g} s"
    return im.scrub_secrets(text)[:200]


def _retry(timeout: float = 60):
    from urllib3.util.retry import Retry

    class LoggedRetry(Retry):
        """urllib3's Retry, saying each retry on the console as it happens (the job's
        log and the terminal): a server that is slow or failing is never silent."""

        def increment(self, method=None, url=None, response=None, error=None, _pool=None, _stacktrace=None):
            new = super().increment(method, url, response, error, _pool, _stacktrace)
            where = f"{_pool.scheme}://{_pool.host}:{_pool.port}" if _pool is not None else ""
            retry_after = new.get_retry_after(response) if response is not None else None
            if retry_after is not None and new.respect_retry_after_header:
                wait = f"in {retry_after:g} s (the server's Retry-After)"
            else:
                wait = f"in {new.get_backoff_time():g} s"
            log.warning(
                "STAC request %s %s: %s; retry %d %s",
                method,
                im.strip_secrets(f"{where}{url or ''}"),
                _describe_fault(error, response, timeout),
                len(new.history),
                wait,
                extra=CONSOLE,
            )
            return new

    return LoggedRetry(
        total=5,
        connect=3,
        read=3,
        status=5,
        backoff_factor=BACKOFF,
        backoff_max=30,
        status_forcelist=(429, 500, 502, 503, 504),
        allowed_methods=None,  # retry POST searches too
        respect_retry_after_header=True,
        raise_on_status=False,
    )


def _timed_out(exc: BaseException | None) -> bool:
    while exc is not None:
        if "timed out" in str(exc).lower() or isinstance(exc, TimeoutError):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _transient(exc: BaseException) -> bool:
    """Worth retrying: network errors, timeouts, 408/429/5xx, a truncated JSON body."""
    status = getattr(exc, "status_code", None)
    if status is not None:
        return status in (408, 429, 500, 502, 503, 504)
    while exc is not None:
        if isinstance(exc, json.JSONDecodeError | ConnectionError | TimeoutError):
            return True
        text = str(exc)
        if any(s in text for s in ("Max retries exceeded", "timed out", "Connection aborted", "RemoteDisconnected")):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _search_with_retries(client, kwargs: dict, url: str, attempts: int, timeout: float = 60) -> list[dict]:
    """The whole paged search, retried from the first page on transient failures.

    Each HTTP request already retries 429/5xx and connection errors with backoff
    (urllib3, honouring Retry-After); this outer loop also covers what arrives as a
    200 but is broken (a truncated JSON page) and failures that outlast a request's
    own retries. Nothing is written unless the whole search succeeds.
    """
    for attempt in range(1, attempts + 1):
        try:
            return list(client.search(**kwargs).items_as_dicts())
        except Exception as exc:
            if _timed_out(exc):
                reason = f"no answer within stac.timeout = {timeout:g} s, each request retried"
            else:
                reason = f"{type(exc).__name__}: {im.scrub_secrets(str(exc).strip())[:300]}"
            if attempt == attempts or not _transient(exc):
                slow = " If the server is only slow, raise stac.timeout." if _timed_out(exc) else ""
                raise UserError(
                    f"stac.catalog: the search at {url} failed after {attempt} attempt(s) ({reason}).{slow} "
                    "Retry later or check the server; nothing was written."
                ) from None
            wait = min(30.0, 4 * BACKOFF * 2.0 ** (attempt - 1))
            log.warning(
                "STAC search attempt %d of %d failed (%s); starting it again in %.1f s",
                attempt,
                attempts,
                reason,
                wait,
                extra=CONSOLE,
            )
            time.sleep(wait)
    raise AssertionError("unreachable")


def _unreachable(url: str, exc: BaseException, timeout: float) -> UserError:
    """The message for a catalog that cannot be reached or does not answer in time."""
    if _timed_out(exc):
        cause = (
            f"no answer within stac.timeout = {timeout:g} s, retries included. If the server is only slow, "
            "raise stac.timeout; otherwise check the URL and your network"
        )
    else:
        cause = f"{type(exc).__name__}. Check the URL and your network"
    return UserError(
        f"stac.catalog: cannot reach the STAC catalog at {url} ({cause}); to try the workflow offline, use the "
        "embedded demo catalog (stac.catalog: demo, or `make demo`)."
    )


def _open_api(url: str, timeout: float = 60):
    from pystac_client import Client
    from pystac_client.stac_api_io import StacApiIO

    try:
        # the timeout on the StacApiIO and on Client.open: every request, the landing page included
        io = StacApiIO(max_retries=_retry(timeout), timeout=_timeouts(timeout))
        return Client.open(url, stac_io=io, timeout=_timeouts(timeout))
    except Exception as exc:
        if not _is_connection_error(exc):
            raise UserError(
                f"stac.catalog: {url} did not answer as a STAC catalog or API ({str(exc).strip()[:200]}). "
                "Check the URL points at a STAC API root (e.g. https://planetarycomputer.microsoft.com/api/stac/v1)."
            ) from None
        raise _unreachable(url, exc, timeout) from None


def _is_connection_error(exc: BaseException) -> bool:
    import requests

    while exc is not None:
        if isinstance(exc, (requests.exceptions.ConnectionError, requests.exceptions.Timeout)):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def search_api(url, collection, aoi_geom, start, end, max_cloud_cover, page_size=100, timeout=60):
    """Return (item dicts, description of how the search was done)."""
    from pystac_client import ConformanceClasses

    client = _open_api(url, timeout)
    if not client.conforms_to(ConformanceClasses.ITEM_SEARCH):
        # A static catalog served over HTTP: walk it like a local one.
        return walk_static(url, collection, aoi_geom, start, end, max_cloud_cover, timeout)
    try:
        found = client.get_collection(collection)
    except Exception as exc:
        if _is_connection_error(exc):
            raise _unreachable(url, exc, timeout) from None
        found = None
    if found is None:
        try:
            available = sorted(c.id for c in client.get_collections())
        except Exception as exc:
            if _is_connection_error(exc):
                raise _unreachable(url, exc, timeout) from None
            raise
        raise UserError(
            f"stac.collection: '{collection}' is not a collection of {url}. Available: "
            f"{', '.join(available[:30]) or 'none'}."
        ) from None
    bbox = [float(v) for v in aoi_geom.bounds]
    kwargs = dict(
        collections=[collection],
        bbox=bbox,
        datetime=f"{start.isoformat()}T00:00:00Z/{end.isoformat()}T00:00:00Z",
        limit=page_size,
    )
    use_query = max_cloud_cover < 100 and client.conforms_to(ConformanceClasses.QUERY)
    if use_query:
        kwargs["query"] = {"eo:cloud_cover": {"lt": max_cloud_cover}}
        mode = "STAC API search with query eo:cloud_cover < max_cloud_cover"
    else:
        mode = "STAC API search by bbox and datetime; cloud filter applied on the client"
        if max_cloud_cover < 100:
            log.info("%s does not conform to the STAC query extension: filtering eo:cloud_cover on the client", url)
    items = _search_with_retries(client, kwargs, url, ATTEMPTS, timeout)
    return items, mode


def _catalog_io(timeout: float):
    """pystac's reader for static catalogs, with two changes: HTTP reads get
    ``stac.timeout`` and retries (pystac's own has no timeout), and an item asset
    without ``href`` is set aside instead of failing the whole walk with pystac's
    KeyError; :func:`walk_static` puts it back so that :func:`check_assets` can name
    the item and the asset, if the run needs that asset."""
    import requests
    from pystac.stac_io import DefaultStacIO
    from requests.adapters import HTTPAdapter

    class CatalogIO(DefaultStacIO):
        def __init__(self):
            super().__init__()
            self.without_href: dict[str, dict] = {}
            self.session = requests.Session()
            self.session.mount("http://", HTTPAdapter(max_retries=_retry(timeout)))
            self.session.mount("https://", HTTPAdapter(max_retries=_retry(timeout)))

        def read_text_from_href(self, href: str) -> str:
            if not is_url(href):
                return super().read_text_from_href(href)
            resp = self.session.get(href, timeout=_timeouts(timeout))
            resp.raise_for_status()
            return resp.text

        def stac_object_from_dict(self, d, href=None, root=None, preserve_dict=True):
            assets = d.get("assets") if d.get("type") == "Feature" else None
            if isinstance(assets, dict):
                bad = {k: a for k, a in assets.items() if not (isinstance(a, dict) and a.get("href"))}
                if bad:
                    d = {**d, "assets": {k: a for k, a in assets.items() if k not in bad}}
                    self.without_href[str(d.get("id"))] = bad
            return super().stac_object_from_dict(d, href=href, root=root, preserve_dict=preserve_dict)

    return CatalogIO()


def walk_static(path, collection, aoi_geom, start, end, max_cloud_cover, timeout: float = 60):
    """Walk a static catalog (local path or URL of catalog.json / collection.json)."""
    import pystac

    stac_io = _catalog_io(timeout)
    try:
        root = pystac.read_file(str(path), stac_io=stac_io)
    except Exception as exc:
        if is_url(str(path)) and _is_connection_error(exc):
            raise _unreachable(str(path), exc, timeout) from None
        raise UserError(
            f"stac.catalog: '{path}' is not a STAC catalog or collection ({type(exc).__name__}: "
            f"{str(exc).strip()[:200]}). Point stac.catalog at a catalog.json, a STAC API URL, or use 'demo'."
        ) from None
    if not isinstance(root, pystac.Catalog):
        raise UserError(
            f"stac.catalog: '{path}' is a STAC {type(root).__name__}, not a catalog or collection: "
            "point stac.catalog at the catalog.json or collection.json that links the items."
        )
    collections = {root.id: root} if isinstance(root, pystac.Collection) else {}
    if not collections:
        collections = {c.id: c for c in root.get_all_collections()}
    if collection not in collections:
        raise UserError(
            f"stac.collection: '{collection}' is not a collection of {path}. Available: "
            f"{', '.join(sorted(collections)) or 'none'}."
        )
    items = []
    try:
        for item in collections[collection].get_items(recursive=True):
            item.make_asset_hrefs_absolute()
            d = item.to_dict(include_self_link=False, transform_hrefs=False)
            d["assets"].update(stac_io.without_href.get(item.id, {}))
            items.append(d)
    except Exception as exc:
        if is_url(str(path)) and _is_connection_error(exc):
            raise _unreachable(str(path), exc, timeout) from None
        raise UserError(
            f"stac.catalog: cannot read the items of collection '{collection}' of '{path}' after {len(items)} "
            f"item(s) ({type(exc).__name__}: {im.scrub_secrets(str(exc).strip())[:200]}). Every item link must "
            "lead to a STAC item JSON: fix or regenerate the catalog."
        ) from None
    return items, "static catalog walked; all filters applied on the client"


def search(catalog, collection, aoi_geom, start, end, max_cloud_cover, timeout=60):
    """All items of ``collection`` matching :func:`item_matches`, from any source."""
    if is_url(catalog):
        raw, mode = search_api(catalog, collection, aoi_geom, start, end, max_cloud_cover, timeout=timeout)
    else:
        if not Path(catalog).exists():
            raise UserError(
                f"stac.catalog: '{catalog}' is neither a URL nor an existing file. Use a STAC API URL, the "
                "path of a local catalog.json, or 'demo' for the embedded offline catalog."
            )
        raw, mode = walk_static(catalog, collection, aoi_geom, start, end, max_cloud_cover, timeout)
    kept = [it for it in raw if item_matches(it, aoi_geom, start, end, max_cloud_cover)]
    return raw, kept, mode


# --------------------------------------------------------------------------- shaping
def clean_item(item: dict) -> dict:
    """The item as written to the per-date files: absolute, unsigned hrefs, no links;
    assets without href (which nothing can read, and which the loader's pystac would
    fail on) dropped: :func:`check_assets` has made sure the run needs none of them."""
    out = {k: v for k, v in item.items() if k != "links"}
    assets = item.get("assets", {})
    out["assets"] = {k: {**a, "href": im.normalise_href(a["href"])} for k, a in assets.items() if _has_href(a)}
    dropped = sorted(k for k, a in assets.items() if not _has_href(a))
    if dropped:
        log.warning("item %s: asset(s) %s have no href and are left out (not used)", item["id"], ", ".join(dropped))
    return out


def _has_href(asset) -> bool:
    return isinstance(asset, dict) and bool(asset.get("href"))


def dedupe(items: list[dict]) -> tuple[list[dict], int]:
    """One item per product: highest baseline, then latest generation, then id."""
    best: dict[tuple, dict] = {}
    for it in items:
        key = im.product_key(it)
        rank = (
            im.baseline_version(it.get("properties", {}).get("s2:processing_baseline")) or (),
            im.generation_time(it),
            it["id"],
        )
        if key not in best or rank > best[key][0]:
            best[key] = (rank, it)
    kept = sorted((v[1] for v in best.values()), key=lambda it: (im.item_datetime(it), it["id"]))
    return kept, len(items) - len(kept)


def check_assets(items: list[dict], bands: list[str], mask_band: str, catalog: str) -> None:
    """Every band and the mask band are assets of every item, with an href."""
    for it in items:
        assets = it.get("assets", {})
        keys = set(assets)
        for band, what, key in [(b, "band", "bands") for b in bands] + [(mask_band, "mask band", "mask.band")]:
            if band not in keys:
                raise UserError(
                    f"{key}: the {what} '{band}' is not an asset of item {it['id']} in {catalog} "
                    f"(its assets: {', '.join(sorted(keys))}). Choose among those."
                )
            if not _has_href(assets[band]):
                raise UserError(
                    f"stac.catalog: item {it['id']} in {catalog} has an asset '{band}' ({key}) without href, so its "
                    "pixels cannot be read. Every STAC asset needs an href: fix that item's JSON (or ask the "
                    f"catalog's provider), or leave '{band}' out of {key}."
                )


#: Largest value of a classification band whose classes the mask can use: the tile
#: stage keeps one bit per class (classes 0-15; SCL's are 0-11).
MAX_CLASS = 15


def check_mask_band(items: list[dict], mask_band: str, catalog: str, signing: str = "none") -> None:
    """The mask band must be a classification band (SCL): judged from each item's
    asset metadata (:func:`s2ts.item_meta.classification_evidence`) and, when the
    metadata cannot tell, from the values of the first item's asset."""
    undecided = None
    for it in items:
        is_class, why = im.classification_evidence(it["assets"][mask_band])
        if is_class is False:
            raise _not_classification(it, mask_band, why, catalog)
        if is_class is None and undecided is None:
            undecided = it
    if undecided is None:
        return
    href = undecided["assets"][mask_band]["href"]
    try:
        values, dtype = _sample_values(href, signing)
    except Exception as exc:
        raise UserError(
            f"mask.band: the metadata of asset '{mask_band}' of item {undecided['id']} in {catalog} does not say "
            f"whether it is a classification band, and reading it to check failed ({type(exc).__name__}: "
            f"{im.scrub_secrets(str(exc).strip())[:200]}). Check the asset, or set mask.band to the scene "
            "classification band (SCL)."
        ) from None
    import numpy as np

    if not np.issubdtype(values.dtype, np.integer):
        raise _not_classification(undecided, mask_band, f"its pixels are {dtype}, not classes", catalog)
    top = int(values.max()) if values.size else 0
    if top > MAX_CLASS:
        raise _not_classification(
            undecided,
            mask_band,
            f"its pixels reach {top} (read from the file; classes are 0-{MAX_CLASS}, SCL's 0-11)",
            catalog,
        )
    log.info(
        "mask.band %s: metadata silent, pixels of item %s are classes (0..%d): a classification band",
        mask_band,
        undecided["id"],
        top,
    )


def _not_classification(item: dict, mask_band: str, why: str, catalog: str) -> UserError:
    candidates = sorted(k for k, a in item["assets"].items() if im.classification_evidence(a)[0])
    fix = (
        f"This item's classification band: {', '.join(candidates)}. Set mask.band to it."
        if candidates
        else "Set mask.band to the catalog's scene classification asset."
    )
    return UserError(
        f"mask.band: '{mask_band}' of item {item['id']} in {catalog} is not a classification band ({why}). The mask "
        "band must be a scene classification band such as SCL, whose classes mark clouds, shadows and no data, "
        f"not a reflectance band. {fix}"
    )


def _sample_values(href: str, signing: str):
    """The asset's pixels at most 512 x 512 (nearest: no value invented; GDAL reads
    an overview when there is one), and its data type."""
    import math

    import rasterio
    from rasterio.enums import Resampling

    from s2ts.tile import gdal_options, href_patcher

    patch = href_patcher(signing)
    with rasterio.Env(**gdal_options()), rasterio.open(patch(href) if patch else href) as src:
        f = max(1, math.ceil(max(src.height, src.width) / 512))
        shape = (math.ceil(src.height / f), math.ceil(src.width / f))
        return src.read(1, out_shape=shape, resampling=Resampling.nearest), src.dtypes[0]


def manifest_rows(items: list[dict], lon: float, bands: list[str], mask_band: str) -> list[dict]:
    rows = []
    for it in items:
        props = it.get("properties", {})
        t = im.item_datetime(it)
        row = {
            "date": im.solar_day(t, lon).isoformat(),
            "id": it["id"],
            "datetime": im.format_datetime(t),
            "platform": im.platform(it),
            "mgrs_tile": im.mgrs_tile(it),
            "relative_orbit": im.relative_orbit(it),
            "epsg": im.item_epsg(it, bands[0]),
            "processing_baseline": props.get("s2:processing_baseline", ""),
            "cloud_cover": props.get("eo:cloud_cover", ""),
        }
        for b in list(bands) + [mask_band]:
            row[f"href_{b}"] = it["assets"][b]["href"]
        rows.append(row)
    rows.sort(key=lambda r: (r["date"], r["datetime"], r["id"]))
    return rows


def write_outputs(rows, items, info, bands, mask_band, manifest_csv, manifest_json, items_dir) -> None:
    from s2ts.io import atomic_path, dumps_json, write_json

    by_date: dict[str, list[dict]] = {}
    id_to_date = {r["id"]: r["date"] for r in rows}
    for it in items:
        by_date.setdefault(id_to_date[it["id"]], []).append(it)
    with atomic_path(items_dir) as tmp:
        tmp.mkdir()
        for date, day_items in by_date.items():
            fc = {"type": "FeatureCollection", "features": sorted(day_items, key=lambda i: i["id"])}
            (tmp / f"{date}.json").write_text(dumps_json(fc))
    columns = MANIFEST_COLUMNS + [f"href_{b}" for b in list(bands) + [mask_band]]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    with atomic_path(manifest_csv) as tmp:
        tmp.write_text(buf.getvalue())
    write_json(manifest_json, info)


def stac_manifest(
    aoi,
    catalog: str,
    collection: str,
    start: str,
    end: str,
    max_cloud_cover: float,
    bands: list[str],
    mask_band: str,
    manifest_csv,
    manifest_json,
    items_dir,
    timeout: float = 60,
    signing: str = "none",
) -> dict:
    """Search for one AOI and write its manifest. ``aoi``: ``{"id", "bbox_4326",
    "centroid_4326"}`` (the rule's params, from the polygon read when the workflow is
    parsed: the search does not wait for the AOI's grid) or a grid.json with them."""
    import shapely.geometry

    if not isinstance(aoi, dict):
        aoi = json.loads(Path(aoi).read_text())
    geom = shapely.geometry.box(*aoi["bbox_4326"])  # the search is by bounding box
    lon = aoi["centroid_4326"][0]
    d0, d1 = dt.date.fromisoformat(start), dt.date.fromisoformat(end)
    raw, kept, mode = search(catalog, collection, geom, d0, d1, float(max_cloud_cover), timeout)
    items, n_dupes = dedupe(kept)
    check_assets(items, bands, mask_band, catalog)
    items = [clean_item(it) for it in items]
    check_mask_band(items, mask_band, catalog, signing)
    rows = manifest_rows(items, lon, bands, mask_band)
    dates = sorted({r["date"] for r in rows})
    info = {
        "aoi": aoi["id"],
        "catalog": catalog if is_url(catalog) else os.path.abspath(catalog),
        "collection": collection,
        "search": {
            "bbox_4326": aoi["bbox_4326"],
            "start": start,
            "end_exclusive": end,
            "max_cloud_cover": max_cloud_cover,
            "how": mode,
        },
        "counts": {
            "returned": len(raw),
            "matching": len(kept),
            "duplicates_removed": n_dupes,
            "items": len(items),
            "dates": len(dates),
        },
        "dates": dates,
        "solar_day_longitude": lon,
    }
    if not items:
        info["warning"] = (
            f"no {collection} item of {catalog} matches AOI {aoi['id']} between {start} and {end} "
            f"with eo:cloud_cover < {max_cloud_cover}: this AOI gets an empty manifest and no time series"
        )
        log.warning("%s", info["warning"], extra=CONSOLE)
    write_outputs(rows, items, info, bands, mask_band, manifest_csv, manifest_json, items_dir)
    log.info(
        "AOI %s: %d items returned, %d match, %d duplicates removed -> %d items on %d dates (%s)",
        aoi["id"],
        len(raw),
        len(kept),
        n_dupes,
        len(items),
        len(dates),
        mode,
    )
    return info


def stac_manifest_from_snakemake(smk) -> None:
    p = smk.params
    stac_manifest(
        dict(p.aoi),
        p.catalog,
        p.collection,
        p.start,
        p.end,
        p.max_cloud_cover,
        list(p.bands),
        p.mask_band,
        smk.output.manifest,
        smk.output.info,
        smk.output.item_dir,
        timeout=p.timeout,
        signing=p.signing,
    )
