"""A network-shaped HTTP file server for benchmarks: a directory tree (the demo
catalog's COGs) on 127.0.0.1, with a delay per request and a bandwidth cap per
response, and a JSON-lines log of every request.

* ``HEAD`` and ``GET``; ``Accept-Ranges: bytes`` and ``Content-Length`` on every
  answer. ``Range``: one range gives ``206`` + ``Content-Range``, several give
  ``206`` ``multipart/byteranges`` (RFC 7233 section 4.1: GDAL sends them when
  ``GDAL_HTTP_MULTIRANGE`` allows), none satisfiable ``416`` with
  ``Content-Range: bytes */<size>``; a syntactically invalid ``Range`` is ignored
  (``200``, the whole file), as RFC 7233 section 3.1 asks.
* ``--delay-ms`` (default 40): each request waits this long before it is answered
  (one round trip of a distant server; with keep-alive, one per request).
* ``--bandwidth-mbit`` (default 200, 0: no cap): each response's body is written in
  chunks, each sent no earlier than its last byte would arrive at that rate, so a
  body of N bytes takes at least ``N * 8 / cap`` seconds after the delay.
* ``--log F``: one JSON line per request, written when it ends: ``method``,
  ``path``, ``range`` (the header as sent, or null), ``status``, ``bytes`` (body
  bytes sent, multipart framing included), ``start`` and ``end`` (Unix time) and
  ``seconds``. :func:`summarise` sums them over any period of time.

Run it and stop it by process id; ``--port 0`` (default) takes a free port and the
first line on stdout is the server's URL::

    python benchmarks/cog_server.py --root resources/demo-catalog --log requests.jsonl
    http://127.0.0.1:40123

:class:`CogServer` does that from Python (start, wait for the URL, stop by pid).
A request's log line is written after its last byte is sent, so a reader waits
until the server is idle first (:meth:`CogServer.wait_idle`, which asks
``GET /.cog_server/status``: requests in flight and logged).
"""

from __future__ import annotations

import argparse
import json
import mimetypes
import os
import posixpath
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

CHUNK = 64 * 1024
#: ``GET`` here answers ``{"in_flight": n, "logged": m}`` (not delayed, not logged)
STATUS_PATH = "/.cog_server/status"


# --------------------------------------------------------------------------- ranges
def parse_range(header: str | None, size: int) -> list[tuple[int, int]] | None:
    """The satisfiable ranges of a ``Range`` header as ``(first, last)`` byte
    positions, inclusive, in the order asked (RFC 7233 section 2.1).

    ``None``: no header, another unit, or a syntactically invalid set (the header
    is then ignored and the whole file sent); ``[]``: valid but none satisfiable
    (416)."""
    if not header:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or not spec.strip():
        return None
    out = []
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue  # empty list elements are allowed
        first, dash, last = part.partition("-")
        first, last = first.strip(), last.strip()
        if not dash or (first and not first.isdigit()) or (last and not last.isdigit()) or not (first or last):
            return None
        if first:
            a = int(first)
            b = int(last) if last else None
            if b is not None and b < a:
                return None  # invalid byte-range-spec: the whole header is ignored
            if a < size:
                out.append((a, size - 1 if b is None else min(b, size - 1)))
        else:  # suffix: the last N bytes
            n = int(last)
            if n > 0 and size > 0:
                out.append((max(0, size - n), size - 1))
    return out


def multipart_layout(
    ranges: list[tuple[int, int]], size: int, ctype: str, boundary: str
) -> list[tuple[bytes, int, int]]:
    """``(bytes before the part's data, first, last)`` per part; the body is each
    prefix followed by its data, then :func:`multipart_end`."""
    out = []
    for i, (a, b) in enumerate(ranges):
        head = f"--{boundary}\r\nContent-Type: {ctype}\r\nContent-Range: bytes {a}-{b}/{size}\r\n\r\n"
        out.append(((("\r\n" if i else "") + head).encode("ascii"), a, b))
    return out


def multipart_end(boundary: str) -> bytes:
    return f"\r\n--{boundary}--\r\n".encode()


