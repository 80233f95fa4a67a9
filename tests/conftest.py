"""Shared fixtures: paths to the real recorded Planetary Computer items, builders
of small static STAC catalogs, and loopback servers started and stopped by pid."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
MPC_ITEMS = SHARED / "data" / "mpc-sentinel-2-l2a-items"
VENV_BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT))


def in_ci() -> bool:
    """Running in CI: .ci/run exports CI=true (as most CI services do)."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def service_missing(reason: str) -> None:
    """A test whose service (the SLURM cluster, Chromium) is not there: skipped locally,
    with the reason; FAILED in CI, which must provide it (a skip there would pass
    silently with the test never run)."""
    if in_ci():
        pytest.fail(f"CI=true, and this test's service is missing: {reason}", pytrace=False)
    pytest.skip(reason)


def ctrl_c_as_in_a_terminal() -> None:
    """``preexec_fn`` of a child that a test interrupts with SIGINT: Ctrl-C acts as it
    does in a terminal even when the tests run as a background job of a script
    (``make test &``, ``nohup``), whose children inherit SIGINT ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def load_features(name: str) -> list[dict]:
    return json.loads((MPC_ITEMS / name).read_text())["features"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_static_catalog(root: Path, features: list[dict], collection_id: str = "sentinel-2-l2a") -> Path:
    """A static catalog (catalog.json -> collection -> items) of raw item dicts,
    written as plain JSON with relative links, the way a static catalog is laid out."""
    root.mkdir(parents=True, exist_ok=True)
    coll_dir = root / collection_id
    coll_dir.mkdir(exist_ok=True)
    item_links = []
    for f in features:
        f = dict(f)
        f["collection"] = collection_id
        f["links"] = [
            {"rel": "collection", "href": "../collection.json", "type": "application/json"},
            {"rel": "parent", "href": "../collection.json", "type": "application/json"},
            {"rel": "root", "href": "../../catalog.json", "type": "application/json"},
        ]
        d = coll_dir / f["id"]
        d.mkdir(exist_ok=True)
        (d / f"{f['id']}.json").write_text(json.dumps(f))
        item_links.append({"rel": "item", "href": f"./{f['id']}/{f['id']}.json", "type": "application/json"})
    coll = json.loads((MPC_ITEMS / "collection.json").read_text())
    coll["id"] = collection_id
    coll["links"] = [
        {"rel": "root", "href": "../catalog.json", "type": "application/json"},
        {"rel": "parent", "href": "../catalog.json", "type": "application/json"},
    ] + item_links
    (coll_dir / "collection.json").write_text(json.dumps(coll))
    cat = {
        "type": "Catalog",
        "stac_version": "1.0.0",
        "id": "test-catalog",
        "description": "test",
        "links": [
            {"rel": "root", "href": "./catalog.json", "type": "application/json"},
            {"rel": "child", "href": f"./{collection_id}/collection.json", "type": "application/json"},
        ],
    }
    (root / "catalog.json").write_text(json.dumps(cat))
    return root / "catalog.json"


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 20.0) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port}")


class RustacServer:
    """`rustac serve` (memory backend) on 127.0.0.1, stopped by process id."""

    def __init__(self, hrefs: list[Path], log: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(log, "w")
        self.proc = subprocess.Popen(
            [str(VENV_BIN / "rustac"), "serve", "--addr", f"127.0.0.1:{self.port}", *map(str, hrefs)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for_port(self.port, self.proc)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


@pytest.fixture
def rustac_server(tmp_path):
    servers = []

    def start(*hrefs):
        s = RustacServer(list(hrefs), tmp_path / f"rustac-{len(servers)}.log")
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.stop()


# ------------------------------------------------------------------ local COGs
def write_cog(path: Path, data, transform, epsg: int, overview_data=None) -> None:
    """A real COG (GDAL COG driver, internal overviews, nodata 0). With
    ``overview_data``, the overviews are built from that array instead of ``data``
    (so a test can tell whether a reader used the overview or the full resolution)."""
    import numpy as np
    import rasterio
    from rasterio.enums import Resampling

    data = np.asarray(data)
    resampling = "NEAREST" if data.dtype == np.uint8 else "AVERAGE"
    src = overview_data if overview_data is not None else data
    profile = dict(
        driver="GTiff",
        width=data.shape[1],
        height=data.shape[0],
        count=1,
        dtype=data.dtype,
        crs=f"EPSG:{epsg}",
        transform=transform,
        nodata=0,
        tiled=True,
        blockxsize=32,
        blockysize=32,
    )
    tmp = path.with_suffix(".tmp.tif")
    with rasterio.open(tmp, "w", **profile) as dst:
        dst.write(src, 1)
        dst.build_overviews([2, 4, 8], getattr(Resampling, resampling.lower()))
    if overview_data is not None:
        with rasterio.open(tmp, "r+") as dst:
            dst.write(data, 1)  # full resolution replaced; overviews keep the marker
    with rasterio.open(tmp) as s:
        rasterio.shutil.copy(s, path, driver="COG", overviews="FORCE_USE_EXISTING", compress="DEFLATE", blocksize=128)
    tmp.unlink()


def local_item(
    base: dict,
    out_dir: Path,
    bands: dict,
    scl,
    x0: float,
    y1: float,
    *,
    item_id: str | None = None,
    datetime: str | None = None,
    baseline: str | None = None,
    proj_form: str = "epsg",
    overview_marker: dict | None = None,
) -> dict:
    """A copy of a real item whose assets are small local COGs at (x0, y1) on the
    item's own UTM grid: reflectance ``bands`` at 10 m, ``scl`` at 20 m."""
    import copy

    import rasterio.shutil  # noqa: F401
    from affine import Affine
    from pyproj import Transformer

    it = copy.deepcopy(base)
    epsg = it["properties"]["proj:epsg"]
    if item_id:
        it["id"] = item_id
    if datetime:
        it["properties"]["datetime"] = datetime
    if baseline:
        it["properties"]["s2:processing_baseline"] = baseline
    d = out_dir / it["id"]
    d.mkdir(parents=True, exist_ok=True)
    assets = {}
    for key, arr, res in [(b, a, 10) for b, a in bands.items()] + [("SCL", scl, 20)]:
        tr = Affine(res, 0, x0, 0, -res, y1)
        path = d / f"{key}.tif"
        write_cog(path, arr, tr, epsg, (overview_marker or {}).get(key))
        h, w = arr.shape
        a = copy.deepcopy(base["assets"][key])
        a.update(
            {
                "href": str(path),
                "proj:shape": [h, w],
                "proj:transform": list(tr)[:6],
                "proj:bbox": [x0, y1 - h * res, x0 + w * res, y1],
            }
        )
        assets[key] = a
    it["assets"] = assets
    h, w = next(iter(bands.values())).shape
    xs = [x0, x0 + w * 10, x0 + w * 10, x0, x0]
    ys = [y1, y1, y1 - h * 10, y1 - h * 10, y1]
    lon, lat = Transformer.from_crs(epsg, 4326, always_xy=True).transform(xs, ys)
    it["geometry"] = {"type": "Polygon", "coordinates": [list(map(list, zip(lon, lat)))]}
    it["bbox"] = [min(lon), min(lat), max(lon), max(lat)]
    it["links"] = []
    if proj_form == "code":
        del it["properties"]["proj:epsg"]
        it["properties"]["proj:code"] = f"EPSG:{epsg}"
    return it


