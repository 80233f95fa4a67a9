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
