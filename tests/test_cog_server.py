"""benchmarks/cog_server.py on 127.0.0.1: ranges (single, multi, suffix, 416), HEAD,
the delay per request, the bandwidth cap per response, the request log's counts,
and a rasterio read through /vsicurl/ giving the local file's pixels.

Expected bodies and byte counts come from the files themselves (their bytes and
sizes, sliced by the ranges asked) and from what the client received."""

from __future__ import annotations

import http.client
import random
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, write_cog

sys.path.insert(0, str(ROOT / "benchmarks"))
from cog_server import CogServer, parse_range, read_log, summarise  # noqa: E402

SIZE = 300_000


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """A served tree: a file of random bytes (in a sub-folder) and a COG."""
    import rasterio.shutil  # noqa: F401  (write_cog uses it)
    from affine import Affine

    root = tmp_path_factory.mktemp("served")
    (root / "sub").mkdir()
    blob = random.Random(0).randbytes(SIZE)
    (root / "sub" / "blob.bin").write_bytes(blob)
    rng = np.random.default_rng(1)
    data = rng.integers(1, 10000, (1024, 1024), dtype=np.uint16)
    write_cog(root / "img.tif", data, Affine(10, 0, 600000, 0, -10, 4950000), 32630)
    return root, blob


@pytest.fixture
def server(tree, tmp_path):
    started = []

    def start(delay_ms=0.0, bandwidth_mbit=0.0):
        s = CogServer(tree[0], tmp_path / f"log-{len(started)}.jsonl", delay_ms=delay_ms, bandwidth_mbit=bandwidth_mbit)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()


def request(srv, method, path, headers=None):
    """(status, headers, body, seconds) of one request on a new connection."""
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    t0 = time.perf_counter()
    conn.request(method, path, headers=headers or {})
    r = conn.getresponse()
    body = r.read()
    dt = time.perf_counter() - t0
    conn.close()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, body, dt


def parse_multipart(body: bytes, ctype: str) -> list[tuple[str, bytes]]:
    """(Content-Range, data) of each part of a multipart/byteranges body, by its
    boundary and each part's own Content-Range length."""
    boundary = ctype.split("boundary=", 1)[1].encode()
    parts, pos = [], 0
    while True:
        start = body.index(b"--" + boundary, pos) + len(boundary) + 2
        if body[start : start + 2] == b"--":
            assert body[start:] == b"--\r\n"
            return parts
        head_end = body.index(b"\r\n\r\n", start)
        headers = dict(line.split(": ", 1) for line in body[start + 2 : head_end].decode().split("\r\n") if line)
        a, b = map(int, headers["Content-Range"].split()[1].split("/")[0].split("-"))
        data = body[head_end + 4 : head_end + 4 + b - a + 1]
        parts.append((headers["Content-Range"], data))
        pos = head_end + 4 + len(data)
        assert body[pos : pos + 2] == b"\r\n"


def test_parse_range_follows_rfc7233():
    assert parse_range(None, 100) is None
    assert parse_range("bytes=0-9", 100) == [(0, 9)]
    assert parse_range("bytes=90-200", 100) == [(90, 99)]  # last position clamped
    assert parse_range("bytes=95-", 100) == [(95, 99)]
    assert parse_range("bytes=-10", 100) == [(90, 99)]
    assert parse_range("bytes=-500", 100) == [(0, 99)]
    assert parse_range("bytes=0-0, 5-6,,-1", 100) == [(0, 0), (5, 6), (99, 99)]
    assert parse_range("bytes=100-,200-300", 100) == []  # valid, none satisfiable: 416
    assert parse_range("bytes=-0", 100) == []
    assert parse_range("bytes=5-2", 100) is None  # invalid: the header is ignored
    assert parse_range("bytes=a-b", 100) is None
    assert parse_range("items=0-9", 100) is None