def write_items_file(path: Path, items: list[dict]) -> Path:
    path.write_text(json.dumps({"type": "FeatureCollection", "features": items}))
    return path


def utm_grid(epsg: int, x0: float, y1: float, width: int, height: int, res: float) -> dict:
    from pyproj import CRS

    return {
        "crs": f"EPSG:{epsg}",
        "epsg": epsg,
        "crs_wkt": CRS.from_epsg(epsg).to_wkt(),
        "resolution": float(res),
        "bounds": [x0, y1 - height * res, x0 + width * res, y1],
        "width": width,
        "height": height,
        "transform": [float(res), 0.0, x0, 0.0, -float(res), y1],
    }


def write_grid_json(path: Path, grid: dict, aoi_id: str = "t") -> Path:
    path.write_text(json.dumps({"id": aoi_id, "grid": grid}))
    return path


def tile_store(
    tmp_path: Path, items: list[dict], grid: dict, date: str = "2024-06-01", out: str = "tile", **kw
) -> Path:
    """Run the tile stage on one date's items (a batch of one date); return its store."""
    from s2ts.tile import tile_batch

    f = write_items_file(tmp_path / f"{date}.json", items)
    g = write_grid_json(tmp_path / f"{out}-grid.json", grid)
    tile_batch([f], g, ["B03", "B04", "B08"], "SCL", tmp_path / out, **kw)
    return tmp_path / out / f"{date}.zarr"


