"""One place pins versions (requirements.lock); the conda environments of the
rules list the same versions; every rule has a log and a conda environment."""

import re
from pathlib import Path

import pytest
import yaml
from conftest import ROOT


def lock() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.lower().replace("_", "-")] = version
    return pins


def test_lock_pins_every_direct_dependency():
    pins = lock()
    direct = [
        ln.strip()
        for ln in (ROOT / "requirements.in").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    assert direct and all(d.lower() in pins for d in direct), [d for d in direct if d.lower() not in pins]


def test_conda_envs_agree_with_lock():
    pins = lock()
    envs = sorted((ROOT / "envs").glob("*.yaml"))
    assert envs
    for env in envs:
        doc = yaml.safe_load(env.read_text())
        deps = doc["dependencies"]
        assert "python=3.11" in deps
        pip = next(d["pip"] for d in deps if isinstance(d, dict))
        assert pip
        for spec in pip:
            name, version = spec.split("==")
            assert pins.get(name.lower()) == version, f"{env.name}: {spec} but lock has {pins.get(name.lower())}"


def test_every_rule_has_log_conda_and_script():
    rules = {}
    for smk in (ROOT / "workflow" / "rules").glob("*.smk"):
        for m in re.finditer(r"^(?:rule|checkpoint) (\w+):\n((?:[ \t]+.*\n|\n)*)", smk.read_text(), re.M):
            rules[m.group(1)] = m.group(2)
    assert {"aoi_grid", "stac_manifest", "demo_catalog"} <= set(rules)
    for name, body in rules.items():
        assert "log:" in body, name
        assert "conda:" in body, name
        env = re.search(r'conda:\s*\n\s*"\.\./\.\./(envs/[\w-]+\.yaml)"', body).group(1)
        assert (ROOT / env).exists(), env
        # the rule, its script and its module (or package) share one name
        assert f'"../../scripts/{name}.py"' in body, name
        assert (ROOT / "scripts" / f"{name}.py").exists()
        assert (ROOT / "s2ts" / f"{name}.py").exists() or (ROOT / "s2ts" / name / "__init__.py").exists(), name
        assert (ROOT / "tests" / f"test_{name}.py").exists()


def test_readme_states_the_number_of_tests(request):
    """The README's "Tests" section says how many tests `make test` runs: checked
    against what this session collected when it collected the whole suite."""
    import re

    text = (ROOT / "README.md").read_text()
    m = re.search(r"^`make test` runs (\d[\d,]*) tests", text, re.M)
    assert m, "README.md: the Tests section must say '`make test` runs N tests'"
    stated = int(m.group(1).replace(",", ""))
    files = {Path(str(item.fspath)).name for item in request.session.items}
    if files != {p.name for p in (ROOT / "tests").glob("test_*.py")}:
        pytest.skip("only part of the suite was collected: the count is checked on a whole run")
    assert len(request.session.items) == stated, (
        f"README says {stated} tests, the suite has {len(request.session.items)}"
    )


def test_no_committed_symlink_leads_outside_the_repository():
    # a symlink into another checkout (an old .bench -> /work/wt-bench/.bench) dangles
    # in every fresh clone: make bench then failed to create its folders
    import subprocess

    listed = subprocess.run(["git", "ls-files", "-s"], cwd=ROOT, capture_output=True, text=True)
    if listed.returncode != 0:
        pytest.skip("not a git checkout")
    links = [line.split("\t", 1)[1] for line in listed.stdout.splitlines() if line.startswith("120000 ")]
    outside = [p for p in links if not (ROOT / p).resolve().is_relative_to(ROOT.resolve())]
    assert not outside, f"committed symlinks that lead outside the repository: {outside}"
