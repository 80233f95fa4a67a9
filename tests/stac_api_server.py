"""A small, real STAC API server for tests, with fault injection.

Serves a FeatureCollection of items as a STAC API on 127.0.0.1 that declares the
``item-search`` and ``query`` conformance classes: landing page, /conformance,
/collections, /collections/{id}, and /search (GET and POST) with bbox, datetime,
collections, ``query`` on ``eo:cloud_cover`` (lt, lte, gt, gte, eq) and paging via
a ``next`` link. It is the server the tests need where rustac's memory backend
does not go (the query extension, faults).

Faults (``--faults`` JSON list), each ``{"page": N, "kind": K, "times": T}``:
the first T requests for search page N (1-based) fail with K, one of
``429`` (with ``Retry-After: 1``, or the fault's ``"retry_after": S``), ``500``,
``502``, ``503``, ``404``, ``timeout`` (sleeps ``--sleep`` seconds before
answering), ``truncated`` (a 200 whose JSON body is cut in half), ``hang`` (the
connection is accepted and the request read, but no answer ever comes). A fault
with ``"path": P`` instead of a page applies to every request for that path
(``/`` the landing page, ``/collections/<id>``, ``/search``...). ``times: -1``
fails forever. Every request is appended to ``--log`` as a JSON line (page or
path, attempt, time), so tests can count retries and time them.

With ``--static DIR`` it serves the files of a static catalog instead (GET only,
path faults first): a static catalog over HTTP.

Run: ``python tests/stac_api_server.py --items items.json --collection coll.json --port P``
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import shapely.geometry

CONFORMS = [
    "https://api.stacspec.org/v1.0.0/core",
    "https://api.stacspec.org/v1.0.0/collections",
    "https://api.stacspec.org/v1.0.0/ogcapi-features",
    "https://api.stacspec.org/v1.0.0/item-search",
    "https://api.stacspec.org/v1.0.0/item-search#query",
]


class State:
    def __init__(self, items, collection, faults, page_size, sleep, log, static=None):
        self.static = static
        self.items = sorted(items, key=lambda it: (it["properties"]["datetime"], it["id"]))
        self.collection = collection
        self.faults = faults
        self.page_size = page_size
        self.sleep = sleep
        self.log = log
        self.counts: dict = {}
        self.lock = threading.Lock()


def _match(item, params) -> bool:
    cols = params.get("collections")
    if cols and item.get("collection") not in cols:
        return False
    if params.get("bbox"):
        if not shapely.geometry.shape(item["geometry"]).intersects(shapely.geometry.box(*params["bbox"])):
            return False
    if params.get("datetime"):
        start, _, end = params["datetime"].partition("/")
        t = item["properties"]["datetime"].replace("Z", "+00:00")
        from datetime import datetime

        tt = datetime.fromisoformat(t)
        if start not in ("", "..") and tt < datetime.fromisoformat(start.replace("Z", "+00:00")):
            return False
        if end not in ("", "..") and tt > datetime.fromisoformat(end.replace("Z", "+00:00")):
            return False
    for prop, ops in (params.get("query") or {}).items():
        v = item["properties"].get(prop)
        if v is None:
            return False
        for op, ref in ops.items():
            ok = {"lt": v < ref, "lte": v <= ref, "gt": v > ref, "gte": v >= ref, "eq": v == ref}[op]
            if not ok:
                return False
    return True


def make_handler(state: State):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # quiet
            pass

        def _send(self, status, body: bytes, headers=None):
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def _json(self, obj, status=200):
            self._send(status, json.dumps(obj).encode())

        @property
        def base(self):
            return f"http://{self.headers['Host']}"

        def _count(self, key) -> int:
            with state.lock:
                n = state.counts.get(key, 0) + 1
                state.counts[key] = n
                with open(state.log, "a") as f:
                    f.write(
                        json.dumps({"page" if isinstance(key, int) else "path": key, "attempt": n, "t": time.time()})
                        + "\n"
                    )
            return n

        def _fault(self, fault) -> bool:
            """Act out a fault; False when the request is to be answered normally after all."""
            kind = str(fault["kind"])
            if kind == "hang":
                threading.Event().wait()  # accepted, never answered (until the server is stopped)
            if kind == "timeout":
                time.sleep(state.sleep)
                return False
            if kind == "truncated":
                self._send(200, b'{"type": "FeatureCollection", "features": [{"ty')
                return True
            headers = {"Retry-After": str(fault.get("retry_after", 1))} if kind == "429" else None
            self._send(int(kind), json.dumps({"code": kind}).encode(), headers)
            return True

        def _path_fault(self, path) -> bool:
            faults = [f for f in state.faults if f.get("path") == (path or "/")]
            if not faults:
                return False
            n = self._count(path or "/")
            for fault in faults:
                if fault["times"] < 0 or n <= fault["times"]:
                    return self._fault(fault)
            return False

        def do_GET(self):
            url = urlsplit(self.path)
            if self._path_fault(url.path):
                return
            if state.static:
                file = (Path(state.static) / url.path.lstrip("/")).resolve()
                if file.is_file() and Path(state.static).resolve() in file.parents:
                    return self._send(200, file.read_bytes())
                return self._json({"code": "NotFound"}, 404)
            if url.path in ("/", ""):
                return self._json(
                    {
                        "type": "Catalog",
                        "stac_version": "1.0.0",
                        "id": "test-api",
                        "description": "test STAC API",
                        "conformsTo": CONFORMS,
                        "links": [
                            {"rel": "self", "href": self.base + "/", "type": "application/json"},
                            {"rel": "root", "href": self.base + "/", "type": "application/json"},
                            {
                                "rel": "search",
                                "href": self.base + "/search",
                                "type": "application/geo+json",
                                "method": "POST",
                            },
                            {
                                "rel": "search",
                                "href": self.base + "/search",
                                "type": "application/geo+json",
                                "method": "GET",
                            },
                            {"rel": "data", "href": self.base + "/collections", "type": "application/json"},
                            {"rel": "conformance", "href": self.base + "/conformance", "type": "application/json"},
                        ],
                    }
                )
            if url.path == "/conformance":
                return self._json({"conformsTo": CONFORMS})
            if url.path == "/collections":
                return self._json({"collections": [self._collection()], "links": []})
            if url.path == f"/collections/{state.collection['id']}":
                return self._json(self._collection())
            if url.path.startswith("/collections/"):
                return self._json({"code": "NotFound", "description": "no such collection"}, 404)
            if url.path == "/search":
                q = {k: v[0] for k, v in parse_qs(url.query).items()}
                params = {
                    "collections": q["collections"].split(",") if "collections" in q else None,
                    "bbox": [float(v) for v in q["bbox"].split(",")] if "bbox" in q else None,
                    "datetime": q.get("datetime"),
                    "query": json.loads(q["query"]) if "query" in q else None,
                    "limit": int(q.get("limit", state.page_size)),
                    "page": int(q.get("page", 1)),
                }
                return self._search(params)
            return self._json({"code": "NotFound"}, 404)

        def do_POST(self):
            if self._path_fault(urlsplit(self.path).path):
                return
            if urlsplit(self.path).path != "/search":
                return self._json({"code": "NotFound"}, 404)
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            body.setdefault("page", 1)
            return self._search(body)

        def _collection(self):
            c = dict(state.collection)
            c["links"] = [{"rel": "self", "href": f"{self.base}/collections/{c['id']}"}]
            return c

        def _search(self, params):
            page = int(params.get("page", 1))
            n = self._count(page)
            for fault in state.faults:
                if fault.get("page") == page and (fault["times"] < 0 or n <= fault["times"]):
                    if self._fault(fault):
                        return
                    break
            limit = min(int(params.get("limit") or state.page_size), state.page_size)  # server-side page cap
            matched = [it for it in state.items if _match(it, params)]
            chunk = matched[(page - 1) * limit : page * limit]
            links = []
            if page * limit < len(matched):
                nxt = dict(params, page=page + 1)
                links.append(
                    {
                        "rel": "next",
                        "href": self.base + "/search",
                        "method": "POST",
                        "body": nxt,
                        "type": "application/geo+json",
                    }
                )
            return self._json(
                {"type": "FeatureCollection", "features": chunk, "links": links, "numberMatched": len(matched)}
            )

    return Handler


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", required=True)
    ap.add_argument("--collection", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--faults", default="[]")
    ap.add_argument("--page-size", type=int, default=10)
    ap.add_argument("--sleep", type=float, default=5.0)
    ap.add_argument("--log", default="/dev/null")
    ap.add_argument("--static", default=None)
    a = ap.parse_args(argv)
    items = json.load(open(a.items))["features"]
    coll = json.load(open(a.collection))
    for it in items:
        it["collection"] = coll["id"]
    state = State(items, coll, json.loads(a.faults), a.page_size, a.sleep, a.log, a.static)
    server = ThreadingHTTPServer(("127.0.0.1", a.port), make_handler(state))
    server.serve_forever()


if __name__ == "__main__":
    main()