def read_store(path: Path) -> dict:
    """Every data variable of a store as written (integers with their fill values)."""
    from s2ts.zarr_io import open_dataset

    ds = open_dataset(path)
    return {name: ds[name].values for name in ds.data_vars}


def write_date_store(path: Path, grid: dict, arrays: dict, attrs: dict) -> Path:
    """A per-date ``(y, x)`` store as the tile stage writes it."""
    from s2ts.zarr_io import grid_dataset, write_dataset

    ds = grid_dataset(grid)
    for name, a in arrays.items():
        ds[name] = (("y", "x"), a)
    ds.attrs = attrs
    write_dataset(ds, path)
    return path


def write_batch_store(path: Path, grid: dict, arrays: dict, attrs: dict, datetimes: list[str], **per_date) -> Path:
    """A ``(time, y, x)`` store as the light stages write it, from 3-D ``arrays``;
    ``per_date``: 1-D variables along time (e.g. valid_fraction)."""
    import json

    import numpy as np

    from s2ts.zarr_io import grid_dataset, write_dataset

    ds = grid_dataset(grid)
    ds = ds.assign_coords(
        time=np.array([np.datetime64(t.rstrip("Z"), "s") for t in datetimes]).astype("datetime64[ns]")
    )
    for name, a in arrays.items():
        ds[name] = (("time", "y", "x"), a)
    n = len(datetimes)
    per_date.setdefault("solar_day", [t[:10] for t in datetimes])
    per_date.setdefault(
        "item_records", [json.dumps([{"id": f"item-{t}", "processing_baseline": "05.10"}]) for t in datetimes]
    )
    per_date.setdefault("offset_correction", [json.dumps({"apply": True, "value": -1000})] * n)
    for name, values in per_date.items():
        values = np.asarray(values)
        ds[name] = ("time", values.astype(object) if values.dtype.kind in "US" else values)
    ds.attrs = attrs
    write_dataset(ds, path)
    return path


class FaultyStacApi:
    """tests/stac_api_server.py in its own process on 127.0.0.1, stopped by pid (with
    ``static``: the files of that static catalog folder over HTTP)."""

    def __init__(self, tmp_path: Path, features: list[dict], faults=(), page_size=10, sleep=5.0, static=None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        items = tmp_path / f"api-items-{self.port}.json"
        items.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
        self.requests = tmp_path / f"api-requests-{self.port}.jsonl"
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "tests" / "stac_api_server.py"),
                "--items", str(items),
                "--collection", str(MPC_ITEMS / "collection.json"),
                "--port", str(self.port),
                "--faults", json.dumps(list(faults)),
                "--page-size", str(page_size),
                "--sleep", str(sleep),
                "--log", str(self.requests),
                *(["--static", str(static)] if static else []),
            ],
            start_new_session=True,
        )  # fmt: skip
        wait_for_port(self.port, self.proc)

    def log(self) -> list[dict]:
        """Every request the server received: page (search) or path, attempt, time."""
        if not self.requests.exists():
            return []
        return [json.loads(line) for line in self.requests.read_text().splitlines()]

    def attempts(self) -> dict:
        """Requests received per search page (int) or per faulty path (str)."""
        out: dict = {}
        for r in self.log():
            key = r.get("page", r.get("path"))
            out[key] = max(out.get(key, 0), r["attempt"])
        return out

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(10)


@pytest.fixture
def stac_api(tmp_path):
    servers = []

    def start(features, **kw):
        s = FaultyStacApi(tmp_path, features, **kw)
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.stop()


