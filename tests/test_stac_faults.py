"""STAC API faults from a fault-injecting server on 127.0.0.1: transient faults are
retried and the manifest is the fault-free one; a permanent failure ends with one
clear message and no manifest; a server that accepts connections and never answers
is retried aloud (on the console, as it happens) within ``stac.timeout`` and named.
Also the ``query`` path of a conforming server."""

import logging
import os
import subprocess
import time

import pytest
import yaml
from conftest import ROOT, VENV_BIN, load_features, write_static_catalog
from test_stac_manifest import run_manifest

from s2ts import stac_manifest as sm
from s2ts.errors import UserError

FEATURES = load_features("tile-13TDE-2024.json")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ref")
    cat = write_static_catalog(tmp / "cat", FEATURES)
    _, rows, out = run_manifest(tmp, cat)
    return (out / "manifest.csv").read_bytes(), len(rows)


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch):
    monkeypatch.setattr(sm, "BACKOFF", 0.05)


def test_query_extension_is_used_when_declared(tmp_path, stac_api, reference):
    api = stac_api(FEATURES)
    info, rows, out = run_manifest(tmp_path, api.url)
    assert "with query" in info["search"]["how"]
    assert (out / "manifest.csv").read_bytes() == reference[0]
    # the server filtered: it returned only what passes the cloud filter
    assert info["counts"]["returned"] == info["counts"]["matching"]
    assert max(api.attempts()) >= 3  # several pages were walked


@pytest.mark.parametrize(
    "faults",
    [
        [{"page": 1, "kind": "429", "times": 2}],
        [{"page": 2, "kind": "500", "times": 2}],
        [{"page": 2, "kind": "502", "times": 1}, {"page": 3, "kind": "503", "times": 1}],
        [{"page": 3, "kind": "500", "times": 3}],  # a failure on page 3 of a paged search
        [{"page": 2, "kind": "truncated", "times": 1}],
        [{"page": 1, "kind": "timeout", "times": 1}],
    ],
    ids=["429-retry-after", "500", "502-503", "page3-500", "truncated-json", "timeout"],
)
def test_transient_faults_are_retried(tmp_path, stac_api, reference, faults):
    api = stac_api(FEATURES, faults=faults, sleep=3.0)
    _, rows, out = run_manifest(tmp_path, api.url, timeout=1)
    assert (out / "manifest.csv").read_bytes() == reference[0]
    for f in faults:
        assert api.attempts()[f["page"]] > f["times"]  # the faulty page was asked again


@pytest.mark.parametrize("kind", ["503", "404"])
def test_permanent_failure_is_one_message_and_no_manifest(tmp_path, stac_api, monkeypatch, kind):
    monkeypatch.setattr(sm, "ATTEMPTS", 2)
    api = stac_api(FEATURES, faults=[{"page": 3, "kind": kind, "times": -1}])
    with pytest.raises(UserError, match=r"the search at .* failed after \d attempt\(s\).*nothing was written"):
        run_manifest(tmp_path, api.url)
    out = tmp_path / "out"
    assert not (out / "manifest.csv").exists() and not (out / "items").exists()
    assert not (out / "manifest.json").exists()
    if kind == "404":
        assert api.attempts()[3] == 1  # a client error is not retried


def test_429_waits_for_retry_after(tmp_path, stac_api, reference):
    """The server asks for 2 s; the client's own backoff here is 0.05 s: the retries of
    the page must come no sooner than the server asked."""
    api = stac_api(FEATURES, faults=[{"page": 1, "kind": "429", "times": 2, "retry_after": 2}])
    _, _, out = run_manifest(tmp_path, api.url)
    assert (out / "manifest.csv").read_bytes() == reference[0]
    page1 = sorted(r["t"] for r in api.log() if r.get("page") == 1)
    assert len(page1) == 3  # two 429s, then the answer
    gaps = [b - a for a, b in zip(page1, page1[1:])]
    assert all(g >= 1.9 for g in gaps), gaps


NEVER = {"landing-page": "/", "collection": "/collections/sentinel-2-l2a", "search": "/search"}


