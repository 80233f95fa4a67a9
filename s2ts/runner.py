"""Run a stage function from a Snakemake ``script:`` with logging to the rule log.

Every stage script is three lines::

    from s2ts.runner import run
    from s2ts.<stage> import <stage>_from_snakemake
    run(snakemake, <stage>_from_snakemake)

``run`` sends stderr and Python logging to ``snakemake.log[0]``, with every
credential removed from URLs in log records (:class:`ScrubSecrets`); a
:class:`~s2ts.errors.UserError` is written as one line to both the log and the
terminal, and the job fails without a traceback. A log call with
``extra=CONSOLE`` (a warning the user must see as it happens: a server that does
not answer and is being retried, a polygon without items) reaches the terminal
too. The log's first line names the host and, under SLURM, the SLURM job.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import traceback

#: ``extra=`` of a log call whose message must reach the terminal too, not only the
#: job's log file.
CONSOLE = {"console": True}


class ScrubSecrets(logging.Filter):
    """Remove credentials from every URL in a log record (libraries log the signed
    URL of a failed or retried read: rasterio's GDAL messages, odc-stac)."""

    def filter(self, record: logging.LogRecord) -> bool:
        from s2ts.item_meta import scrub_secrets

        record.msg = scrub_secrets(record.getMessage())
        record.args = None
        return True


def _console_only(record: logging.LogRecord) -> bool:
    return bool(getattr(record, "console", False))


def _job_name(smk) -> str:
    wildcards = getattr(smk, "wildcards", None)
    items = ", ".join(f"{k}={v}" for k, v in wildcards.items()) if wildcards is not None else ""
    return f"rule {smk.rule}" + (f" ({items})" if items else "")


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
    if log_path:  # without a log file, stderr is the terminal already
        to_terminal = logging.StreamHandler(terminal)
        to_terminal.setFormatter(
            logging.Formatter("%(levelname)s in " + _job_name(smk).replace("%", "%%") + ": %(message)s")
        )
        to_terminal.addFilter(_console_only)
        logging.getLogger().addHandler(to_terminal)
    for handler in logging.getLogger().handlers:
        handler.addFilter(ScrubSecrets())
    logging.captureWarnings(True)  # warnings go through the same filter
    slurm = os.environ.get("SLURM_JOB_ID")
    logging.getLogger("runner").info(
        "%s on %s%s", _job_name(smk), socket.gethostname(), f", SLURM job {slurm}" if slurm else ", not under SLURM"
    )
    from s2ts.errors import UserError

    try:
        func(smk)
    except UserError as exc:
        msg = f"ERROR in rule {smk.rule}: {exc}"
        print(msg, file=sys.stderr, flush=True)
        if log_path:
            print(msg, file=terminal, flush=True)
        sys.exit(1)
    except Exception:
        from s2ts.item_meta import scrub_secrets

        print(scrub_secrets(traceback.format_exc()), file=sys.stderr)
        if log_path:
            print(
                f"ERROR in rule {smk.rule}: unexpected failure, see {log_path}",
                file=terminal,
                flush=True,
            )
        sys.exit(1)