class BlobProxy:
    """tests/blob_proxy_server.py: SAS token endpoint + blob-storage proxy on 127.0.0.1."""

    def __init__(
        self, tmp_path: Path, root: Path, ttl: float = 3600, fail_first: int = 0, stall_first: int = 0, stall_seconds=30
    ):
        self.port = free_port()
        self.log = tmp_path / f"blob-{self.port}.jsonl"
        self.proc = subprocess.Popen(
            [
                sys.executable, str(ROOT / "tests" / "blob_proxy_server.py"),
                "--root", str(root), "--port", str(self.port), "--ttl", str(ttl),
                "--log", str(self.log), "--fail-first", str(fail_first),
                "--stall-first", str(stall_first), "--stall-seconds", str(stall_seconds),
            ],
            start_new_session=True,
        )  # fmt: skip
        wait_for_port(self.port, self.proc)
        self.env = {
            "PC_SDK_SAS_URL": f"http://127.0.0.1:{self.port}/api/sas/v1/token",
            "GDAL_HTTP_PROXY": f"127.0.0.1:{self.port}",
        }

    def events(self, kind: str | None = None) -> list[dict]:
        if not self.log.exists():
            return []
        evs = [json.loads(line) for line in self.log.read_text().splitlines()]
        return [e for e in evs if kind is None or e["kind"] == kind]

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(10)


@pytest.fixture
def blob_proxy(tmp_path, monkeypatch):
    servers = []

    def start(root, **kw):
        s = BlobProxy(tmp_path, root, **kw)
        servers.append(s)
        for k, v in s.env.items():
            monkeypatch.setenv(k, v)
        import planetary_computer.sas
        import planetary_computer.settings

        planetary_computer.sas.TOKEN_CACHE.clear()
        planetary_computer.settings.Settings.get.cache_clear()  # re-read PC_SDK_SAS_URL
        return s

    yield start
    for s in servers:
        s.stop()


def blob_href(path: Path, root: Path, account: str = "s2tstest", container: str = "data") -> str:
    return f"http://{account}.blob.core.windows.net/{container}/{path.relative_to(root)}"


def grep_tree(root: Path, needles: list[str]) -> list[str]:
    """Files under ``root`` (any format, bytes) that contain any needle."""
    hits = []
    for p in root.rglob("*"):
        if p.is_file():
            data = p.read_bytes()
            if any(n.encode() in data for n in needles):
                hits.append(str(p))
    return hits


# ------------------------------------------------------------------ workflow runs
def run_workflow(results: Path, *configfiles: Path | str, extra=(), overrides: dict | None = None, check=True):
    """Run the workflow like `make demo` does, with results under ``results``."""
    import yaml

    results.mkdir(parents=True, exist_ok=True)
    cfg = dict(overrides or {})
    cfg.setdefault("results", str(results))
    over = results / "override.yaml"
    over.write_text(yaml.safe_dump(cfg))
    cmd = [
        str(VENV_BIN / "snakemake"),
        "--cores", "2",
        # the job blocks, which jobs_run() reads, are off the console in the default
        # profile (quiet: rules); tests of the console itself run without this
        "--quiet", "host",
        "--configfile", *map(str, configfiles), str(over),
        *extra,
    ]  # fmt: skip
    proc = subprocess.run(
        cmd, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "PATH": f"{VENV_BIN}:{os.environ['PATH']}"}
    )
    (results / "snakemake.stderr").write_text(proc.stderr)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc


def jobs_run(stderr: str) -> list[tuple[str, str]]:
    """(rule, wildcards) of every job a Snakemake run started, from its log."""
    import re

    jobs = []
    for m in re.finditer(r"^(?:local)?(?:rule|checkpoint) (\w+):\n((?:    .*\n)*)", stderr, re.M):
        wc = re.search(r"^    wildcards: (.*)$", m.group(2), re.M)
        jobs.append((m.group(1), wc.group(1) if wc else ""))
    return jobs


@pytest.fixture(scope="session")
def small_demo_catalog(tmp_path_factory) -> Path:
    """The demo generator's catalog of two months (2022-03..04), generated once per session."""
    from s2ts.demo_catalog import generate_demo_catalog

    out = tmp_path_factory.mktemp("small-demo") / "catalog"
    generate_demo_catalog(out, start="2022-03-01", end="2022-05-01", seed=0, workers=2)
    return out