# --------------------------------------------------------------------------- server
class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: one connection serves many requests
    server_version = "cog_server"
    server: CogHTTPServer

    def log_message(self, *args) -> None:  # the JSON log replaces the access log
        pass

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def do_GET(self) -> None:
        if urlsplit(self.path).path == STATUS_PATH:
            self._status()
        else:
            self._serve(head=False)

    def _status(self) -> None:
        """Requests being served and requests logged (this one is neither)."""
        body = json.dumps(self.server.status()).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    # ------------------------------------------------------------------ helpers
    def _resolve(self) -> Path | None:
        rel = posixpath.normpath(unquote(urlsplit(self.path).path)).lstrip("/")
        if rel.startswith("..") or rel in ("", "."):
            return None
        path = (self.server.root / rel).resolve()
        if not path.is_relative_to(self.server.root) or not path.is_file():
            return None
        return path

    def _body_writer(self):
        """A function writing body bytes at the capped rate; it counts what was sent."""
        bps = self.server.bits_per_second
        t0 = time.perf_counter()
        sent = [0]

        def write(data: bytes) -> None:
            view = memoryview(data)
            for i in range(0, len(view), CHUNK):
                chunk = view[i : i + CHUNK]
                if bps:
                    due = t0 + (sent[0] + len(chunk)) * 8 / bps
                    wait = due - time.perf_counter()
                    if wait > 0:
                        time.sleep(wait)
                self.wfile.write(chunk)
                sent[0] += len(chunk)

        return write, sent

    def _serve(self, head: bool) -> None:
        start = time.time()
        rng = self.headers.get("Range")
        status, sent = 0, [0]
        self.server.begin()
        try:
            if self.server.delay:
                time.sleep(self.server.delay)
            path = self._resolve()
            if path is None:
                status = 404
                body = b"not found\n"
                self.send_response(404)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head:
                    write, sent = self._body_writer()
                    write(body)
                return
            size = path.stat().st_size
            ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            ranges = parse_range(rng, size)
            if ranges == []:
                status = 416
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if ranges is None:
                status = 200
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(size))
                parts = [(b"", 0, size - 1)] if size else []
                end = b""
            elif len(ranges) == 1:
                status = 206
                a, b = ranges[0]
                self.send_response(206)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Range", f"bytes {a}-{b}/{size}")
                self.send_header("Content-Length", str(b - a + 1))
                parts = [(b"", a, b)]
                end = b""
            else:
                status = 206
                boundary = secrets.token_hex(12)
                parts = multipart_layout(ranges, size, ctype, boundary)
                end = multipart_end(boundary)
                length = sum(len(p) + b - a + 1 for p, a, b in parts) + len(end)
                self.send_response(206)
                self.send_header("Content-Type", f"multipart/byteranges; boundary={boundary}")
                self.send_header("Content-Length", str(length))
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Last-Modified", self.date_time_string(int(path.stat().st_mtime)))
            self.end_headers()
            if head:
                return
            write, sent = self._body_writer()
            with open(path, "rb") as f:
                for prefix, a, b in parts:
                    if prefix:
                        write(prefix)
                    f.seek(a)
                    left = b - a + 1
                    while left > 0:
                        data = f.read(min(left, 1 << 20))
                        if not data:
                            raise OSError(f"{path} shrank while being served")
                        write(data)
                        left -= len(data)
            if end:
                write(end)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            t1 = time.time()
            self.server.record(
                {
                    "method": self.command,
                    "path": urlsplit(self.path).path,
                    "range": rng,
                    "status": status,
                    "bytes": sent[0],
                    "start": start,
                    "end": t1,
                    "seconds": round(t1 - start, 6),
                }
            )


class CogHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, addr, root: Path, delay: float, bits_per_second: float, log_path: Path | None):
        super().__init__(addr, Handler)
        self.root = Path(root).resolve()
        self.delay = delay
        self.bits_per_second = bits_per_second
        self._lock = threading.Lock()
        self._log = open(log_path, "a") if log_path else None

    in_flight = 0
    logged = 0

    def begin(self) -> None:
        with self._lock:
            self.in_flight += 1

    def record(self, entry: dict) -> None:
        """Log a finished request (a client may have its last byte before this)."""
        line = json.dumps(entry) + "\n"
        with self._lock:
            if self._log is not None:
                self._log.write(line)
                self._log.flush()
            self.logged += 1
            self.in_flight -= 1

    def status(self) -> dict:
        with self._lock:
            return {"in_flight": self.in_flight, "logged": self.logged}


