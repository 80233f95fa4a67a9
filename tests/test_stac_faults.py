"""STAC API faults from a fault-injecting server on 127.0.0.1: transient faults are
retried and the manifest is the fault-free one; a permanent failure ends with one
clear message and no manifest. Also the ``query`` path of a conforming server."""

import pytest
from conftest import load_features, write_static_catalog
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