def test_whole_file_head_and_single_ranges(tree, server):
    _, blob = tree
    srv = server()
    st, h, body, _ = request(srv, "GET", "/sub/blob.bin")
    assert (st, body, h["content-length"], h["accept-ranges"]) == (200, blob, str(SIZE), "bytes")

    st, h, body, _ = request(srv, "HEAD", "/sub/blob.bin")
    assert (st, body, h["content-length"], h["accept-ranges"]) == (200, b"", str(SIZE), "bytes")

    for rng, a, b in [("bytes=1000-1999", 1000, 1999), ("bytes=-16384", SIZE - 16384, SIZE - 1),
                      ("bytes=299990-", 299990, SIZE - 1), ("bytes=299990-400000", 299990, SIZE - 1)]:  # fmt: skip
        st, h, body, _ = request(srv, "GET", "/sub/blob.bin", {"Range": rng})
        assert st == 206
        assert h["content-range"] == f"bytes {a}-{b}/{SIZE}"
        assert h["content-length"] == str(b - a + 1)
        assert body == blob[a : b + 1]

    st, h, body, _ = request(srv, "GET", "/sub/blob.bin", {"Range": "bytes=5-2"})  # invalid: ignored
    assert (st, body) == (200, blob)


def test_multi_range_is_multipart_byteranges(tree, server):
    _, blob = tree
    srv = server()
    asked = [(0, 99), (5000, 5999), (SIZE - 10, SIZE - 1)]
    st, h, body, _ = request(srv, "GET", "/sub/blob.bin", {"Range": "bytes=0-99,5000-5999,-10"})
    assert st == 206
    assert h["content-type"].startswith("multipart/byteranges; boundary=")
    assert h["content-length"] == str(len(body))
    parts = parse_multipart(body, h["content-type"])
    assert [cr for cr, _ in parts] == [f"bytes {a}-{b}/{SIZE}" for a, b in asked]
    assert [data for _, data in parts] == [blob[a : b + 1] for a, b in asked]
    # unsatisfiable members of a set are dropped; one left is a plain 206
    st, h, body, _ = request(srv, "GET", "/sub/blob.bin", {"Range": "bytes=400000-,10-19"})
    assert (st, h["content-range"], body) == (206, f"bytes 10-19/{SIZE}", blob[10:20])


def test_unsatisfiable_range_is_416_and_missing_paths_404(server):
    srv = server()
    st, h, body, _ = request(srv, "GET", "/sub/blob.bin", {"Range": f"bytes={SIZE}-"})
    assert (st, h["content-range"], h["content-length"], body) == (416, f"bytes */{SIZE}", "0", b"")
    for path in ["/sub/nothing.bin", "/sub", "/../" + Path(__file__).name, "/%2e%2e/etc/passwd"]:
        st, h, body, _ = request(srv, "GET", path)
        assert st == 404, path
        assert h["content-length"] == str(len(body))


def test_each_request_waits_the_delay(server):
    srv = server(delay_ms=300)
    for method, headers in [("HEAD", {}), ("GET", {"Range": "bytes=0-9"}), ("GET", {"Range": f"bytes={SIZE}-"})]:
        *_, dt = request(srv, method, "/sub/blob.bin", headers)
        assert dt >= 0.3, (method, headers, dt)
    # and several requests on one kept-alive connection each wait it again
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    t0 = time.perf_counter()
    for _ in range(3):
        conn.request("GET", "/sub/blob.bin", headers={"Range": "bytes=0-0"})
        conn.getresponse().read()
    assert time.perf_counter() - t0 >= 0.9
    conn.close()


def test_bandwidth_cap_paces_each_response(tree, server):
    _, blob = tree
    srv = server(bandwidth_mbit=4)  # 4 Mbit/s: 250 000 bytes take at least 0.5 s
    st, _, body, dt = request(srv, "GET", "/sub/blob.bin", {"Range": "bytes=0-249999"})
    assert (st, body) == (206, blob[:250_000])
    assert dt >= 250_000 * 8 / 4e6
    assert dt < 0.5 + 2.0  # paced, not stalled
    # a small response is not held back by the cap of a large one: time scales with size
    *_, small = request(srv, "GET", "/sub/blob.bin", {"Range": "bytes=0-999"})
    assert small < dt / 2
    # the whole file (200) is paced too
    st, h, body, dt = request(srv, "GET", "/sub/blob.bin")
    assert dt >= SIZE * 8 / 4e6


