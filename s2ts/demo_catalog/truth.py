"""The clear-sky ground truth saved beside the catalog (``truth/truth.json``):
writing it, reading it back, and :class:`Truth`, which renders the scene at any
points with the code that rendered the item pixels."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import shapely
from pyproj import CRS
from shapely.geometry import Polygon

from s2ts.demo_catalog.common import EPSG, UTM, _iso, _transformer
from s2ts.demo_catalog.plan import PLATFORMS, Datatake
from s2ts.demo_catalog.scene import BANDS, CLASS_NAMES, render, static_fields
from s2ts.errors import UserError


def _truth_doc(scene: dict, datatakes: list[Datatake], seed: int, d0: dt.date, d1: dt.date) -> dict:
    acqs = []
    for d in datatakes:
        acqs.append(
            {
                "datetime": _iso(d.sensing),
                "solar_day": (d.sensing + dt.timedelta(hours=-1.24 / 15.0)).date().isoformat(),
                "platform": PLATFORMS[d.platform]["name"],
                "relative_orbit": d.orbit,
                "partial_swath": d.partial,
                "item_ids": [i.id for i in d.items],
                "processing_baselines": [i.baseline for i in d.items],
                "sun_zenith_deg": round(d.sun[0], 6),
                "sun_azimuth_deg": round(d.sun[1], 6),
                "key": list(d.key),
                **d.state,
            }
        )
    return {
        "format": "s2ts-demo-truth/1",
        "description": (
            "Clear-sky ground truth of the s2ts synthetic demo catalog: the static scene and the per-acquisition "
            "state (tide, sandbank polygons in EPSG:32630, seasonal factors) the item pixels were rendered from. "
            "Reflectance DN = reflectance * 10000, no baseline offset, no clouds, no noise."
        ),
        "seed": seed,
        "start": d0.isoformat(),
        "end": d1.isoformat(),
        "class_codes": {str(k): v for k, v in CLASS_NAMES.items()},
        "bands": list(BANDS),
        "scene": scene,
        "acquisitions": acqs,
    }


def _as_utc(value) -> dt.datetime | dt.date:
    if isinstance(value, np.datetime64):
        value = value.astype("datetime64[us]").item()
    elif hasattr(value, "to_pydatetime"):
        value = value.to_pydatetime()
    elif isinstance(value, str):
        value = value.strip()
        if len(value) == 10:
            return dt.date.fromisoformat(value)
        value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
    if isinstance(value, dt.date):
        return value
    raise TypeError(f"not a datetime: {value!r}")


class Truth:
    """Clear-sky ground truth of a demo catalog (see :func:`load_truth`)."""

    TOLERANCE_S = 120.0

    def __init__(self, doc: dict):
        self.doc = doc
        self.scene = doc["scene"]
        self._acq = doc["acquisitions"]
        self._times = [dt.datetime.fromisoformat(a["datetime"].replace("Z", "+00:00")) for a in self._acq]
        ex = self.scene["extent"]
        self.extent = tuple(ex)

    @property
    def acquisitions(self) -> list[dt.datetime]:
        """Acquisition (sensing) datetimes, UTC, in time order."""
        return list(self._times)

    @property
    def dates(self) -> list[dt.date]:
        """Solar days of the acquisitions."""
        return [dt.date.fromisoformat(a["solar_day"]) for a in self._acq]

    def acquisition(self, item_datetime) -> dict:
        """The saved per-acquisition record (tide_m, sand_wkt, item_ids, ...)."""
        t = _as_utc(item_datetime)
        if not isinstance(t, dt.datetime):
            for a in self._acq:
                if a["solar_day"] == t.isoformat():
                    return a
            raise KeyError(f"no demo acquisition on {t}")
        best = min(range(len(self._times)), key=lambda i: abs((self._times[i] - t).total_seconds()), default=None)
        if best is None or abs((self._times[best] - t).total_seconds()) > self.TOLERANCE_S:
            raise KeyError(f"no demo acquisition at {t.isoformat()}")
        return self._acq[best]

    def _points(self, xs, ys, crs):
        xs = np.asarray(xs, dtype=np.float64)
        ys = np.asarray(ys, dtype=np.float64)
        if xs.shape != ys.shape:
            raise ValueError("xs and ys must have the same shape")
        src = CRS.from_user_input(crs)
        if src.to_epsg() != EPSG:
            xs, ys = _transformer(src.to_wkt(), UTM).transform(xs, ys)
            xs, ys = np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)
        x0, y0, x1, y1 = self.extent
        inside = np.isfinite(xs) & np.isfinite(ys) & (xs >= x0) & (xs < x1) & (ys > y0) & (ys <= y1)
        return xs, ys, inside

    def _render(self, item_datetime, xs, ys, crs, bands: bool):
        acq = self.acquisition(item_datetime)
        x, y, inside = self._points(xs, ys, crs)
        xi, yi = x[inside], y[inside]
        st = static_fields(self.scene, xi, yi)
        cls, dn = render(self.scene, acq, st, bands=bands)
        return x.shape, inside, cls, dn

    def reflectance(self, item_datetime, xs, ys, crs=UTM) -> dict[str, np.ndarray]:
        """Clear-sky surface reflectance DN (scale 10000, no offset) of B03, B04, B08 at the points."""
        shape, inside, _, dn = self._render(item_datetime, xs, ys, crs, True)
        out = {}
        for k, b in enumerate(BANDS):
            a = np.full(shape, np.nan, dtype=np.float64)
            a[inside] = dn[k]
            out[b] = a
        return out

    def classes(self, item_datetime, xs, ys, crs=UTM) -> np.ndarray:
        """Land-cover class codes (uint8, see CLASS_NAMES; 0 outside the extent) at the points."""
        shape, inside, cls, _ = self._render(item_datetime, xs, ys, crs, False)
        out = np.zeros(shape, dtype=np.uint8)
        out[inside] = cls
        return out

    def sand_polygon(self, item_datetime) -> Polygon:
        """Emerged Banc d'Arguin at that acquisition (EPSG:32630)."""
        return shapely.from_wkt(self.acquisition(item_datetime)["sand_wkt"])

    def tide(self, item_datetime) -> float:
        return float(self.acquisition(item_datetime)["tide_m"])


def load_truth(catalog_dir) -> Truth:
    """Read ``<catalog_dir>/truth/truth.json`` (``catalog_dir`` may also be the catalog.json path)."""
    p = Path(catalog_dir)
    if p.is_file():
        p = p.parent
    f = p / "truth" / "truth.json"
    if not f.exists():
        raise UserError(f"demo truth not found: {f}; generate the catalog with s2ts.demo_catalog first")
    return Truth(json.loads(f.read_text()))
