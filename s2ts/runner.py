"""Run a stage function from a Snakemake ``script:`` with logging to the rule log.

Every stage script is three lines::

    from s2ts.runner import run
    from s2ts.<stage> import <stage>_from_snakemake
    run(snakemake, <stage>_from_snakemake)

``run`` sends stderr and Python logging to ``snakemake.log[0]``, with every
credential removed from URLs in log records (:class:`ScrubSecrets`). The terminal
gets one line per thing a user must know, never a traceback:

* a :class:`~s2ts.errors.UserError` is written as one line to both the log and the
  terminal, and the job fails;
* the stage's own warnings (its logger, named after the rule: a date dropped by
  ``tiles.on_read_error: skip``, a search that found nothing, a retry) are echoed to
  the terminal as ``WARNING (<rule> <wildcards>): ...``;
* an interrupt (Ctrl-C) writes one line to the log and ends the job quietly:
  Snakemake removes its incomplete outputs, and the same command resumes;
* a stage that succeeds ends its process at once (``os._exit(0)`` once the log and
  the terminal are flushed): ``run`` does not return.

A log call with ``extra=CONSOLE`` reaches the terminal whatever logger it comes from.
The log's first line names the host and, under SLURM, the SLURM job.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import traceback

# Imported here, not when a record is filtered: at interpreter shutdown (after
# Ctrl-C) an import fails with "ImportError: sys.meta_path is None", once per record.
from s2ts.item_meta import scrub_secrets

INTERRUPTED = 130  # exit status of a job stopped by SIGINT (128 + 2)
#: ``extra=`` of a log call whose message must reach the terminal from any logger
CONSOLE = {"console": True}


def _interrupted_after_the_stage(signum, frame):
    os._exit(INTERRUPTED)  # the outputs are complete: nothing to clean up, nothing to say


class ScrubSecrets(logging.Filter):
    """Remove credentials from every URL in a log record (libraries log the signed
    URL of a failed or retried read: rasterio's GDAL messages, odc-stac). A record
    that cannot be scrubbed is dropped, never written as it is."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            record.msg = scrub_secrets(record.getMessage())
        except Exception:
            return False
        record.args = None
        return True


class StageWarnings(logging.Handler):
    """Echo the stage's own warnings to the terminal, one line each (errors have their own line)."""

    def __init__(self, stream, rule: str, where: str):
        super().__init__(logging.WARNING)
        self.stream, self.rule, self.where = stream, rule, where
        self.addFilter(ScrubSecrets())

    def emit(self, record: logging.LogRecord) -> None:
        marked = getattr(record, "console", False)
        own = record.levelno == logging.WARNING and (record.name == self.rule or record.name.startswith("s2ts"))
        if not (marked or own):
            return  # libraries' warnings stay in the log
        try:
            print(f"{record.levelname} ({self.where}): {record.getMessage()}", file=self.stream, flush=True)
        except Exception:
            pass


def job_name(smk) -> str:
    """``tile aoi=1 batch=2021-03``: the rule and its wildcards."""
    try:
        wildcards = " ".join(f"{k}={v}" for k, v in smk.wildcards.items())
    except AttributeError:
        wildcards = ""
    return f"{smk.rule} {wildcards}".strip()


def run(smk, func) -> None:
    log_path = smk.log[0] if len(smk.log) else None
    terminal = os.fdopen(os.dup(2), "w")
    if log_path:
        os.makedirs(os.path.dirname(log_path) or ".", exist_ok=True)
        log_file = open(log_path, "w", buffering=1)
        sys.stderr = log_file
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(ScrubSecrets())
    if log_path:
        logging.getLogger().addHandler(StageWarnings(terminal, smk.rule, job_name(smk)))
    logging.captureWarnings(True)  # warnings go through the same filter
    slurm = os.environ.get("SLURM_JOB_ID")
    rule, _, wildcards = job_name(smk).partition(" ")
    logging.getLogger("runner").info(
        "rule %s%s on %s%s",
        rule,
        f" ({wildcards.replace(' ', ', ')})" if wildcards else "",
        socket.gethostname(),
        f", SLURM job {slurm}" if slurm else ", not under SLURM",
    )
    from s2ts.errors import UserError

    # Ctrl-C raises KeyboardInterrupt in the stage, so that temporary outputs are
    # removed (before the stage, workflow/jobsite/sitecustomize.py ends the job
    # quietly); a job started with SIGINT ignored (a background run) keeps ignoring it
    interruptible = signal.getsignal(signal.SIGINT) is not signal.SIG_IGN
    if interruptible:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        func(smk)
    except UserError as exc:
        msg = f"ERROR in rule {smk.rule}: {exc}"
        print(msg, file=sys.stderr, flush=True)
        if log_path:
            print(msg, file=terminal, flush=True)
        sys.exit(1)
    except KeyboardInterrupt:
        print(f"interrupted (Ctrl-C): job {job_name(smk)} stopped; run the workflow again to redo it", file=sys.stderr)
        sys.exit(INTERRUPTED)
    except Exception:
        print(scrub_secrets(traceback.format_exc()), file=sys.stderr)
        if log_path:
            print(
                f"ERROR in rule {smk.rule}: unexpected failure, see {log_path}",
                file=terminal,
                flush=True,
            )
        sys.exit(1)
    finally:
        if interruptible:
            signal.signal(signal.SIGINT, _interrupted_after_the_stage)
    _exit_now(terminal)


def _exit_now(terminal) -> None:
    """End the job's process once its stage has succeeded: everything it wrote is
    complete and closed (outputs renamed into place), so flush the log and the
    terminal and leave with status 0 without the interpreter's teardown. With
    xarray, dask, zarr and GDAL loaded that teardown takes 0.2-0.25 s per job
    (measured), paid five times in a row on a run's critical path."""
    logging.shutdown()
    for stream in (terminal, sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            stream.flush()
        except Exception:
            pass
    os._exit(0)