def test_log_counts_requests_and_body_bytes(tree, server):
    _, blob = tree
    srv = server()
    received = []
    t0 = time.time()
    for method, path, headers in [
        ("GET", "/sub/blob.bin", {}),
        ("HEAD", "/sub/blob.bin", {}),
        ("GET", "/sub/blob.bin", {"Range": "bytes=10-29"}),
        ("GET", "/sub/blob.bin", {"Range": "bytes=0-99,200-299"}),
        ("GET", "/sub/blob.bin", {"Range": f"bytes={SIZE + 5}-"}),
        ("GET", "/img.tif", {"Range": "bytes=0-16383"}),
    ]:
        st, _, body, _ = request(srv, method, path, headers)
        received.append((method, path, headers.get("Range"), st, len(body)))
    t1 = time.time()
    assert srv.wait_idle() == {"in_flight": 0, "logged": 6}
    idle = time.time()
    entries = read_log(srv.log)
    assert [(e["method"], e["path"], e["range"], e["status"], e["bytes"]) for e in entries] == received
    # independent truth: full file = its size, a range = its length, HEAD and 416 = 0
    multipart = received[3][4]
    assert multipart > 200  # two 100-byte parts plus framing
    s = summarise(read_log(srv.log, t0, t1))
    assert s["requests"] == 6
    assert s["bytes"] == SIZE + 20 + multipart + 16384
    assert s["paths"]["/sub/blob.bin"] == {"requests": 5, "bytes": SIZE + 20 + multipart}
    assert s["paths"]["/img.tif"] == {"requests": 1, "bytes": 16384}
    assert s["by_method"]["HEAD"] == {"requests": 1, "bytes": 0}
    assert s["by_status"]["416"] == {"requests": 1, "bytes": 0}
    assert s["multi_range_requests"] == 1
    for e in entries:  # a request's line is written after its last byte: its end may follow the client's
        assert t0 <= e["start"] <= t1
        assert e["start"] <= e["end"] <= idle
    # a time window selects by the request's start
    assert read_log(srv.log, t1 + 1) == []
    assert len(read_log(srv.log, entries[2]["start"], entries[3]["start"])) == 2


@pytest.mark.parametrize("multirange", ["YES", "SINGLE_GET"])
def test_rasterio_reads_the_same_pixels_through_vsicurl(tree, server, multirange):
    """GDAL_HTTP_MULTIRANGE=YES (the workflow's setting) sends one GET per block
    run, in parallel; SINGLE_GET asks all of them in one multi-range GET and parses
    our multipart/byteranges answer."""
    import rasterio
    from rasterio.windows import Window

    root, _ = tree
    srv = server(delay_ms=5, bandwidth_mbit=200)
    url = f"/vsicurl/{srv.url}/img.tif"
    env = dict(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR", GDAL_HTTP_MULTIRANGE=multirange, CPL_VSIL_CURL_NON_CACHED=url)
    win = Window(100, 200, 700, 500)  # spans several 128 x 128 blocks
    with rasterio.Env(**env):
        with rasterio.open(url) as src:
            remote_win, remote_full = src.read(1, window=win), src.read(1)
        with rasterio.open(url, overview_level=1) as src:
            remote_ovr = src.read(1)
    with rasterio.open(root / "img.tif") as src:
        local_full, local_win = src.read(1), src.read(1, window=win)
    with rasterio.open(root / "img.tif", overview_level=1) as src:
        local_ovr = src.read(1)
    np.testing.assert_array_equal(remote_win, local_win)
    np.testing.assert_array_equal(remote_full, local_full)
    np.testing.assert_array_equal(remote_ovr, local_ovr)
    srv.wait_idle()
    s = summarise(read_log(srv.log))
    assert set(s["paths"]) == {"/img.tif"}
    assert set(s["by_status"]) <= {"200", "206"}
    assert 0 < s["bytes"] <= 3 * (root / "img.tif").stat().st_size
    if multirange == "SINGLE_GET":
        assert s["multi_range_requests"] >= 1
    else:
        assert s["multi_range_requests"] == 0