# --------------------------------------------------------------------------- log
def read_log(path: Path, start: float | None = None, end: float | None = None) -> list[dict]:
    """The log's entries whose request started in ``[start, end]``."""
    out = []
    if not Path(path).exists():
        return out
    with open(path) as f:
        for line in f:
            if not line.strip():
                continue
            e = json.loads(line)
            if (start is None or e["start"] >= start) and (end is None or e["start"] <= end):
                out.append(e)
    return out


def summarise(entries: list[dict]) -> dict:
    """Requests and body bytes: in all, by method, by status, by path, and how
    many GETs asked several ranges at once (multi-range)."""
    tot = {"requests": len(entries), "bytes": sum(e["bytes"] for e in entries)}
    by = {"method": {}, "status": {}}
    paths: dict = {}
    multi = 0
    for e in entries:
        for key, val in (("method", e["method"]), ("status", str(e["status"]))):
            d = by[key].setdefault(val, {"requests": 0, "bytes": 0})
            d["requests"] += 1
            d["bytes"] += e["bytes"]
        p = paths.setdefault(e["path"], {"requests": 0, "bytes": 0})
        p["requests"] += 1
        p["bytes"] += e["bytes"]
        if e["method"] == "GET" and e.get("range") and "," in e["range"]:
            multi += 1
    return {**tot, "by_method": by["method"], "by_status": by["status"], "multi_range_requests": multi, "paths": paths}


# --------------------------------------------------------------------------- process
class CogServer:
    """``cog_server.py`` in its own process group on 127.0.0.1, stopped by its pid."""

    def __init__(
        self, root: Path, log: Path, delay_ms: float = 40.0, bandwidth_mbit: float = 200.0, timeout: float = 20.0
    ):
        self.log = Path(log)
        self.console = self.log.with_suffix(".console")
        cmd = [sys.executable, str(Path(__file__).resolve()), "--root", str(root), "--log", str(self.log)]
        cmd += ["--delay-ms", str(delay_ms), "--bandwidth-mbit", str(bandwidth_mbit), "--port", "0"]
        self._out = open(self.console, "w")
        self.proc = subprocess.Popen(cmd, stdout=self._out, stderr=subprocess.STDOUT, start_new_session=True)
        self.pid = self.proc.pid
        t0 = time.time()
        while True:
            first = self.console.read_text().splitlines()
            if first and first[0].startswith("http://"):
                self.url = first[0].strip()
                self.port = int(self.url.rsplit(":", 1)[1])
                return
            if self.proc.poll() is not None or time.time() - t0 > timeout:
                self.stop()
                raise RuntimeError(f"cog_server did not start: {self.console.read_text()[-2000:]}")
            time.sleep(0.05)

    def status(self) -> dict:
        with urllib.request.urlopen(self.url + STATUS_PATH, timeout=10) as r:
            return json.loads(r.read())

    def wait_idle(self, timeout: float = 30.0) -> dict:
        """Wait until no request is being served, so that every request a client
        has had its answer to is in the log (the entry is written after the last
        byte is sent); the status when idle."""
        t0 = time.time()
        while True:
            st = self.status()
            if st["in_flight"] == 0 or time.time() - t0 > timeout:
                return st
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.pid, signal.SIGKILL)
                self.proc.wait()
        self._out.close()

    def __enter__(self) -> CogServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _interrupt(*_) -> None:
    raise KeyboardInterrupt


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", required=True, help="directory served (paths in URLs are relative to it)")
    ap.add_argument("--port", type=int, default=0, help="0: a free port (printed)")
    ap.add_argument("--delay-ms", type=float, default=40.0, help="delay before each answer (default 40)")
    ap.add_argument("--bandwidth-mbit", type=float, default=200.0, help="cap per response, Mbit/s (0: none)")
    ap.add_argument("--log", help="JSON lines, one per request")
    a = ap.parse_args(argv)
    srv = CogHTTPServer(("127.0.0.1", a.port), a.root, a.delay_ms / 1000, a.bandwidth_mbit * 1e6, a.log)
    signal.signal(signal.SIGTERM, _interrupt)
    print(f"http://127.0.0.1:{srv.server_address[1]}", flush=True)
    try:
        srv.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        srv.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
