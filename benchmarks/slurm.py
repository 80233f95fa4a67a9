"""SLURM figures: jobs submitted grouped vs one per rule instance, and wall time
on the one-node cluster vs the local executor (same 2 cores), for the
multi-polygon demo (three Arcachon sites) over a configurable period; plus the
DAG build time of benchmarks/dag_build.py.

Needs the cluster of cluster/slurm/start.sh.

    python benchmarks/slurm.py [--start 2022-01-01 --end 2022-03-01] [--json F]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
CONFIGS = [str(ROOT / "config" / "demo.yaml"), str(ROOT / "config" / "demo-sites.yaml")]


def run(results: Path, start: str, end: str, extra: list[str]) -> tuple[float, int, str]:
    over = results.parent / f"{results.name}.yaml"
    results.parent.mkdir(parents=True, exist_ok=True)
    over.write_text(
        yaml.safe_dump({"results": str(results), "dates": {"start": start, "end": end}, "tiles": {"batch": "date"}})
    )
    t0 = time.perf_counter()
    p = subprocess.run(
        [SNAKEMAKE, "--cores", "2", "--configfile", *CONFIGS, str(over), *extra],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(p.stderr[-3000:])
    return wall, len(re.findall(r"submitted with SLURM jobid", p.stderr)), p.stderr


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--start", default="2022-01-01")
    ap.add_argument("--end", default="2022-03-01")
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    slurm = ["--workflow-profile", str(ROOT / "profiles" / "slurm"), "--jobs", "8"]
    ungrouped = ["--groups", "tile=g_tile", "offset_fix=g_off", "mask=g_mask"]
    ungrouped += ["--group-components", "g_tile=1", "g_off=1", "g_mask=1"]
    local = []  # profiles/default/ is found by Snakemake itself
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name, extra in [
            ("local", local),
            ("slurm_grouped", slurm),
            ("slurm_one_per_rule_instance", slurm + ungrouped),
        ]:
            wall, jobs, _ = run(tmp / name, a.start, a.end, extra)
            out[name] = {"wall_s": round(wall, 1), "slurm_jobs": jobs}
            print(f"{name:30s} wall {wall:7.1f} s   SLURM jobs submitted {jobs}")
    out["ratio_slurm_grouped_to_local"] = round(out["slurm_grouped"]["wall_s"] / out["local"]["wall_s"], 2)
    print(f"wall time, SLURM (grouped) / local: {out['ratio_slurm_grouped_to_local']}")
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import dag_build

    out["dag_build"] = dag_build.main([])
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
