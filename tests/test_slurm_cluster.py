"""End-to-end check of the SLURM profile on a real cluster: runs a throwaway
Snakefile through profiles/slurm and proves every job ran under SLURM.

Needs the local cluster of cluster/slurm/start.sh (or any SLURM whose default
partition is `debug`); when `sinfo` is missing or does not answer: skipped locally,
failed in CI (CI=true, .ci/run starts the cluster)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import service_missing

ROOT = Path(__file__).resolve().parent.parent
PROFILE = ROOT / "profiles" / "slurm"
SNAKEMAKE = Path(sys.executable).parent / "snakemake"

SNAKEFILE = """
SAMPLES = ["a", "b", "c"]


rule all:
    input:
        "agg.txt",


rule where:
    output:
        "where/{sample}.txt",
    shell:
        'printf "host=%s\\njobid=%s\\n" "$(hostname)" "${{SLURM_JOB_ID:-}}" > {output}'


rule aggregate:
    input:
        expand("where/{sample}.txt", sample=SAMPLES),
    output:
        "agg.txt",
    shell:
        'cat {input} > {output}; printf "jobid=%s\\n" "${{SLURM_JOB_ID:-}}" >> {output}'
"""


def _slurm_answers() -> str | None:
    """None when a SLURM controller answers, else the reason to skip."""
    if shutil.which("sinfo") is None:
        return "sinfo not on PATH: start the local cluster with `bash cluster/slurm/start.sh`"
    if shutil.which("scontrol"):
        # Answers at once when the controller is down (sinfo retries for ~9 s).
        try:
            ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=20)
        except subprocess.TimeoutExpired:
            return "`scontrol ping` did not answer within 20 s"
        if ping.returncode != 0:
            first = (ping.stdout.strip() or ping.stderr.strip()).splitlines()[:1]
            return f"no SLURM controller answers ({first[0] if first else 'scontrol ping failed'}): start it with `bash cluster/slurm/start.sh`"
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%P %a %T"], capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return "sinfo did not answer within 20 s"
    if out.returncode != 0 or not out.stdout.strip():
        return f"sinfo does not answer (exit {out.returncode}): {out.stderr.strip()[:200]}"
    return None


def _jobid(text: str) -> str:
    values = [line.split("=", 1)[1].strip() for line in text.splitlines() if line.startswith("jobid=")]
    return values[-1] if values else ""


def test_snakemake_jobs_run_under_slurm(tmp_path: Path) -> None:
    reason = _slurm_answers()
    if reason:
        service_missing(reason)
    assert SNAKEMAKE.exists(), f"snakemake not found next to the interpreter: {SNAKEMAKE}"
    snakefile = tmp_path / "Snakefile"
    snakefile.write_text(SNAKEFILE)

    cmd = [
        str(SNAKEMAKE),
        "--profile",
        str(PROFILE),  # absolute path: found regardless of the working directory
        "--workflow-profile",
        "none",  # no profiles/default/ from the working directory may interfere
        "--directory",
        str(tmp_path),
        "-s",
        str(snakefile),
        "--jobs",
        "3",
    ]
    try:
        run = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"snakemake on SLURM did not finish in 300 s:\n{exc.stderr}")
    log = f"exit {run.returncode}\n--- stdout\n{run.stdout[-4000:]}\n--- stderr\n{run.stderr[-8000:]}"
    assert run.returncode == 0, log

    job_ids = set()
    for sample in ("a", "b", "c"):
        out = tmp_path / "where" / f"{sample}.txt"
        assert out.exists(), f"{out} missing\n{log}"
        text = out.read_text()
        assert "host=" in text and text.split("host=", 1)[1].split("\n", 1)[0].strip(), text
        job_id = _jobid(text)
        assert job_id.isdigit(), f"{out} has no SLURM_JOB_ID: {text!r}"
        job_ids.add(job_id)
    assert len(job_ids) == 3, f"the three jobs should be three SLURM jobs, got {job_ids}"

    agg = (tmp_path / "agg.txt").read_text()
    assert _jobid(agg).isdigit(), f"aggregate job ran outside SLURM: {agg!r}"
    assert _jobid(agg) not in job_ids
