"""Drawing a study: histograms of its figures, scatter plots of figures against the swept parameters, the plots
its spec asks for, and a summary (per case and per parameter value: jobs, failures, mean and spread, yields).

Reads only the study folder (its run.json and ``results.csv``), so a copied folder reports the same. Parameters
whose unit is ``seed`` are replicates: they feed the histograms and the spread, never an x axis. Failed jobs are
counted in every title and drawn as crosses under the scatter plots at their parameter value.
"""

from __future__ import annotations

import json
import math
import statistics
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labctl.runs.record import RUN_FILE, atomic_write_json
from labctl.study.table import CSV_FILE, read_table
from labctl.study.units import label, unit_of

#: Figures drawn when the spec's [report] names none.
DEFAULT_FIGURES = {"calibrate-verify": ["true_bits", "bits", "cal_time_s"],
                   "train": ["test_accuracy_pct", "product_error_std"]}
SI_UNITS = {"m", "s", "W", "A", "V", "K", "Hz"}
MAX_GROUPS = 16


class NotAStudy(ValueError):
    """The folder is not a study folder (no study in its run.json, or no table)."""


@dataclass
class Study:
    path: Path
    record: dict[str, Any]
    rows: list[dict[str, Any]]
    params: list[str]
    figures: list[str]
    units: dict[str, str] = field(default_factory=dict)

    @property
    def spec(self) -> dict[str, Any]:
        return self.record["params"]["study"]

    @property
    def name(self) -> str:
        return str(self.spec["name"])

    @property
    def cases(self) -> list[str]:
        return list(self.spec.get("cases") or {"": []})

    def rows_of(self, case: str) -> list[dict[str, Any]]:
        return [r for r in self.rows if (r.get("case") or "") == case]

    def swept(self, case: str) -> list[str]:
        """Parameters that vary in a case, replicates (seeds) left out."""
        return [p for p in self.spec.get("cases", {}).get(case, []) if unit_of(p, self.units) != "seed"]

    def main_figures(self) -> list[str]:
        wanted = self.spec.get("report", {}).get("figures") or DEFAULT_FIGURES.get(self.spec["procedure"])
        numeric = [f for f in self.figures if any(_num(r.get(f)) is not None for r in self.rows)]
        return [f for f in wanted if f in numeric] if wanted else numeric


def is_study(path: Path) -> bool:
    """A study folder: a readable run.json whose parameters hold the study (a damaged one is not: the run reader
    says what is wrong with it)."""
    from labctl.runs.record import RunRecordError, read_record

    try:
        record = read_record(path)
    except RunRecordError:
        return False
    return isinstance((record.get("params") or {}).get("study"), dict)


