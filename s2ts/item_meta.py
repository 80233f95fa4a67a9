"""Reading Sentinel-2 STAC item metadata the way real catalogs write it.

Pure functions on item dicts (as found in JSON), shared by the manifest stage and
the data stages. They accept both projection forms (``proj:epsg`` integer, as the
Planetary Computer serves it, and ``proj:code`` "EPSG:32613", as pystac >= 1.12
migrates it), at item or asset level.
"""

from __future__ import annotations

import datetime as dt
import re
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

#: Query parameters that carry credentials (Azure SAS, AWS presigning, generic tokens).
SECRET_QUERY_KEYS = re.compile(
    r"^(sig|se|st|sp|sv|sr|spr|skoid|sktid|skt|ske|sks|skv|sdd|token|access_token|"
    r"x-amz-.*|x-goog-.*|signature|key-pair-id|policy|expires)$",
    re.IGNORECASE,
)

# S2A_MSIL2A_20220125T110311_R094_T30TXQ_20220125T153447
MPC_ID = re.compile(
    r"^(?P<platform>S2[A-D])_MSIL2A_(?P<sensing>\d{8}T\d{6})_R(?P<orbit>\d{3})_T(?P<tile>\w{5})_(?P<generated>\d{8}T\d{6})"
)


def baseline_version(value) -> tuple[int, ...] | None:
    """``"04.00"`` -> (4, 0); ``"05.10"`` -> (5, 10). Compared as versions, not text
    or dates ("05.9" < "05.10"). None when absent or unreadable."""
    if value is None:
        return None
    parts = re.findall(r"\d+", str(value))
    return tuple(int(p) for p in parts) if parts else None


def item_datetime(item: dict) -> dt.datetime:
    props = item.get("properties", {})
    value = props.get("datetime") or props.get("start_datetime")
    if value is None:
        raise ValueError(f"item {item.get('id')} has no datetime")
    t = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return t.astimezone(dt.UTC)


def format_datetime(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def solar_day(t: dt.datetime, lon: float) -> dt.date:
    """Local solar date of a UTC time at longitude ``lon`` (degrees east)."""
    return (t.astimezone(dt.UTC) + dt.timedelta(hours=lon / 15.0)).date()


def _epsg_of(d: dict) -> int | None:
    if d.get("proj:epsg") is not None:
        return int(d["proj:epsg"])
    code = d.get("proj:code")
    if code:
        m = re.match(r"^EPSG:(\d+)$", str(code), re.IGNORECASE)
        if m:
            return int(m.group(1))
    return None


def item_epsg(item: dict, asset_key: str | None = None) -> int | None:
    """EPSG code of an asset (if it declares one) or of the item."""
    if asset_key is not None:
        epsg = _epsg_of(item.get("assets", {}).get(asset_key, {}))
        if epsg is not None:
            return epsg
    return _epsg_of(item.get("properties", {}))


def parsed_id(item: dict) -> dict:
    m = MPC_ID.match(item.get("id", ""))
    return m.groupdict() if m else {}


def platform(item: dict) -> str:
    p = item.get("properties", {}).get("platform")
    if p:
        return str(p)
    code = parsed_id(item).get("platform")
    return f"Sentinel-{code[1:]}" if code else ""


def mgrs_tile(item: dict) -> str:
    props = item.get("properties", {})
    if props.get("s2:mgrs_tile"):
        return str(props["s2:mgrs_tile"])
    if props.get("mgrs:utm_zone") and props.get("mgrs:latitude_band"):
        return f"{props['mgrs:utm_zone']}{props['mgrs:latitude_band']}{props.get('mgrs:grid_square', '')}"
    return parsed_id(item).get("tile", "")


def relative_orbit(item: dict):
    props = item.get("properties", {})
    if props.get("sat:relative_orbit") is not None:
        return int(props["sat:relative_orbit"])
    o = parsed_id(item).get("orbit")
    return int(o) if o else None


def generation_time(item: dict) -> str:
    props = item.get("properties", {})
    return str(props.get("s2:generation_time") or parsed_id(item).get("generated") or "")


def product_key(item: dict) -> tuple:
    """Items of the same acquisition product (reprocessings share this key)."""
    return (
        platform(item),
        format_datetime(item_datetime(item))[:19],
        relative_orbit(item),
        mgrs_tile(item),
    )


def strip_secrets(href: str) -> str:
    """Remove credential query parameters (SAS tokens, presigned signatures)."""
    parts = urlsplit(href)
    if not parts.query:
        return href
    kept = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not SECRET_QUERY_KEYS.match(k)]
    return urlunsplit(parts._replace(query=urlencode(kept)))


_URL_WITH_QUERY = re.compile(r"""[a-z][a-z0-9+.-]*://[^\s'"<>?]+\?[^\s'"<>]*""", re.IGNORECASE)


def scrub_secrets(text: str) -> str:
    """``text`` with the credentials removed from every URL in it (log lines, error
    messages: GDAL and odc-stac name the signed URL they failed on)."""
    return _URL_WITH_QUERY.sub(lambda m: strip_secrets(m.group(0)), text)


#: Titles of scene classification assets as catalogs write them: "Scene classification
#: map (SCL)"; the Planetary Computer's own is misspelt "Scene classfication map (SCL)".
_CLASSIFICATION_TITLE = re.compile(r"\bclass\w*ication\b|\bSCL\b", re.IGNORECASE)


def _band_entries(asset: dict) -> list[dict]:
    """The per-band entries of an asset: ``raster:bands`` and ``eo:bands`` (STAC 1.0),
    ``bands`` (STAC 1.1)."""
    out = []
    for key in ("raster:bands", "eo:bands", "bands"):
        out.extend(b for b in asset.get(key) or [] if isinstance(b, dict))
    return out


def classification_evidence(asset: dict) -> tuple[bool | None, str]:
    """Is this asset a classification band (classes, as SCL), judged from its metadata?

    ``(True, why)``, ``(False, why)``, or ``(None, "")`` when the metadata does not say
    (then only its values can tell). Evidence, strongest first: declared
    ``classification:classes``; a ``reflectance`` role; a centre wavelength (a spectral
    band); floating-point or scaled values (a physical quantity); a title naming a
    classification (the Planetary Computer's SCL has no other sign of being one)."""
    bands = _band_entries(asset)
    if asset.get("classification:classes") or any(b.get("classification:classes") for b in bands):
        return True, "its metadata declares classification:classes"
    roles = [str(r).lower() for r in asset.get("roles") or []]
    if "reflectance" in roles:
        return False, "its roles include 'reflectance'"
    for b in bands:
        wavelength = b.get("center_wavelength") or b.get("eo:center_wavelength")
        if wavelength:
            return False, f"it is a spectral band (centre wavelength {wavelength} µm in its metadata)"
    for b in bands:
        data_type = str(b.get("data_type") or "")
        if data_type.startswith(("float", "cfloat", "cint")):
            return False, f"its values are {data_type} (raster:bands data_type), not classes"
        if b.get("scale") not in (None, 1) or b.get("offset") not in (None, 0):
            return False, "its values are scaled (raster:bands scale/offset): a physical quantity, not classes"
    title = str(asset.get("title") or "")
    if _CLASSIFICATION_TITLE.search(title):
        return True, f"its title is {title!r}"
    return None, ""


def normalise_href(href: str) -> str:
    """Absolute local paths for local files (``file://`` URIs decoded); remote
    URLs kept, minus any credentials."""
    if href.startswith("file://"):
        return unquote(urlsplit(href).path)
    return strip_secrets(href)
