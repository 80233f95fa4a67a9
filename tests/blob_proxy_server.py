"""A local stand-in for Azure Blob Storage and the Planetary Computer's SAS token
endpoint, on 127.0.0.1, for signing tests.

* ``GET /api/sas/v1/token/<account>/<container>`` answers like the Planetary
  Computer: ``{"msft:expiry": ..., "token": "st=...&se=...&sp=rl&sv=...&sr=c&sig=..."}``
  with a fresh secret each time and an expiry ``--ttl`` seconds ahead (the
  planetary_computer client refreshes a token with less than 60 s left).
* As an HTTP proxy (GDAL_HTTP_PROXY=127.0.0.1:<port>), it serves
  ``http://<account>.blob.core.windows.net/<container>/<path>`` from ``--root/<path>``
  with Range support, but only with a ``sig`` it issued and that has not expired:
  otherwise 403, as Azure would.

Each request is logged as a JSON line to ``--log`` (token requests, served and
refused reads). ``--fail-first N`` answers the first N reads of each file with
HTTP 503 (a transient fault); ``--stall-first N`` lets the first N reads of each
file hang for ``--stall-seconds`` before answering (a read timeout on the client's
side; N < 0: every read hangs).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--ttl", type=float, default=3600)
    ap.add_argument("--log", default="/dev/null")
    ap.add_argument("--fail-first", type=int, default=0)
    ap.add_argument("--stall-first", type=int, default=0)
    ap.add_argument("--stall-seconds", type=float, default=30)
    a = ap.parse_args(argv)
    issued: dict[str, float] = {}
    failures: dict[str, int] = {}
    stalls: dict[str, int] = {}
    lock = threading.Lock()

    def log(**kw):
        with lock, open(a.log, "a") as f:
            f.write(json.dumps({"t": time.time(), **kw}) + "\n")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def _send(self, status, body=b"", headers=None):
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_HEAD(self):
            self.do_GET()

        def do_GET(self):
            url = urlsplit(self.path)
            if url.path.startswith("/api/sas/v1/token/"):
                sig = secrets.token_urlsafe(24)
                expiry = time.time() + a.ttl
                with lock:
                    issued[sig] = expiry
                exp = dt.datetime.fromtimestamp(expiry, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                token = f"st=2026-01-01T00%3A00%3A00Z&se={exp.replace(':', '%3A')}&sp=rl&sv=2021-06-08&sr=c&skoid=x&sig={sig}"
                log(kind="token", sig=sig)
                body = json.dumps({"msft:expiry": exp, "token": token}).encode()
                return self._send(200, body, {"Content-Type": "application/json"})
            host = url.hostname or ""
            if not host.endswith(".blob.core.windows.net"):
                return self._send(404)
            sig = parse_qs(url.query).get("sig", [""])[0]
            with lock:
                expiry = issued.get(sig)
            if expiry is None or expiry < time.time():
                log(kind="refused", path=url.path, reason="unknown" if expiry is None else "expired")
                return self._send(403, b"AuthenticationFailed")
            _, _container, rel = url.path.split("/", 2)
            path = os.path.join(a.root, rel)
            if not os.path.isfile(path):
                log(kind="missing", path=url.path)
                return self._send(404, b"BlobNotFound")
            with lock:
                n = failures.get(path, 0)
                failures[path] = n + 1
            if n < a.fail_first:
                log(kind="fault", path=url.path)
                return self._send(503, b"ServerBusy")
            with lock:
                k = stalls.get(path, 0)
                stalls[path] = k + 1
            if a.stall_first < 0 or k < a.stall_first:
                log(kind="stall", path=url.path)
                time.sleep(a.stall_seconds)  # the client gives up first; the answer below goes nowhere
            size = os.path.getsize(path)
            start, end = 0, size - 1
            rng = self.headers.get("Range")
            status = 200
            if rng and rng.startswith("bytes="):
                s, _, e = rng[6:].split(",")[0].partition("-")
                start = int(s) if s else max(0, size - int(e))
                end = min(int(e), size - 1) if (e and s) else size - 1
                status = 206
            with open(path, "rb") as f:
                f.seek(start)
                body = f.read(end - start + 1)
            headers = {"Content-Type": "image/tiff", "Accept-Ranges": "bytes"}
            if status == 206:
                headers["Content-Range"] = f"bytes {start}-{end}/{size}"
            log(kind="read", path=url.path, sig=sig, bytes=len(body))
            return self._send(status, body, headers)

    ThreadingHTTPServer(("127.0.0.1", a.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
