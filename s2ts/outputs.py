"""Print where a run's results are: ``python -m s2ts.outputs CONFIG [CONFIG ...]``.

Config files are layered on top of config.yaml like ``snakemake --configfile``.
The same summary ends every successful ``snakemake`` run (the ``onsuccess``
handler in workflow/rules/console.smk): per AOI its NetCDF, regular product, CSV export and
figures, then the benchmark summary and the report, each listed when it exists.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

#: Files of the figures stage, in the order the report shows them.
FIGURES = [
    "false_colour.png",
    "false_colour.gif",
    "pixel_series.png",
    "sandbank_area.png",
    "sandbank_area.csv",
    "data_quality.png",
    "index_series.png",  # with `indices`
    "regular_series.png",  # with `regular`
]


def merged_config(paths: list[str]) -> dict:
    def merge(a, b):
        for k, v in b.items():
            a[k] = merge(a.get(k, {}), v) if isinstance(v, dict) and isinstance(a.get(k), dict) else v
        return a

    cfg = yaml.safe_load(Path("config.yaml").read_text())
    for p in paths:
        merge(cfg, yaml.safe_load(Path(p).read_text()) or {})
    return cfg


def aoi_products(results: Path, aoi: str, period: str) -> list[tuple[str, Path]]:
    """(kind, path) of every product of one AOI that exists."""
    d = results / aoi
    candidates = [("NetCDF", d / f"{aoi}_{period}.nc")]
    # the regular product(s), <aoi>_<period>_<N>d.nc (config regular)
    candidates += [
        ("regular", p) for p in sorted(d.glob(f"{aoi}_{period}_*d.nc")) if p.stem.rsplit("_", 1)[1][:-1].isdigit()
    ]
    candidates += [("CSV", d / f"{aoi}_{period}.csv.gz")]
    candidates += [("figure", d / "figures" / name) for name in FIGURES]
    return [(kind, p) for kind, p in candidates if p.exists()]


def summary(results, period: str, aois: list[str] | None = None, report=None) -> list[str]:
    """The lines listing every product of a run that exists (``period``:
    ``<start>_<end>``, as the NetCDF is named)."""
    results = Path(results)
    if aois is None:
        aois = sorted(p.name for p in results.iterdir() if (p / "manifest.json").exists()) if results.exists() else []
    lines = [f"Results in {results}/:"]
    for aoi in aois:
        info_path = results / aoi / "manifest.json"
        info = json.loads(info_path.read_text()) if info_path.exists() else None
        counts = f": {info['counts']['items']} items on {info['counts']['dates']} dates" if info else ""
        products = aoi_products(results, aoi, period)
        if not products:
            why = "no data (see the warning above)" if info and not info["counts"]["items"] else "not made yet"
            lines.append(f"  AOI {aoi}{counts}: {why}")
            continue
        lines.append(f"  AOI {aoi}{counts}")
        lines.extend(f"    {kind:<7} {path}" for kind, path in products)
    bench = results / "benchmarks" / "summary.html"
    if bench.exists():
        lines.append(f"  timings  {bench}")
    report = Path(report) if report else results / "report.html"
    if report.exists():
        lines.append(f"  report   {report}")
    else:
        lines.append(f"  report   not made: snakemake --report {report} (with the same --configfile options)")
    return lines


def main(argv: list[str]) -> int:
    from s2ts.console import no_data_summary, read_infos

    cfg = merged_config(argv)
    results = Path(cfg.get("results", "results"))
    period = f"{cfg['dates']['start']}_{cfg['dates']['end']}"
    infos = read_infos(sorted(results.glob("*/manifest.json")))
    print()
    print("\n".join(summary(results, period) + no_data_summary(infos, len(infos))[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
