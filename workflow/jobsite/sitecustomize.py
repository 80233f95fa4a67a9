"""Quiet Ctrl-C for the workflow's jobs, from the first line of Python.

Snakemake runs each job's script in a Python process of the terminal's process
group, so Ctrl-C reaches it wherever it is. Before the stage's own code runs
(Snakemake's preamble, the stage's imports: about half a second per job) the
interrupt would print a KeyboardInterrupt traceback on the terminal; nothing has
been written then, so the process just ends, quietly, with status 130. The
Snakefile (workflow/rules/console.smk) puts this folder on the jobs' PYTHONPATH;
s2ts.runner.run takes over once the stage starts (KeyboardInterrupt, so that
temporary outputs are removed). Standard library only: it runs in every job.
"""

import os
import signal


def _interrupted_before_the_stage(signum, frame):
    os._exit(128 + signal.SIGINT)


if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
    signal.signal(signal.SIGINT, _interrupted_before_the_stage)