def demo_items(catalog: Path, orbit: str = "R094", n: int = 8) -> list[dict]:
    """The first ``n`` items of one relative orbit of a demo catalog, hrefs absolute."""
    items = []
    for f in sorted((catalog / "sentinel-2-l2a").glob(f"*/*_{orbit}_*.json"))[:n]:
        it = json.loads(f.read_text())
        for a in it["assets"].values():  # hrefs relative to the item's file
            a["href"] = str((f.parent / a["href"]).resolve())
        items.append(it)
    return items


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """One full run of `make demo` (config/demo.yaml), results in a temp folder."""
    results = tmp_path_factory.mktemp("demo") / "results"
    run_workflow(results, ROOT / "config" / "demo.yaml")
    return results


@pytest.fixture
def no_network(monkeypatch):
    """Fail any attempt to open a network connection (the CF checker must run offline)."""
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    return attempts


# ------------------------------------------------------------------ the options of issue 15
#: every option of issue 15 on, over a short demo period (dates with cloud edges,
#: both sides of the 2022-01-25 baseline change)
OPTIONS = {
    "dates": {"start": "2022-01-01", "end": "2022-04-01"},
    "indices": ["NDWI", "NDVI"],
    "regular": {"step_days": 10, "method": "median"},
    "mask": {"dilate_m": 80},
    "gapfill": {"method": "pchip"},
    "export": {"csv": True},
}


def options_demo_run(tmp_path_factory) -> Path:
    """The workflow on the demo catalog with OPTIONS, results under the session's
    temporary folder; run once per session (later calls find the marker)."""
    base = tmp_path_factory.getbasetemp() / "s2ts-options-demo"
    results, done = base / "results", base / "done"
    if not done.exists():
        run_workflow(results, ROOT / "config" / "demo.yaml", overrides={**OPTIONS, "results": str(results)})
        done.touch()
    return results


@pytest.fixture(scope="session")
def options_run(tmp_path_factory) -> Path:
    return options_demo_run(tmp_path_factory)


def demo_truth_images(results: Path, times) -> dict:
    """{acquisition time: {band: reflectance (y, x)}}: the generator's clear-sky truth
    averaged over each 40 m pixel of AOI 1 (as tests/test_demo_e2e.py compares)."""
    import xarray as xr
    from test_demo_e2e import area_truth

    from s2ts.demo_catalog import load_truth

    truth = load_truth(ROOT / "resources" / "demo-catalog")
    nc = next(p for p in (results / "1").glob("1_*.nc") if p.stem.count("_") == 2)
    with xr.open_dataset(nc) as ds:
        x, y = ds.x.values, ds.y.values
    return {t: area_truth(truth, t, x, y) for t in times}


def assert_same_netcdf(a: Path, b: Path, skip_attrs=("history", "date_created")) -> None:
    """Two NetCDF files hold the same product: dimensions (and which is unlimited),
    variables in order with their types, chunks, filters, attributes and raw stored
    values, and the global attributes in order (but ``skip_attrs``: the write's time)."""
    import netCDF4
    import numpy as np

    with netCDF4.Dataset(a) as x, netCDF4.Dataset(b) as y:
        x.set_auto_maskandscale(False)
        y.set_auto_maskandscale(False)
        assert [k for k in x.ncattrs() if k not in skip_attrs] == [k for k in y.ncattrs() if k not in skip_attrs]
        for k in x.ncattrs():
            if k not in skip_attrs:
                assert x.getncattr(k) == y.getncattr(k), k
        dims = [{k: (len(d), d.isunlimited()) for k, d in f.dimensions.items()} for f in (x, y)]
        assert dims[0] == dims[1]
        assert list(x.variables) == list(y.variables)
        for n in x.variables:
            u, v = x[n], y[n]
            assert (u.dimensions, u.dtype, u.chunking(), u.filters()) == (
                v.dimensions,
                v.dtype,
                v.chunking(),
                v.filters(),
            ), n
            assert u.ncattrs() == v.ncattrs(), n
            for k in u.ncattrs():
                np.testing.assert_array_equal(u.getncattr(k), v.getncattr(k), err_msg=f"{n}:{k}")
            np.testing.assert_array_equal(np.asarray(u[:]), np.asarray(v[:]), err_msg=n)
