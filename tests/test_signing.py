"""Planetary Computer signing, for real, against local stand-ins: the SAS token
endpoint and blob storage (tests/blob_proxy_server.py, reached through GDAL's
HTTP proxy setting). Tokens are fetched at read time, refreshed when they
expire, and never written anywhere."""

import time
from pathlib import Path

import numpy as np
import pytest
from conftest import blob_href, grep_tree, load_features, local_item, read_store, tile_store, utm_grid

from s2ts.errors import UserError

X0, Y1, N = 450000.0, 4420000.0, 32
BANDS = ["B03", "B04", "B08"]


@pytest.fixture
def remote_item(tmp_path):
    base = load_features("tile-13TDE-2024.json")[0]
    root = tmp_path / "blobs"
    rng = np.random.default_rng(0)
    bands = {b: rng.integers(1, 9000, (N, N), dtype=np.uint16) for b in BANDS}
    scl = np.full((N // 2, N // 2), 4, np.uint8)
    it = local_item(base, root, bands, scl, X0, Y1)
    for a in it["assets"].values():
        a["href"] = blob_href(Path(a["href"]), root)
    return it, bands, root


def run(tmp_path, it, name, signing="planetary_computer"):
    store = tile_store(tmp_path, [it], utm_grid(32613, X0, Y1, N, N, 10), date=name, out="out", signing=signing)
    return read_store(store)


def test_signed_reads_through_token_endpoint_and_no_token_stored(tmp_path, remote_item, blob_proxy):
    it, bands, root = remote_item
    proxy = blob_proxy(root, ttl=61)  # < 60 s left after 1 s: the client must refresh
    out = run(tmp_path, it, "2024-06-01")
    for b in BANDS:
        np.testing.assert_array_equal(out[b], bands[b])
    tokens = proxy.events("token")
    reads = proxy.events("read")
    assert tokens and reads and not proxy.events("refused")
    assert {r["sig"] for r in reads} <= {t["sig"] for t in tokens}  # every read carried an issued token
    time.sleep(1.5)
    run(tmp_path, it, "2024-06-02")
    assert len(proxy.events("token")) > len(tokens)  # the expiring token was refreshed
    assert not proxy.events("refused")
    secrets = [t["sig"] for t in proxy.events("token")]
    assert not grep_tree(tmp_path / "out", secrets + ["sig="])


def test_unsigned_read_is_refused_with_one_message(tmp_path, remote_item, blob_proxy):
    it, _, root = remote_item
    proxy = blob_proxy(root)
    with pytest.raises(
        UserError,
        match=r"cannot read asset \w+ of item S2B_MSIL2A_20241203T174629\w+ \(http://s2tstest.blob.core.windows.net/",
    ):
        run(tmp_path, it, "2024-06-01", signing="none")
    assert proxy.events("refused")
    assert not (tmp_path / "out" / "2024-06-01.zarr").exists()


def test_transient_http_errors_are_retried_by_gdal(tmp_path, remote_item, blob_proxy):
    it, bands, root = remote_item
    proxy = blob_proxy(root, fail_first=2)  # every file answers 503 twice first
    out = run(tmp_path, it, "2024-06-01")
    np.testing.assert_array_equal(out["B08"], bands["B08"])
    assert len(proxy.events("fault")) >= 2


def test_read_timeouts_are_retried_by_gdal(tmp_path, remote_item, blob_proxy, monkeypatch):
    """A server that hangs on the first read of each file: GDAL gives up after
    GDAL_HTTP_TIMEOUT (set from the environment, see s2ts.tile.gdal_options),
    retries, and the pixels arrive intact."""
    monkeypatch.setenv("GDAL_HTTP_TIMEOUT", "1")
    it, bands, root = remote_item
    proxy = blob_proxy(root, stall_first=1, stall_seconds=20)
    t0 = time.monotonic()
    out = run(tmp_path, it, "2024-06-01")
    for b in BANDS:
        np.testing.assert_array_equal(out[b], bands[b])
    stalled = {e["path"] for e in proxy.events("stall")}
    assert len(stalled) >= 2  # several files hung once each ...
    assert stalled <= {e["path"] for e in proxy.events("read")}  # ... and were read on a retry
    assert time.monotonic() - t0 < 20  # nobody waited for a hung answer


def test_permanent_read_timeout_names_item_and_asset(tmp_path, remote_item, blob_proxy, monkeypatch):
    monkeypatch.setenv("GDAL_HTTP_TIMEOUT", "1")
    monkeypatch.setenv("GDAL_HTTP_MAX_RETRY", "1")
    it, _, root = remote_item
    proxy = blob_proxy(root, stall_first=-1, stall_seconds=20)  # every read hangs
    with pytest.raises(UserError, match=rf"cannot read asset \w+ of item {it['id']} \(http://.*timed out"):
        run(tmp_path, it, "2024-06-01")
    assert proxy.events("stall") and not proxy.events("read")
    assert not (tmp_path / "out" / "2024-06-01.zarr").exists()


def test_workflow_run_with_signing_leaves_no_token_anywhere(tmp_path, blob_proxy):
    """The whole workflow on demo items served as blob-storage URLs, signed through
    the local token endpoint: every manifest, log, Zarr store and NetCDF is free of
    any issued token."""
    import json

    from conftest import ROOT, run_workflow, write_static_catalog

    demo = ROOT / "resources" / "demo-catalog" / "sentinel-2-l2a"
    if not demo.exists():
        from s2ts.demo_catalog import generate_demo_catalog

        generate_demo_catalog(demo.parent)
    feats = []
    for f in sorted(demo.glob("*/*.json")):
        it = json.loads(f.read_text())
        if "2022-02-01" <= it["properties"]["datetime"][:10] < "2022-02-20" and it["properties"]["eo:cloud_cover"] < 20:
            for a in it["assets"].values():
                a["href"] = blob_href(f.parent / a["href"], demo)
            feats.append(it)
    assert feats
    cat = write_static_catalog(tmp_path / "cat", feats)
    # every file answers 503 once: GDAL and odc-stac log the retried URL, which
    # must reach the rule logs without its token
    proxy = blob_proxy(demo, ttl=61, fail_first=1)
    results = tmp_path / "results"
    overrides = {
        "stac": {"catalog": str(cat), "signing": "planetary_computer"},
        "dates": {"start": "2022-02-01", "end": "2022-02-20"},
        "figures": {"enabled": False},
    }
    run_workflow(results, ROOT / "config.yaml", overrides=overrides)
    assert list(results.rglob("*.nc")) and proxy.events("read") and not proxy.events("refused")
    assert proxy.events("fault")
    assert any("Retrying" in p.read_text() for p in (results / "logs" / "tile").rglob("*.log"))
    secrets = [t["sig"] for t in proxy.events("token")]
    assert secrets
    assert not grep_tree(results, secrets + ["sig="])
    assert not grep_tree(ROOT / ".snakemake" / "log", secrets)
