"""What a run prints on the terminal (wired in workflow/rules/console.smk).

The default profile sets Snakemake's ``quiet: [rules, host, reason]``: no job
blocks, no header. In their place, while the job blocks are quiet:

* :class:`StageProgress`: steps done out of the total and per stage, one line when
  a stage completes and at every tenth of the run;
* :class:`ConsoleFilter`: keeps Snakemake's per-job progress lines ("Finished
  jobid", "N of M steps done") and the scheduler's per-round lines ("Select jobs to
  execute...", "Execute N jobs...") off the terminal (Snakemake's log file in
  ``.snakemake/log`` keeps them), and after Ctrl-C keeps the killed jobs' errors
  off too, so that an interrupt ends with one message;
* :func:`no_data_report`: the AOIs whose search found nothing, with the search
  (catalog, bbox, dates, cloud limit), its counts and what to check.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import sys
from pathlib import Path

#: Scheduler lines printed once per scheduling round (hundreds in a run).
NOISE = (
    "Select jobs to execute...",
    "DAG of jobs will be updated after completion.",
    "Updating checkpoint dependencies.",
)
#: Snakemake's events replaced by StageProgress (job stats, per-job progress).
REPLACED = ("job_started", "job_finished", "progress", "run_info")
INTERRUPT = "Terminating processes on user request"
#: A job stopped by Ctrl-C (our jobs exit 130): Snakemake may report it before its own notice.
JOB_INTERRUPTED = re.compile(r"exit status 130\b|Signals\.SIGINT")
#: What Snakemake says about the jobs Ctrl-C stopped, and its closing lines after them.
AFTER_INTERRUPT = (
    "Removing output files of failed job",
    "Shutting down",
    "Exiting because a job execution failed",
    "Will exit after finishing",
    "Complete log",
)


def _event(record: logging.LogRecord) -> str | None:
    event = getattr(record, "event", None)
    return None if event is None else str(getattr(event, "value", event))


class ConsoleFilter(logging.Filter):
    """A filter for Snakemake's terminal handler (see the module's docstring)."""

    def __init__(self, compact: bool = True):
        super().__init__()
        self.compact = compact
        self.interrupted = False

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.msg if isinstance(record.msg, str) else ""
        if msg.startswith(INTERRUPT):
            self.interrupted = True
            return True
        if record.levelno >= logging.ERROR and JOB_INTERRUPTED.search(msg):
            self.interrupted = True  # a job's Ctrl-C can be reported before Snakemake's own
        if self.interrupted:
            # the jobs stopped by Ctrl-C fail: their errors, and Snakemake's summary of
            # them, are not the user's problem
            return (
                record.levelno < logging.WARNING
                and _event(record) != "job_error"
                and not msg.startswith(AFTER_INTERRUPT)
            )
        if self.compact:
            return msg not in NOISE and _event(record) not in REPLACED
        return True


FINISHED = re.compile(r"Finished jobid: \d+ \(Rule: (\w+)\)")


class StageProgress(logging.Handler):
    """Steps done out of the total, per stage, from Snakemake's job events.

    Totals per stage come from the DAG (``dag``: Snakemake's, read when the number
    of steps changes, i.e. after each AOI's search adds its per-date jobs); the
    steps done are counted from the "Finished" events."""

    def __init__(self, dag, stream=None, order: list[str] | None = None):
        super().__init__(logging.INFO)
        self.dag = dag
        self.stream = stream
        self.order = order or []
        self.done: dict[str, int] = {}
        self.totals: dict[str, int] = {}
        self.n_total = -1
        self.last_tenth = -1
        self.complete: set[str] = set()

    def _totals(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        jobs = list(self.dag.needrun_jobs()) + list(self.dag.finished_jobs)
        for job in jobs:
            totals[job.rule.name] = totals.get(job.rule.name, 0) + 1
        return totals

    def emit(self, record: logging.LogRecord) -> None:
        try:
            event = _event(record)
            if event == "job_finished":
                m = FINISHED.search(str(record.msg))
                if m:
                    self.done[m.group(1)] = self.done.get(m.group(1), 0) + 1
            elif event == "progress":
                self.progress(int(record.done), int(record.total))
        except Exception:  # the display must never stop a run
            pass

    def progress(self, done: int, total: int) -> None:
        tenth = 10 * done // max(total, 1)
        if total != self.n_total:  # a search added its dates' jobs: count tenths of the new total
            self.totals, self.n_total = self._totals(), total
            self.last_tenth = min(self.last_tenth, tenth)
            self.complete = {r for r in self.complete if self.done.get(r, 0) >= self.totals.get(r, 0)}
        newly = {r for r, n in self.totals.items() if self.done.get(r, 0) >= n and r != "all"} - self.complete
        if newly or tenth > self.last_tenth or done == total:
            self.complete |= newly
            self.last_tenth = tenth
            print(self.line(done, total), file=self.stream or sys.stderr, flush=True)

    def line(self, done: int, total: int) -> str:
        rules = [r for r in self.order if r in self.totals] + sorted(set(self.totals) - set(self.order))
        stages = ", ".join(f"{r} {self.done.get(r, 0)}/{self.totals[r]}" for r in rules if r != "all")
        return f"[{done}/{total} steps, {round(100 * done / max(total, 1))}%] {stages}"


def put_on_pythonpath(folder) -> None:
    """Put ``folder`` first on PYTHONPATH for the processes this one starts (the
    jobs): workflow/jobsite/sitecustomize.py then quiets a Ctrl-C that reaches a job
    before its stage starts."""
    folder = str(folder)
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if folder not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([folder, *paths])


def products_wanted() -> bool:
    """Whether a run ends with its list of products (``S2TS_SUMMARY=off``: make demo
    prints it after the report instead)."""
    return os.environ.get("S2TS_SUMMARY", "on") != "off"


# ------------------------------------------------------------------ no data
def _collection_extent(catalog: str, collection: str) -> dict | None:
    """The spatial and temporal extent a static catalog declares for a collection."""
    try:
        path = Path(catalog)
        if not path.exists():
            return None
        doc = json.loads(path.read_text())
        if doc.get("type") == "Collection" and doc.get("id") == collection:
            return doc.get("extent")
        for link in doc.get("links", []):
            if link.get("rel") == "child":
                child = (path.parent / link["href"]).resolve()
                sub = json.loads(child.read_text())
                if sub.get("id") == collection:
                    return sub.get("extent")
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return None


def _intersects(a, b) -> bool:
    return a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3]


def no_data_hints(info: dict) -> list[str]:
    """What to check for an AOI whose search found no item, most likely first."""
    s = info["search"]
    bbox = s["bbox_4326"]
    hints = []
    if float(s["max_cloud_cover"]) <= 0:
        hints.append(
            "stac.max_cloud_cover is 0: the filter is eo:cloud_cover < 0, which no item passes; "
            "raise it (e.g. 20, or 100 to keep every item)"
        )
    extent = _collection_extent(info.get("catalog", ""), info.get("collection", ""))
    swapped = [bbox[1], bbox[0], bbox[3], bbox[2]]
    if extent:
        cover = (extent.get("spatial", {}).get("bbox") or [None])[0]
        if cover and not _intersects(bbox, cover):
            where = (
                f"the catalog covers only lon {cover[0]:.4f} to {cover[2]:.4f}, lat {cover[1]:.4f} to {cover[3]:.4f}"
            )
            if _intersects(swapped, cover):
                hints.append(
                    f"the polygon's coordinates look swapped: {where}, which the polygon reaches with "
                    "longitude and latitude exchanged (GeoJSON is longitude, latitude)"
                )
            else:
                hints.append(f"the polygon is outside the catalog's footprint: {where}")
        interval = (extent.get("temporal", {}).get("interval") or [None])[0]
        if interval and interval[0]:
            first = interval[0][:10]
            last = (interval[1] or "9999-12-31")[:10]
            if not (s["start"] <= last and first < s["end_exclusive"]):
                hints.append(f"the catalog has items from {first} to {last} only: change dates.start / dates.end")
    elif abs(bbox[1]) <= 90 and abs(bbox[0]) <= 90 and not hints:
        hints.append(
            "check the polygon is where you expect (GeoJSON is longitude, latitude: swapped "
            f"coordinates put it at lon {bbox[1]:.2f}, lat {bbox[0]:.2f} instead of lon {bbox[0]:.2f}, lat {bbox[1]:.2f})"
        )
    days = (dt.date.fromisoformat(s["end_exclusive"]) - dt.date.fromisoformat(s["start"])).days
    if days < 10:
        hints.append(f"the period is {days} day(s): Sentinel-2 revisits every 5 days, widen dates.start / dates.end")
    if not hints:
        hints.append(
            "check the polygon is inside the catalog's coverage, the dates hold acquisitions, and "
            "stac.max_cloud_cover is not too strict"
        )
    return hints


def no_data_report(infos: list[dict]) -> list[str]:
    """One warning per AOI without data: the search, its counts and what to check."""
    lines = []
    for info in infos:
        s, c = info["search"], info["counts"]
        bbox = ", ".join(f"{v:.5f}" for v in s["bbox_4326"])
        lines.append(
            f"WARNING: AOI '{info['aoi']}' has no data: the search of {info.get('collection')} in "
            f"{info.get('catalog')} over bbox [{bbox}] (lon/lat), from {s['start']} to {s['end_exclusive']} "
            f"(exclusive), eo:cloud_cover < {s['max_cloud_cover']} got {c['returned']} item(s) from the "
            f"catalog, {c['matching']} matching: no time series for this AOI."
        )
        lines.extend(f"    check: {hint}" for hint in no_data_hints(info))
    return lines


def read_infos(paths) -> list[dict]:
    infos = []
    for p in paths:
        try:
            infos.append(json.loads(Path(p).read_text()))
        except (OSError, ValueError):
            continue
    return infos


def without_data(infos: list[dict]) -> list[dict]:
    return [i for i in infos if not i.get("counts", {}).get("items")]


def no_data_summary(infos: list[dict], n_aois: int) -> tuple[list[str], bool]:
    """The end-of-run lines about AOIs without data, and whether the run failed
    (no AOI has data at all)."""
    empty = without_data(infos)
    if not empty:
        return [], False
    lines = no_data_report(empty)
    names = ", ".join(f"'{i['aoi']}'" for i in empty)
    if len(empty) >= n_aois:
        lines.append(
            f"ERROR: no AOI has data ({names}): the workflow made no time series. Fix the search as the "
            "checks above say (polygon, dates, stac.max_cloud_cover), then run it again."
        )
        return lines, True
    lines.append(f"{len(empty)} of {n_aois} AOI(s) have no data: {names} (see above); the others ran.")
    return lines, False


def stop_rescheduling_timers() -> int:
    """Cancel the scheduler's pending re-evaluation timers once the run is over.

    Snakemake 9.27's job rate limiter (``--max-jobs-per-timespan``, default 100/1s)
    starts a non-daemon ``threading.Timer`` of one timespan at every scheduling round;
    the interpreter waits for the last ones before it exits, so every run ended about
    1 s after its last job (measured: 1.45 s from "Elapsed time" to exit on a trivial
    workflow, 0.31 s with the timers cancelled). Sub-second timespans cannot be given:
    "200ms" parses as 200 minutes. Called from onsuccess/onerror, when no more
    scheduling can happen. Returns how many timers were cancelled."""
    import threading

    timers = [t for t in threading.enumerate() if isinstance(t, threading.Timer)]
    for t in timers:
        t.cancel()
    return len(timers)
