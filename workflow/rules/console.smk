# The console of a run (s2ts/console.py, s2ts/outputs.py): progress per stage in
# place of Snakemake's job blocks and per-job lines (profiles/default sets `quiet:
# [rules, host, reason]`; with the job blocks back, Snakemake's own progress), a quiet Ctrl-C,
# and at the end every product, the AOIs without data, and a failure when no AOI
# has data at all.
import logging

from s2ts.console import (
    ConsoleFilter,
    StageProgress,
    no_data_summary,
    products_wanted,
    put_on_pythonpath,
    read_infos,
    stop_rescheduling_timers,
)
from s2ts.outputs import summary as products_summary

STAGES = [
    "demo_catalog",
    "aoi_grid",
    "stac_manifest",
    "tile",
    "offset_fix",
    "mask",
    "gapfill",
    "netcdf",
    "regular",
    "figures",
    "csv_export",
    "benchmark_summary",
]


def quiet_about(category):
    """Whether Snakemake was told to keep a category (rules, progress...) quiet."""
    settings = getattr(workflow, "output_settings", None)
    return any(str(q).lower().endswith(category) for q in (getattr(settings, "quiet", None) or ()))


# a run (not a dry run, whose job table is its answer) with the job blocks quiet:
# StageProgress in place of Snakemake's per-job lines
COMPACT = quiet_about("rules") and not getattr(workflow.output_settings, "dryrun", False)


def install_console_filter():
    """On Snakemake's terminal handler: without per-job and per-round lines when the
    job blocks are quiet (StageProgress says how far the run is), quiet after Ctrl-C."""
    console = ConsoleFilter(compact=COMPACT)
    for handler in logging.getLogger("snakemake.logging").handlers:
        if handler.name == "DefaultStreamHandler":
            handler.addFilter(console)
    return console


CONSOLE = install_console_filter()


# Ctrl-C reaches every job: workflow/jobsite/sitecustomize.py, on the jobs' PYTHONPATH,
# ends one that is interrupted before its stage starts without a traceback.
put_on_pythonpath(Path(workflow.basedir) / "workflow" / "jobsite")
RUN_STARTED = []  # set by onstart: DAG evaluations after it happen during the run


def manifest_infos():
    return [resolved(f"<results>/{aoi}/manifest.json") for aoi in AOIS]


def checked_final_outputs(wildcards):
    """rule all's inputs (final_outputs). When every AOI's search is already done
    and none found data, a run has nothing to make: say so and stop, before any
    job (a run that finds it out as it goes stops at its end, in onsuccess)."""
    outputs = final_outputs(wildcards)
    if not RUN_STARTED:
        lines, failed = no_data_summary(read_infos(manifest_infos()), len(AOIS))
        if failed:
            sys.exit("\n".join(lines))
    return outputs


def print_summary():
    """Every product of the run that exists, then the AOIs without data; True when
    no AOI has data."""
    lines, failed = no_data_summary(read_infos(manifest_infos()), len(AOIS))
    if products_wanted() and not failed:
        lines = products_summary(resolved("<results>"), resolved("<period>"), list(AOIS)) + lines
    if lines:
        print("\n" + "\n".join(lines), file=sys.stderr, flush=True)
    return failed


def console_onstart():
    """Called from the Snakefile's onstart (a workflow has one): the run has started,
    and progress per stage replaces the per-job lines."""
    RUN_STARTED.append(True)
    if COMPACT and not quiet_about("progress"):
        logging.getLogger("snakemake.logging").addHandler(StageProgress(workflow.dag, order=STAGES))


onsuccess:
    stop_rescheduling_timers()
    if print_summary():
        sys.exit(1)


onerror:
    stop_rescheduling_timers()
    if CONSOLE.interrupted:
        print(
            "Interrupted. Completed outputs are kept and the jobs that were running are redone: "
            "run the same command again to resume.",
            file=sys.stderr,
            flush=True,
        )