@pytest.mark.parametrize("where", NEVER)
def test_server_that_never_answers(tmp_path, stac_api, monkeypatch, caplog, where):
    """Connections accepted, no answer ever: every request (Client.open's landing page,
    the collection, the search) waits stac.timeout (0.5 s here, not the 60 s default),
    each retry is logged for the console, and the message names stac.timeout."""
    monkeypatch.setattr(sm, "ATTEMPTS", 2)
    path = NEVER[where]
    api = stac_api(FEATURES, faults=[{"path": path, "kind": "hang", "times": -1}])
    t0 = time.monotonic()
    with caplog.at_level(logging.INFO), pytest.raises(UserError) as err:
        run_manifest(tmp_path, api.url, timeout=0.5)
    elapsed = time.monotonic() - t0
    msg = str(err.value)
    assert "no answer within stac.timeout = 0.5 s" in msg and "raise stac.timeout" in msg
    searches = 2 if where == "search" else 1  # whole-search attempts (sm.ATTEMPTS)
    requests = api.attempts()[path]
    assert requests == 4 * searches  # each request: 1 try + 3 retries
    times = sorted(r["t"] for r in api.log() if r.get("path") == path)
    assert all(b - a > 0.45 for a, b in zip(times, times[1:])), times  # each try waited stac.timeout ...
    assert elapsed < 8 * searches  # ... and not longer (the default 60 s: 240 s per request)
    console = [r.getMessage() for r in caplog.records if getattr(r, "console", False)]
    retries = [m for m in console if m.startswith("STAC request") and "no answer within stac.timeout = 0.5 s" in m]
    assert len(retries) == 3 * searches
    assert len([m for m in console if m.startswith("STAC search attempt")]) == searches - 1
    assert not (tmp_path / "out" / "manifest.csv").exists() and not (tmp_path / "out" / "items").exists()


def test_server_that_never_answers_on_the_console(tmp_path, stac_api):
    """Through Snakemake, as a user runs it: each retry reaches the terminal as it
    happens (the job's stderr goes to its log file), then one message naming
    stac.timeout; no traceback, no manifest."""
    api = stac_api(FEATURES, faults=[{"path": "/", "kind": "hang", "times": -1}])
    results = tmp_path / "results"
    cfg = tmp_path / "hang.yaml"
    cfg.write_text(yaml.safe_dump({"stac": {"catalog": api.url, "timeout": 1}, "results": str(results)}))
    cmd = [str(VENV_BIN / "snakemake"), "--cores", "1", "--configfile", str(ROOT / "config.yaml"), str(cfg)]
    env = {**os.environ, "PATH": f"{VENV_BIN}:{os.environ['PATH']}"}
    proc = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    lines = []  # (seconds since start, line) as the terminal shows them
    t0 = time.monotonic()
    for line in proc.stderr:
        lines.append((time.monotonic() - t0, line.rstrip("\n")))
    proc.wait(120)
    text = "\n".join(line for _, line in lines)
    assert proc.returncode != 0, text
    prefix = "WARNING (stac_manifest aoi=1): STAC request GET "
    retries = [(t, line) for t, line in lines if line.startswith(prefix)]
    assert [line.split("; retry ")[1].split()[0] for _, line in retries] == ["1", "2", "3"], text
    assert all("no answer within stac.timeout = 1 s" in line for _, line in retries)
    # the job's own line to the terminal, before Snakemake reports the failed run
    error = "ERROR in rule stac_manifest: stac.catalog: cannot reach"
    final = [(t, line) for t, line in lines if line.startswith(error)]
    assert final and text.index(final[0][1]) < text.index("Exiting because a job execution failed"), text
    assert "no answer within stac.timeout = 1 s" in final[0][1] and "raise stac.timeout" in final[0][1]
    # as they happen: the first retry shows while later tries (1 s each, backoff 1 s and 2 s) still run
    assert final[0][0] - retries[0][0] >= 3, lines
    assert "Traceback" not in text
    assert not (results / "1" / "manifest.csv").exists()


def test_static_catalog_over_http_that_stops_answering(tmp_path, stac_api, monkeypatch, caplog):
    """A static catalog served over HTTP (no STAC API): walked with stac.timeout on each
    file too (pystac's own reader has no timeout and would wait for ever). Whole, it gives
    the same manifest as from disk; with one item file that never comes, one message."""
    cat = write_static_catalog(tmp_path / "cat", FEATURES[:12])
    served = stac_api([], static=tmp_path / "cat")
    (tmp_path / "ok").mkdir()
    _, rows, out = run_manifest(tmp_path / "ok", f"{served.url}/catalog.json", cc=100)
    (tmp_path / "disk").mkdir()
    _, _, disk = run_manifest(tmp_path / "disk", cat, cc=100)
    assert rows and (out / "manifest.csv").read_bytes() == (disk / "manifest.csv").read_bytes()

    path = f"/sentinel-2-l2a/{FEATURES[5]['id']}/{FEATURES[5]['id']}.json"
    hanging = stac_api([], static=tmp_path / "cat", faults=[{"path": path, "kind": "hang", "times": -1}])
    t0 = time.monotonic()
    with caplog.at_level(logging.WARNING), pytest.raises(UserError) as err:
        run_manifest(tmp_path, f"{hanging.url}/catalog.json", cc=100, timeout=0.5)
    assert "cannot reach the STAC catalog" in str(err.value) and "stac.timeout = 0.5 s" in str(err.value)
    assert hanging.attempts()[path] == 4 and time.monotonic() - t0 < 15
    assert sum(getattr(r, "console", False) and path in r.getMessage() for r in caplog.records) == 3
    assert not (tmp_path / "out" / "manifest.csv").exists()
