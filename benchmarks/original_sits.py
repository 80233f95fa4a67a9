"""Benchmark of the original tutorial's own package, ``sits`` (0.8.0, GPL), as a peer.

Runs the tutorial's steps (``Vec2gdf``, ``set_bbox``, ``StacAttack``, ``searchItems``,
``loadCube``, ``fixS2shift``, ``mask``, ``mask_apply``, ``gapfill``, ``to_nc``) on the
offline demo catalog, with sits installed, unmodified, in a separate virtualenv
(``.bench/sits-venv``, created on first use with ``python3 -m venv`` and
``pip install sits==0.8.0``; sits's code is never copied into this repository).

The demo items are served by a real STAC API on 127.0.0.1:

* ``--server rustac`` (default): ``rustac serve`` (our venv) with its in-memory
  backend. It answers nothing to a search that carries a ``query``, so it is given
  only the items that pass the tutorial's cloud filter (``eo:cloud_cover < 20``,
  applied here) and sits searches by bbox and datetime only;
* ``--server query``: ``tests/stac_api_server.py``, our small STAC API with the
  ``query`` extension, given every item of the period; sits sends the tutorial's
  ``query={"eo:cloud_cover": {"lt": 20}}``.

Items are written to a temporary ItemCollection with absolute ``file://`` asset
hrefs (relative hrefs would be resolved against the server's URL). The steps run
in a subprocess (``benchmarks/sits_driver.py`` in the sits venv), which points
sits at the local server by setting ``StacAttack.stac["stac"]`` after construction.

Prints per-step wall times, the total, the subprocess's peak RSS and the output
NetCDF's size; ``--json`` writes them. When our cube for the same period exists
(``results/demo/1/1_<start>_<end>.nc``), both cubes are compared (dates, grid,
per-band differences) and the differences explained.

    .venv/bin/python benchmarks/original_sits.py [--start 2021-01-01 --end 2023-01-01]
        [--catalog resources/demo-catalog] [--json out.json] [--server rustac|query] [--url URL]

``--url`` points sits at a STAC API that is already running (the items and their
asset hrefs as that server has them, ``file://`` or ``http://``: run_all.py serves
the same items to the workflow and to sits this way) instead of starting one.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

if TYPE_CHECKING:
    import numpy as np

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
DRIVER = Path(__file__).resolve().parent / "sits_driver.py"
DEFAULT_VENV = ROOT / ".bench" / "sits-venv"
SITS_REQUIREMENT = "sits==0.8.0"
SITS_VERSION = "0.8.0"
MAX_CLOUD_COVER = 20.0
#: the first processing baseline whose pixels carry the +1000 offset
PB04_DATE = dt.date(2022, 1, 25)


# --------------------------------------------------------------------------- venv
def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def sits_installed(venv: Path) -> str | None:
    py = venv_python(venv)
    if not py.exists():
        return None
    r = subprocess.run(
        [str(py), "-c", "import importlib.metadata as m; print(m.version('sits'))"], capture_output=True, text=True
    )
    return r.stdout.strip() if r.returncode == 0 else None


KEY_PACKAGES = ["sits", "odc-stac", "odc-loader", "odc-geo", "xarray", "dask", "numpy", "pandas", "rasterio"]
KEY_PACKAGES += ["pystac", "pystac-client", "planetary-computer", "netCDF4"]


def venv_versions(venv: Path) -> dict[str, str]:
    """Versions of the packages that matter, as installed in the sits venv."""
    code = (
        "import importlib.metadata as m, json, sys\n"
        "out = {}\n"
        "for p in sys.argv[1:]:\n"
        "    try: out[p] = m.version(p)\n"
        "    except m.PackageNotFoundError: pass\n"
        "print(json.dumps(out))"
    )
    r = subprocess.run([str(venv_python(venv)), "-c", code, *KEY_PACKAGES], capture_output=True, text=True)
    return json.loads(r.stdout) if r.returncode == 0 else {}


def ensure_venv(venv: Path) -> Path:
    """The sits venv, created and installed on first use (needs the package index)."""
    version = sits_installed(venv)
    if version == SITS_VERSION:
        return venv_python(venv)
    if not venv_python(venv).exists():
        print(f"creating {venv} (python3 -m venv)", file=sys.stderr)
        subprocess.run(["python3", "-m", "venv", str(venv)], check=True)
    print(f"installing {SITS_REQUIREMENT} into {venv}", file=sys.stderr)
    subprocess.run(
        [str(venv_python(venv)), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", SITS_REQUIREMENT],
        check=True,
    )
    version = sits_installed(venv)
    if version != SITS_VERSION:
        raise SystemExit(f"{venv}: sits {version} installed, expected {SITS_VERSION}")
    return venv_python(venv)


# --------------------------------------------------------------------------- items
def parse_time(s: str) -> dt.datetime:
    return dt.datetime.fromisoformat(s.replace("Z", "+00:00"))


def catalog_items(catalog: Path, collection: str = "sentinel-2-l2a", href_base: str | None = None) -> list[dict]:
    """Every item of the static catalog's collection, asset hrefs made absolute
    ``file://`` URIs, links dropped (the server writes its own).

    With ``href_base`` (e.g. ``http://127.0.0.1:PORT/``, a server of the catalog's
    folder: benchmarks/cog_server.py), asset hrefs are ``href_base`` + the asset's
    path relative to the catalog folder instead."""
    catalog = catalog.resolve()
    coll_dir = catalog / collection
    coll = json.loads((coll_dir / "collection.json").read_text())
    items = []
    for link in coll["links"]:
        if link["rel"] != "item":
            continue
        path = (coll_dir / link["href"]).resolve()
        item = json.loads(path.read_text())
        for asset in item["assets"].values():
            href = asset["href"]
            if "://" not in href:
                local = (path.parent / href).resolve()
                if href_base is None:
                    asset["href"] = local.as_uri()
                else:
                    asset["href"] = href_base.rstrip("/") + "/" + quote(local.relative_to(catalog).as_posix())
        item["links"] = []
        item["collection"] = collection
        items.append(item)
    return sorted(items, key=lambda it: (it["properties"]["datetime"], it["id"]))


def in_period(item: dict, start: dt.date, end: dt.date) -> bool:
    t = parse_time(item["properties"]["datetime"])
    return dt.datetime.combine(start, dt.time(), dt.UTC) <= t < dt.datetime.combine(end, dt.time(), dt.UTC)


def write_inputs(tmp: Path, catalog: Path, items: list[dict]) -> tuple[Path, Path]:
    """(ItemCollection JSON, collection JSON) for the server."""
    coll = json.loads((catalog / "sentinel-2-l2a" / "collection.json").read_text())
    coll["links"] = [link for link in coll["links"] if link["rel"] not in ("item", "root", "parent", "self")]
    coll_path = tmp / "collection.json"
    coll_path.write_text(json.dumps(coll))
    items_path = tmp / "items.json"
    items_path.write_text(json.dumps({"type": "FeatureCollection", "features": items}))
    return items_path, coll_path


# --------------------------------------------------------------------------- server
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalStacApi:
    """A STAC API on 127.0.0.1 in its own process group, stopped by its pid."""

    def __init__(self, kind: str, items_path: Path, coll_path: Path, log_path: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        if kind == "rustac":
            cmd = [str(VENV_BIN / "rustac"), "serve", "--addr", f"127.0.0.1:{self.port}", str(coll_path)]
            cmd.append(str(items_path))
        else:
            cmd = [sys.executable, str(ROOT / "tests" / "stac_api_server.py"), "--items", str(items_path)]
            cmd += ["--collection", str(coll_path), "--port", str(self.port), "--page-size", "100"]
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self._wait()

    def _wait(self, timeout: float = 30.0) -> None:
        t0 = time.time()
        while time.time() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"STAC server exited with {self.proc.returncode}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"nothing listening on 127.0.0.1:{self.port}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


# --------------------------------------------------------------------------- run
def run_child(cmd: list[str], timeout: float, log_path: Path) -> tuple[int, float, float]:
    """(exit code, wall seconds, peak RSS in MB) of one child process, its rusage
    taken with ``os.wait4`` on its own pid (``RUSAGE_CHILDREN`` would also count
    pip or the server)."""
    with open(log_path, "w") as log:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() - t0 > timeout:
                os.killpg(proc.pid, signal.SIGKILL)
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.05)
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, wall, usage.ru_maxrss / 1024.0


def machine() -> dict:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kb / 1024**2:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    return {"nproc": os.cpu_count(), "ram": mem, "cpu": cpu, "python": platform.python_version(), "loadavg": load}


# --------------------------------------------------------------------------- comparison
def _stats(d) -> dict:
    import numpy as np

    d = np.asarray(d, dtype="float64")
    d = d[np.isfinite(d)]
    if d.size == 0:
        return {"n": 0}
    a = np.abs(d)
    return {
        "n": int(d.size),
        "mean": float(d.mean()),
        "mae": float(a.mean()),
        "rmse": float(np.sqrt((d**2).mean())),
        "p99_abs": float(np.percentile(a, 99)),
        "max_abs": float(a.max()),
        "within_1dn": float((a <= 1.0).mean()),
        "within_100dn": float((a <= 100.0).mean()),
    }


def _unpack_mask(report: dict) -> np.ndarray | None:
    import numpy as np

    path = report.get("mask_file") if report else None
    if not path or not Path(path).exists():
        return None
    shape = tuple(report["mask_shape"])
    return np.unpackbits(np.load(path), count=int(np.prod(shape))).reshape(shape).astype(bool)


def truth_means(catalog: Path, days: list[str], x, y, crs: str, stride: int) -> np.ndarray | None:
    """The demo's clear-sky truth (DN) averaged over each 40 m pixel (4 x 4 points at
    the 10 m sub-pixel centres), on every ``stride``-th row and column: ``(band, time, y, x)``."""
    import numpy as np

    if not (catalog / "truth" / "truth.json").exists() or stride <= 0:
        return None
    sys.path.insert(0, str(ROOT))
    from s2ts.demo_catalog import load_truth

    truth = load_truth(catalog)
    xs, ys = np.asarray(x)[::stride], np.asarray(y)[::stride]
    res = abs(float(x[1] - x[0]))
    off = (np.arange(4) - 1.5) * res / 4
    gx = xs[None, :, None, None] + off[None, None, None, :] + 0 * off[None, None, :, None]
    gy = ys[:, None, None, None] + 0 * off[None, None, None, :] - off[None, None, :, None]
    gx, gy = np.broadcast_arrays(gx, gy)
    out = np.full((3, len(days), len(ys), len(xs)), np.nan)
    for i, day in enumerate(days):
        r = truth.reflectance(dt.date.fromisoformat(day), gx.ravel(), gy.ravel(), crs)
        for k, b in enumerate(("B03", "B04", "B08")):
            out[k, i] = r[b].reshape(gx.shape).mean(axis=(2, 3))
    return out


def compare_outputs(
    sits_nc: Path, ours_nc: Path, sits_report: dict | None = None, catalog: Path | None = None, truth_stride: int = 4
) -> dict:
    """Compare sits's cube to ours: dates, grid, masks, per-band differences, and
    (demo catalog) each cube's error against the synthetic clear-sky truth.

    sits writes digital numbers (float, offset removed where it decided to); ours is
    CF-packed int16 x 0.0001, decoded to reflectance. Differences are sits - ours in
    DN. A pixel is "observed" in sits where its SCL mask kept it (the mask saved by
    the driver), in ours where ``flag == 1``; everything else was gap-filled.
    """
    import numpy as np
    import xarray as xr

    s = xr.open_dataset(sits_nc)
    o = xr.open_dataset(ours_nc)
    out: dict = {"sits_file": str(sits_nc), "ours_file": str(ours_nc), "ours_created": o.attrs.get("date_created")}
    out["sits_dtypes"] = {k: str(v.dtype) for k, v in s.data_vars.items()}
    out["ours_dtypes_on_disk"] = {k: str(v.encoding.get("dtype", v.dtype)) for k, v in o.data_vars.items()}
    out["sizes_bytes"] = {"sits": Path(sits_nc).stat().st_size, "ours": Path(ours_nc).stat().st_size}
    out["shape"] = {"sits": {k: int(v) for k, v in s.sizes.items()}, "ours": {k: int(v) for k, v in o.sizes.items()}}
    out["grid_identical"] = bool(
        s.sizes["x"] == o.sizes["x"]
        and s.sizes["y"] == o.sizes["y"]
        and np.allclose(s.x.values, o.x.values)
        and np.allclose(s.y.values, o.y.values)
    )
    s_days = [str(t)[:10] for t in s.time.values]
    o_days = [str(t)[:10] for t in o.time.values]
    common = sorted(set(s_days) & set(o_days))
    out["dates"] = {
        "sits": len(s_days),
        "ours": len(o_days),
        "sits_distinct_days": len(set(s_days)),
        "common": len(common),
        "only_sits": sorted(set(s_days) - set(o_days)),
        "only_ours": sorted(set(o_days) - set(s_days)),
        "sits_duplicate_days": sorted({d for d in s_days if s_days.count(d) > 1}),
    }
    si = [s_days.index(d) for d in common]
    oi = [o_days.index(d) for d in common]
    flag = o.flag.isel(time=oi).values
    ours_obs = flag == 1
    smask = _unpack_mask(sits_report)
    if smask is not None and smask.shape[0] == len(s_days):
        sits_obs = ~smask[si]
    else:  # no mask from the driver: take ours as the reference split
        sits_obs = ours_obs
    out["masks"] = {
        "identical_pixels": float((sits_obs == ours_obs).mean()),
        "identical_dates": int(sum(bool((sits_obs[i] == ours_obs[i]).all()) for i in range(len(common)))),
        "observed_sits_only": int((sits_obs & ~ours_obs).sum()),
        "observed_ours_only": int((ours_obs & ~sits_obs).sum()),
        "masked_share_sits": float(1 - sits_obs.mean()),
        "masked_share_ours": float(1 - ours_obs.mean()),
        "from_driver": smask is not None,
    }
    post = np.array([dt.date.fromisoformat(d) >= PB04_DATE for d in common])[:, None, None]
    both_obs = sits_obs & ours_obs
    both_fill = ~sits_obs & ~ours_obs & (flag > 0)
    subsets = {
        "all": np.ones_like(ours_obs),
        "observed_both": both_obs,
        "observed_both_before_pb04": both_obs & ~post,
        "observed_both_from_pb04": both_obs & post,
        "filled_both": both_fill,
        "filled_both_interpolated": both_fill & (flag == 2),
        "filled_both_end_filled": both_fill & (flag == 3),
        "observed_sits_only": sits_obs & ~ours_obs,
        "observed_ours_only": ours_obs & ~sits_obs,
    }
    bands = [b for b in ("B03", "B04", "B08") if b in s and b in o]
    per_band, per_date_bias, cubes = {}, {}, {}
    for b in bands:
        sv = s[b].isel(time=si).values.astype("float64")
        ov = o[b].isel(time=oi).values.astype("float64") * 1e4
        cubes[b] = (sv, ov)
        d = sv - ov
        rec = {
            "sits_nan": int(np.isnan(sv).sum()),
            "sits_zero": int((sv == 0).sum()),
            "sits_zero_dates": {
                common[i]: int(n) for i, n in enumerate((sv == 0).sum(axis=(1, 2))) if n > 0.01 * sv[i].size
            },
            "sits_min_dn": float(np.nanmin(sv)),
            "sits_max_dn": float(np.nanmax(sv)),
            "ours_nan": int(np.isnan(ov).sum()),
        }
        for name, sel in subsets.items():
            rec[name] = _stats(d[sel])
        per_band[b] = rec
        per_date_bias[b] = [float(np.nanmean(np.where(both_obs[i], d[i], np.nan))) for i in range(len(common))]
    out["bands"] = per_band
    worst = []
    for i, day in enumerate(common):
        biases = {b: per_date_bias[b][i] for b in bands}
        if any(np.isfinite(v) and abs(v) > 200 for v in biases.values()):
            worst.append({"date": day, **{b: round(v, 1) for b, v in biases.items()}})
    out["dates_observed_bias_over_200dn"] = worst
    if "SCL" in s:
        scl = s.SCL.values
        out["sits_SCL_exported"] = {
            "dtype": str(s.SCL.dtype),
            "values": sorted({int(v) for v in np.unique(scl[np.isfinite(scl)])}),
        }
    # each cube against the synthetic truth (demo catalog only)
    truth = truth_means(catalog, common, o.x.values, o.y.values, "EPSG:3035", truth_stride) if catalog else None
    if truth is not None:
        sl = (slice(None), slice(None, None, truth_stride), slice(None, None, truth_stride))
        tr: dict = {"stride": truth_stride, "pixels_per_date": int(truth.shape[2] * truth.shape[3])}
        for k, b in enumerate(bands):
            sv, ov = cubes[b]
            t = truth[k]
            for who, v, obs in (("sits", sv[sl], sits_obs[sl]), ("ours", ov[sl], ours_obs[sl])):
                e = v - t
                tr[f"{b}_{who}"] = {
                    "observed": _stats(e[obs]),
                    "filled": _stats(e[~obs]),
                    "all": _stats(e),
                }
        out["truth"] = tr
    s.close()
    o.close()
    return out


def explain(cmp: dict, sits_report: dict | None) -> list[str]:
    """The comparison as text: measured figures, then why the cubes differ."""
    L = []
    d = cmp["dates"]
    L.append(
        f"dates: sits {d['sits']} ({d['sits_distinct_days']} distinct days), ours {d['ours']}, common {d['common']}"
        + (f"; only sits: {', '.join(d['only_sits'])}" if d["only_sits"] else "")
        + (f"; only ours: {', '.join(d['only_ours'])}" if d["only_ours"] else "")
    )
    if d["sits_duplicate_days"]:
        L.append(f"  sits has several time steps on one day: {', '.join(d['sits_duplicate_days'])}")
    sh = cmp["shape"]
    L.append(
        f"grid: sits y={sh['sits'].get('y')} x={sh['sits'].get('x')}, ours y={sh['ours'].get('y')} "
        f"x={sh['ours'].get('x')}; identical coordinates: {cmp['grid_identical']}"
    )
    sz = cmp["sizes_bytes"]
    L.append(
        f"files: sits {sz['sits'] / 1e6:.1f} MB, ours {sz['ours'] / 1e6:.1f} MB; "
        f"sits variables {cmp['sits_dtypes']}, ours B03/B04/B08 {cmp['ours_dtypes_on_disk'].get('B03')} (x 0.0001)"
    )
    if sits_report:
        L.append(
            "sits dtypes: loadCube {} -> fixS2shift {} -> mask_apply {}".format(
                sits_report["after_loadCube"]["dtypes"],
                sits_report["after_fixS2shift"]["dtypes"],
                sits_report["after_mask_apply"]["dtypes"],
            )
        )
    m = cmp["masks"]
    L.append(
        f"masks: {m['identical_pixels'] * 100:.3f} % of (date, pixel) identical, {m['identical_dates']} of "
        f"{d['common']} dates identical; masked share sits {m['masked_share_sits'] * 100:.1f} %, ours "
        f"{m['masked_share_ours'] * 100:.1f} %; observed by sits only {m['observed_sits_only']}, by ours only "
        f"{m['observed_ours_only']}" + ("" if m["from_driver"] else " (no sits mask: ours used for both)")
    )
    L.append("per band, sits - ours in DN (reflectance x 10000):")
    L.append(
        f"  {'band':<4} {'subset':<26} {'n':>9} {'mean':>7} {'MAE':>7} {'RMSE':>7} {'p99|d|':>7} {'max|d|':>7} {'<=1DN':>6}"
    )
    for b, rec in cmp["bands"].items():
        for key in (
            "all",
            "observed_both",
            "observed_both_before_pb04",
            "observed_both_from_pb04",
            "filled_both_interpolated",
            "filled_both_end_filled",
            "observed_sits_only",
            "observed_ours_only",
        ):
            st = rec[key]
            if not st.get("n"):
                continue
            L.append(
                f"  {b:<4} {key:<26} {st['n']:>9} {st['mean']:7.1f} {st['mae']:7.1f} {st['rmse']:7.1f} "
                f"{st['p99_abs']:7.0f} {st['max_abs']:7.0f} {st['within_1dn'] * 100:5.1f}%"
            )
        zd = ", ".join(f"{k} ({v})" for k, v in rec["sits_zero_dates"].items())
        L.append(
            f"  {b:<4} sits: NaN {rec['sits_nan']}, zeros {rec['sits_zero']}"
            + (f" (> 1 % of a date: {zd})" if zd else "")
            + f", DN range {rec['sits_min_dn']:.0f}..{rec['sits_max_dn']:.0f}"
        )
    if cmp["dates_observed_bias_over_200dn"]:
        L.append("dates whose pixels observed in both differ by > 200 DN on average (sits - ours, DN):")
        for w in cmp["dates_observed_bias_over_200dn"]:
            L.append("  " + ", ".join(f"{k} {v}" for k, v in w.items()))
    if "truth" in cmp:
        tr = cmp["truth"]
        L.append(
            f"error against the demo's clear-sky truth (40 m means of 10 m truth, every {tr['stride']}th row/column, "
            f"{tr['pixels_per_date']} pixels x {d['common']} dates), DN:"
        )
        L.append(f"  {'band':<4} {'cube':<5} {'subset':<9} {'n':>8} {'bias':>7} {'MAE':>7} {'RMSE':>7} {'p99|e|':>7}")
        for key, rec in tr.items():
            if not isinstance(rec, dict):
                continue
            b, who = key.split("_")
            for sub in ("observed", "filled", "all"):
                st = rec[sub]
                if st.get("n"):
                    L.append(
                        f"  {b:<4} {who:<5} {sub:<9} {st['n']:>8} {st['mean']:7.1f} {st['mae']:7.1f} "
                        f"{st['rmse']:7.1f} {st['p99_abs']:7.0f}"
                    )
    if "sits_SCL_exported" in cmp:
        sc = cmp["sits_SCL_exported"]
        L.append(
            f"sits also exports SCL as {sc['dtype']} (values {sc['values']}), masked and back/forward-filled "
            "like a reflectance band: masked classes are replaced by the next clear class"
        )
    L += [
        "why they differ (sits 0.8.0 source, read in the venv; odc-stac/odc-loader versions as in ours):",
        "  * resampling: sits's loadCube calls odc-stac load() without `resampling`: nearest neighbour; ours",
        "    uses `average`. Both read the same COG overview (odc picks it: for this grid the 2x one, see",
        "    benchmarks/read_bound.py), so pixels observed in both differ by the scene's texture at 20-40 m.",
        "  * offset: fixS2shift casts to int16, subtracts 1000 on every time step whose time equals an item",
        "    with float(s2:processing_baseline) >= 4.0, and clips to 0..10000. 0.8.0 casts to int16 BEFORE",
        "    subtracting, so no-data does not wrap to 64536 (the uint16 defect known from the tutorial's",
        "    version; DN range above); it is clipped to 0 instead, like every DN < 1000, and a uint16 DN",
        "    > 32767 (saturated 65535) wraps to a negative int16 and becomes 0. The switch is per time step:",
        "    a solar day holding an item without offset and a PB >= 04.00 reprocessing of it (Collection-1",
        "    PB 05.00) is shifted as a whole, although odc-stac's fuser took the pixels from the first item",
        "    in (time, id) order, the original without offset: that day loses 1000 DN and its water clips",
        "    to 0 (2022-01-23 in the demo), and the back-fill carries those zeros into the pixels masked on",
        "    the date before (2022-01-08). Ours keeps one item per product (highest baseline, then latest",
        "    generation) and removes the offset per pixel by the baseline of the item each pixel came from.",
        "    (2022-01-28, 30TXQ PB 04.00 + 30TXR PB 03.01, comes out right in sits only because 30TXQ sorts",
        "    first and covers the whole AOI.)",
        "  * masking with where(): every variable becomes float (float32 with this xarray, which promotes",
        "    16-bit integers to float32; float64 with older ones), NaN where masked; SCL too.",
        "  * gap-fill: Dataset.interpolate_na() without `dim` does nothing (xarray applies it to the",
        "    variables that have the dimension None, i.e. none), so gapfill() is bfill then ffill along",
        "    time: a masked pixel takes the NEXT clear observation instead of the linear interpolation",
        "    between its neighbours (ours). This is the 'filled_both_interpolated' rows; end-filled pixels",
        "    agree in kind (both copy the nearest observation). A pixel never observed stays NaN in sits",
        "    (flag 0 'missing' in ours).",
        "  * dates: both group by solar day (sits through odc-stac groupby='solar_day', ours in the manifest)",
        "    and label a date differently (sits: the first item's time; ours: the mean time of the date's",
        "    items), so dates are matched on the day.",
    ]
    return L


# --------------------------------------------------------------------------- main
def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--start", default="2021-01-01")
    p.add_argument("--end", default="2023-01-01")
    p.add_argument("--catalog", default=str(ROOT / "resources" / "demo-catalog"))
    p.add_argument("--aoi", default=str(ROOT / "resources" / "banc_arguin.geojson"))
    p.add_argument("--ours", help="our cube to compare with (default results/demo/1/1_<start>_<end>.nc)")
    p.add_argument("--venv", default=str(DEFAULT_VENV), help="the sits virtualenv (created if missing)")
    p.add_argument("--server", choices=["rustac", "query"], default="rustac")
    p.add_argument(
        "--url",
        help="search this running STAC API (no server started; its items' hrefs are used as they are: "
        "benchmarks/run_all.py serves the same items to both sides this way)",
    )
    p.add_argument("--keep", help="keep the sits output and logs in this directory")
    p.add_argument("--timeout", type=float, default=3600.0)
    p.add_argument(
        "--truth-stride", type=int, default=4, help="demo truth: every Nth row/column in the comparison (0: skip)"
    )
    p.add_argument("--json", help="write the figures here")
    args = p.parse_args()

    start, end = dt.date.fromisoformat(args.start), dt.date.fromisoformat(args.end)
    catalog = Path(args.catalog).resolve()
    if catalog.is_file():  # the catalog.json path works too
        catalog = catalog.parent
    py = ensure_venv(Path(args.venv))

    work = Path(args.keep).resolve() if args.keep else Path(tempfile.mkdtemp(prefix="s2ts-sits-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    outdir = work / "out"
    if outdir.exists():
        shutil.rmtree(outdir)
    result: dict = {"command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]), "machine": machine()}
    result["sits_venv"] = {"path": str(Path(args.venv)), "packages": venv_versions(Path(args.venv))}
    try:
        every = [it for it in catalog_items(catalog) if in_period(it, start, end)]
        clear = [it for it in every if float(it["properties"].get("eo:cloud_cover", 100)) < MAX_CLOUD_COVER]
        result["items"] = {"in_period": len(every), "cloud_cover_lt_20": len(clear)}
        server = None
        if args.url:  # the caller's server and items (benchmarks/run_all.py): sits searches it as it is
            url = args.url
        else:
            served = clear if args.server == "rustac" else every
            items_path, coll_path = write_inputs(work, catalog, served)
            result["items"]["served"] = len(served)
            server = LocalStacApi(args.server, items_path, coll_path, work / "server.log")
            url = server.url
        try:
            cmd = [str(py), str(DRIVER), "--url", url, "--aoi", str(Path(args.aoi).resolve())]
            cmd += ["--start", args.start, "--end", args.end, "--outdir", str(outdir)]
            cmd += ["--report", str(work / "sits_report.json")]
            if args.server == "query" and not args.url:
                cmd.append("--query")
            rc, wall, rss = run_child(cmd, args.timeout, work / "sits.log")
        finally:
            if server is not None:
                server.stop()
        rss_children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
        if rc != 0:
            print((work / "sits.log").read_text()[-5000:], file=sys.stderr)
            raise SystemExit(f"the sits run failed (exit {rc}); logs in {work}")
        rep = json.loads((work / "sits_report.json").read_text())
        nc = Path(rep["output"])
        result.update(
            {
                "sits_version": rep["sits_version"],
                "sits_python": rep["python"],
                "server": args.url or args.server,
                "period": [args.start, args.end],
                "items_found": len(rep["items"]),
                "search_query": rep["search_query"],
                "steps": rep["steps"],
                "steps_total_seconds": rep["steps_total_seconds"],
                "subprocess_wall_seconds": wall,
                "peak_rss_mb": rss,
                "peak_rss_mb_at_export": rep["peak_rss_mb_at_export"],
                "rusage_children_max_rss_mb": rss_children,
                "output_bytes": nc.stat().st_size,
                "output_name": nc.name,
                "cube": rep["after_gapfill"],
                "mask_method": rep["mask_method"],
            }
        )

        mc = result["machine"]
        print(f"machine: {mc['nproc']} CPUs ({mc['cpu']}), {mc['ram']}, load average {mc['loadavg']}")
        print(
            f"sits {rep['sits_version']} (Python {rep['python']}), STAC API: {args.url or args.server + ' on 127.0.0.1'}"
        )
        print("sits venv: " + ", ".join(f"{k} {v}" for k, v in result["sits_venv"]["packages"].items()))
        print(f"period {args.start} .. {args.end}: {len(every)} items, {len(clear)} with eo:cloud_cover < 20")
        print(f"searchItems returned {len(rep['items'])} items; cube {rep['after_gapfill']['sizes']}")
        print(f"\n{'step':<14} {'seconds':>9}")
        for s in rep["steps"]:
            print(f"{s['step']:<14} {s['seconds']:9.2f}")
        print(f"{'sum of steps':<14} {rep['steps_total_seconds']:9.2f}")
        print(f"{'subprocess':<14} {wall:9.2f}   (interpreter start, imports and the untimed diagnostics included)")
        print(
            f"\npeak RSS       {rss:.0f} MB (sits subprocess, os.wait4); {rep['peak_rss_mb_at_export']:.0f} MB at export"
        )
        print(f"output         {nc.name}: {nc.stat().st_size / 1e6:.1f} MB")

        ours = Path(args.ours) if args.ours else ROOT / "results" / "demo" / "1" / f"1_{args.start}_{args.end}.nc"
        if ours.exists():
            cmp = compare_outputs(nc, ours, rep, catalog, args.truth_stride)
            result["comparison"] = cmp
            result["comparison_notes"] = explain(cmp, rep)
            rel = ours.relative_to(ROOT) if ours.is_relative_to(ROOT) else ours
            print(f"\ncomparison with {rel} (created {cmp['ours_created']}):")
            print("\n".join(result["comparison_notes"]))
        else:
            print(f"\n(no comparison: {ours} does not exist)")
        result["loadavg_at_end"] = ", ".join(f"{v:.2f}" for v in os.getloadavg())
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=1))
            print(f"\nwritten {args.json}")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