def load_study(path: str | Path) -> Study:
    folder = Path(path)
    if not is_study(folder):
        raise NotAStudy(f"{folder}: not a study folder (no study run.json)")
    record = json.loads((folder / RUN_FILE).read_text())
    table = folder / CSV_FILE
    if not table.is_file():
        raise NotAStudy(f"{folder}: the study has no {CSV_FILE} yet (no job has finished)")
    rows = read_table(table)
    tables = record.get("tables") or {}
    columns = list(rows[0]) if rows else []
    from labctl.study.table import FIXED_COLUMNS

    params = tables.get("params") or [c for c in columns if c not in FIXED_COLUMNS and "." in c]
    figures = tables.get("figures") or [c for c in columns if c not in FIXED_COLUMNS and c not in params]
    units = dict(record["params"]["study"].get("units") or {})
    return Study(folder, record, rows, list(params), list(figures), units)


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _stats(values: Sequence[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    return {"n": len(values), "mean": statistics.fmean(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0, "min": min(values), "max": max(values)}


def _thresholds(study: Study) -> dict[str, float]:
    return {k: float(v) for k, v in (study.spec.get("report", {}).get("thresholds") or {}).items()}


def summary(study: Study) -> dict[str, Any]:
    """Per case: jobs, failures (with their distinct errors), each main figure's statistics and yields, and the
    same per value of every swept parameter."""
    out: dict[str, Any] = {"study": str(study.path), "name": study.name, "procedure": study.spec["procedure"],
                           "status": study.record.get("status"), "cases": {}}
    figures, limits = study.main_figures(), _thresholds(study)
    for case in study.cases:
        rows = study.rows_of(case)
        ok = [r for r in rows if r.get("status") == "finished"]
        errors: dict[str, int] = {}
        for r in rows:
            if r.get("status") == "failed":
                key = str(r.get("error")).split(":")[0]
                errors[key] = errors.get(key, 0) + 1
        entry: dict[str, Any] = {"jobs": len(rows), "finished": len(ok), "failed": len(rows) - len(ok),
                                 "errors": errors, "figures": {}, "by_parameter": {}}
        for f in figures:
            values = [v for v in (_num(r.get(f)) for r in ok) if v is not None]
            stats = _stats(values)
            stats["unit"] = unit_of(f, study.units)
            if f in limits:
                reached = sum(v >= limits[f] for v in values)
                stats["threshold"] = {"at_least": limits[f], "jobs": reached, "of": len(rows),
                                      "fraction": reached / len(rows) if rows else None}
            entry["figures"][f] = stats
        for p in study.swept(case):
            groups = _groups(rows, p)
            if len(groups) > MAX_GROUPS:
                continue
            entry["by_parameter"][p] = [
                {"value": value, "unit": unit_of(p, study.units), "jobs": len(g),
                 "failed": sum(r.get("status") != "finished" for r in g),
                 **{f: _stats([v for v in (_num(r.get(f)) for r in g if r.get("status") == "finished")
                               if v is not None]) for f in figures}}
                for value, g in groups]
        out["cases"][case] = entry
    return out


def _groups(rows: list[dict[str, Any]], param: str) -> list[tuple[Any, list[dict[str, Any]]]]:
    groups: dict[Any, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(r.get(param), []).append(r)
    return sorted(groups.items(), key=lambda kv: (_num(kv[0]) is None, _num(kv[0]) or 0.0, str(kv[0])))


def _format_axis(axis: Any, unit: str, values: Sequence[float], allow_log: bool = True) -> bool:
    """Log scale for positive values over more than a decade and a half; SI prefixes for SI units."""
    from matplotlib.ticker import EngFormatter, NullFormatter

    positive = [v for v in values if v > 0]
    log = allow_log and len(positive) == len(values) and len(values) > 1 and max(positive) / min(positive) >= 30
    if log and axis.axis_name == "x":
        axis.axes.set_xscale("log")
    elif log:
        axis.axes.set_yscale("log")
    if unit in SI_UNITS:
        axis.set_major_formatter(EngFormatter(unit=unit))
        axis.set_minor_formatter(NullFormatter())
    return log


def _title(study: Study, case: str, rows: list[dict[str, Any]], what: str) -> str:
    failed = sum(r.get("status") != "finished" for r in rows)
    head = f"{study.name}" + (f" / {case}" if case else "")
    return (textwrap.fill(f"{head}: {what}", 75) + f"\n{len(rows)} jobs, {failed} failed"
            + (" (crosses)" if failed else ""))


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def draw(study: Study, out_dir: Path) -> list[Path]:
    """Every plot of the study as PNG in ``out_dir``; returns the files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    out_dir.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    figures, limits = study.main_figures(), _thresholds(study)
    for case in study.cases:
        rows = study.rows_of(case)
        ok = [r for r in rows if r.get("status") == "finished"]
        prefix = _safe(case) + "-" if case else ""
        for f in figures:
            values = [v for v in (_num(r.get(f)) for r in ok) if v is not None]
            if len(values) >= 2:
                fig, ax = plt.subplots(figsize=(6.4, 4.4))
                ax.hist(values, bins=min(30, max(5, int(2 * math.sqrt(len(values))))), color="tab:blue",
                        edgecolor="white")
                if f in limits:
                    reached = sum(v >= limits[f] for v in values)
                    ax.axvline(limits[f], color="tab:red", ls="--",
                               label=f">= {limits[f]:g} {unit_of(f, study.units)}: {reached} of {len(rows)} jobs "
                                     f"({100 * reached / len(rows):.0f} %)")
                    ax.legend(loc="upper left", fontsize=8)
                ax.set_xlabel(label(f, study.units))
                ax.set_ylabel("jobs [count]")
                ax.yaxis.set_major_locator(MaxNLocator(integer=True))
                _format_axis(ax.xaxis, unit_of(f, study.units), values, allow_log=False)
                ax.set_title(_title(study, case, rows, f"histogram of {f}"), fontsize=9)
                files.append(_save(fig, out_dir / f"{prefix}hist-{_safe(f)}.png"))
            for p in study.swept(case):
                files += _scatter(study, case, rows, p, f, out_dir / f"{prefix}{_safe(f)}-vs-{_safe(p)}.png")
    for i, plot in enumerate(study.spec.get("report", {}).get("plots") or []):
        path = _overlay(study, plot, out_dir / f"plot{i}-{_safe(plot.get('name', str(plot.get('y'))))}.png")
        if path is not None:
            files.append(path)
    return files


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _scatter(study: Study, case: str, rows: list[dict[str, Any]], param: str, fig_name: str, path: Path
             ) -> list[Path]:
    import matplotlib.pyplot as plt

    groups = _groups(rows, param)
    numeric = all(_num(v) is not None for v, _ in groups)
    pos = {v: (_num(v) if numeric else i) for i, (v, _) in enumerate(groups)}
    points = [(pos[r.get(param)], _num(r.get(fig_name))) for r in rows if r.get("status") == "finished"]
    points = [(x, y) for x, y in points if y is not None]
    if not points:
        return []
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    ax.scatter([x for x, _ in points], [y for _, y in points], s=14, alpha=0.5, color="tab:blue", label="job")
    means = []
    for value, g in groups:
        ys = [y for y in (_num(r.get(fig_name)) for r in g if r.get("status") == "finished") if y is not None]
        if len(ys) > 1:
            means.append((pos[value], statistics.fmean(ys), statistics.stdev(ys)))
    if means:
        ax.errorbar([m[0] for m in means], [m[1] for m in means], yerr=[m[2] for m in means], color="black",
                    marker="o", ms=4, capsize=3, lw=1, label="mean ± std")
    failed = [pos[r.get(param)] for r in rows if r.get("status") != "finished"]
    if failed:      # at the bottom edge of the plot, at their parameter value
        ax.scatter(failed, [0.03] * len(failed), marker="x", color="tab:red", s=40, label=f"failed ({len(failed)})",
                   transform=ax.get_xaxis_transform(), clip_on=False, zorder=3)
        ax.update_datalim([(x, points[0][1]) for x in failed], updatey=False)
        ax.autoscale_view()
    if numeric:
        _format_axis(ax.xaxis, unit_of(param, study.units), [pos[v] for v, _ in groups])
    else:
        ax.set_xticks(range(len(groups)), [str(v) for v, _ in groups], rotation=30, ha="right", fontsize=8)
    _format_axis(ax.yaxis, unit_of(fig_name, study.units), [y for _, y in points], allow_log=False)
    ax.set_xlabel(label(param, study.units))
    ax.set_ylabel(label(fig_name, study.units))
    ax.legend(fontsize=8)
    ax.set_title(_title(study, case, rows, f"{fig_name} vs {param}"), fontsize=9)
    return [_save(fig, path)]


def _overlay(study: Study, plot: Mapping[str, Any], path: Path) -> Path | None:
    """A plot the spec asks for: ``y`` against ``x`` (a name, or a list whose first present name each row uses),
    one colour per case, each case's per-x means joined."""
    import matplotlib.pyplot as plt

    xs = plot.get("x")
    x_names = [xs] if isinstance(xs, str) else list(xs or [])
    y = plot.get("y")
    if not x_names or not isinstance(y, str):
        return None
    fig, ax = plt.subplots(figsize=(7.0, 4.8))
    all_x: list[float] = []
    for case in study.cases:
        pts = []
        for r in study.rows_of(case):
            if r.get("status") != "finished":
                continue
            x = next((_num(r.get(n)) for n in x_names if _num(r.get(n)) is not None), None)
            yv = _num(r.get(y))
            if x is not None and yv is not None:
                pts.append((x, yv))
        if not pts:
            continue
        used = next(n for n in x_names if any(_num(r.get(n)) is not None for r in study.rows_of(case)))
        failed = sum(r.get("status") != "finished" for r in study.rows_of(case))
        line = ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=14, alpha=0.45,
                          label=f"{case or study.name} (x: {used})" + (f"; {failed} failed, not shown" if failed
                                                                       else ""))
        by_x: dict[float, list[float]] = {}
        for x, yv in pts:
            by_x.setdefault(x, []).append(yv)
        if len(by_x) < len(pts):     # repeated x values: join the means
            keys = sorted(by_x)
            ax.plot(keys, [statistics.fmean(by_x[k]) for k in keys], color=line.get_facecolor()[0][:3], lw=1.2)
        all_x += [p[0] for p in pts]
    if not all_x:
        plt.close(fig)
        return None
    units = {unit_of(n, study.units) for n in x_names}
    unit = units.pop() if len(units) == 1 else "mixed"
    if plot.get("xlog", False):
        ax.set_xscale("symlog", linthresh=float(plot.get("linthresh", 1e-3)))
    ax.set_xlabel(textwrap.fill(str(plot.get("xlabel") or " or ".join(x_names)) + f" [{unit}]", 90), fontsize=9)
    ax.set_ylabel(label(y, study.units))
    ax.set_title(textwrap.fill(str(plot.get("title") or f"{study.name}: {y} vs {' / '.join(x_names)}"), 80),
                 fontsize=9)
    ax.legend(fontsize=7)
    return _save(fig, path)


def markdown(summary_: Mapping[str, Any]) -> str:
    """The summary as Markdown tables (one per case and swept parameter)."""
    lines = [f"# study {summary_['name']} ({summary_['procedure']}), {summary_['status']}", ""]
    for case, entry in summary_["cases"].items():
        lines.append(f"## {case or 'all jobs'}: {entry['jobs']} jobs, {entry['failed']} failed"
                     + (f" ({', '.join(f'{k} x{v}' for k, v in entry['errors'].items())})" if entry["errors"] else ""))
        lines.append("")
        lines.append("| figure | unit | n | mean | std | min | max | threshold |")
        lines.append("|---|---|---|---|---|---|---|---|")
        for f, s in entry["figures"].items():
            if not s.get("n"):
                continue
            th = s.get("threshold")
            th_text = f">= {th['at_least']:g}: {th['jobs']} of {th['of']}" if th else ""
            lines.append(f"| {f} | {s['unit']} | {s['n']} | {s['mean']:.4g} | {s['std']:.3g} | {s['min']:.4g} | "
                         f"{s['max']:.4g} | {th_text} |")
        for p, groups in entry["by_parameter"].items():
            figs = list(entry["figures"])
            lines += ["", f"| {p} [{groups[0]['unit'] if groups else ''}] | jobs | failed | "
                      + " | ".join(f"{f} mean ± std" for f in figs) + " |",
                      "|---|---|---|" + "---|" * len(figs)]
            for g in groups:
                cells = [f"{g[f]['mean']:.4g} ± {g[f]['std']:.2g}" if g[f].get("n") else "" for f in figs]
                lines.append(f"| {g['value']} | {g['jobs']} | {g['failed']} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def report_study(path: str | Path, out_dir: str | Path | None = None) -> dict[str, Any]:
    """Draw the study and write its summary (``summary.json``, ``summary.md``); returns the summary with files."""
    study = load_study(path)
    out = Path(out_dir) if out_dir is not None else study.path / "report"
    files = draw(study, out)
    result = summary(study)
    result["plots"] = [str(f) for f in files]
    atomic_write_json(out / "summary.json", result)
    (out / "summary.md").write_text(markdown(result) + "\n")
    result["summary_md"] = str(out / "summary.md")
    return result
