"""``labctl report RUN``: the run's figures (PNG) and a one-page HTML summary, from ``run.json`` and ``data.h5``.

The report finds the data wherever a plan put it (a dry run holds a calibration, a verification and three
trainings under their own groups) and draws what there is: spectra with the located resonances, heater tuning and
the crosstalk map, weight curves, the verification error histogram with accuracy and precision bits, training
curves with the hardware counters, and projected against minimum bench time.
"""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from labctl.runs import figures
from labctl.runs.datafile import DATA_FILE, open_h5
from labctl.runs.record import read_record

log = logging.getLogger(__name__)


@dataclass
class Report:
    html: Path
    figures: list[Path] = field(default_factory=list)


def _groups(h5: Any) -> dict[str, dict[str, np.ndarray]]:
    """Every group that holds datasets, as {path: {name: array}}."""
    import h5py

    out: dict[str, dict[str, np.ndarray]] = {}

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset):
            parent, _, leaf = name.rpartition("/")
            out.setdefault(parent, {})[leaf] = obj[()]
    h5.visititems(visit)
    return out


def _find(groups: dict[str, dict[str, np.ndarray]], leaf: str) -> list[str]:
    return sorted(g for g in groups if g == leaf or g.endswith("/" + leaf))


def _sibling(groups: dict[str, dict[str, np.ndarray]], path: str, name: str) -> str:
    prefix = path.rpartition("/")[0]
    return f"{prefix}/{name}" if prefix else name


def _span(rec: dict[str, Any], groups: dict[str, dict[str, np.ndarray]], path: str) -> float | None:
    result = rec.get("result") or {}
    for src in (result, result.get("verification") or {}):
        if isinstance(src.get("span"), int | float):
            return float(src["span"])
    models = groups.get(_sibling(groups, path, "models"), {})
    if "w_min" in models:
        return float(np.median(models["w_max"] - models["w_min"]))
    return None


def write_report(run_dir: str | Path, out: Path | None = None) -> Report:
    """Write ``RUN/report/index.html`` and its figures; returns their paths."""

    run_dir = Path(run_dir)
    rec = read_record(run_dir)
    folder = out or run_dir / "report"
    folder.mkdir(parents=True, exist_ok=True)
    data_path = run_dir / (rec.get("data_file") or DATA_FILE)
    groups: dict[str, dict[str, np.ndarray]] = {}
    if data_path.is_file():
        with open_h5(data_path, "r") as h5:
            try:
                groups = _groups(h5)
            except (RuntimeError, KeyError, ValueError) as exc:   # a damaged file opens, then fails inside
                raise OSError(f"{data_path}: damaged HDF5 data file ({exc})") from None
    sections: list[tuple[str, str, Path]] = []
    extra: dict[str, Any] = {}

    def add(name: str, made: tuple[str, str] | None) -> None:
        if made is not None:
            sections.append((made[0], made[1], folder / name))

    for path in _find(groups, "resonance_map")[:1]:
        truth = groups.get(_sibling(groups, path, "truth"), {}).get("center_m")
        add("spectra.png", figures.spectra(groups[path], truth, folder / "spectra.png",
                                           bench=(rec.get("bench") or {}).get("name")))
    for path in _find(groups, "heater_steps")[:1]:
        cross = groups.get(_sibling(groups, path, "models"), {}).get("crosstalk")
        unit = "A" if (rec.get("notes") or {}).get("heater_unit") == "A" else _drive_unit(rec)
        add("heaters.png", figures.heaters(groups[path], cross, unit, folder / "heaters.png"))
    for path in _find(groups, "weight_sweeps")[:1]:
        n_rings = _n_rings(groups, path)
        unit = "A" if (rec.get("notes") or {}).get("heater_unit") == "A" else _drive_unit(rec)
        add("weights.png", figures.weights(groups[path], n_rings, folder / "weights.png", unit))
    for path in _find(groups, "verification")[:1]:
        span = _span(rec, groups, path)
        truth_rows = groups.get(_sibling(groups, path, "verification_truth"), {}).get("true_weights")
        truth = None if truth_rows is None else np.asarray(truth_rows)[0]
        if span is not None:
            result = rec.get("result") or {}
            reported = next((src for src in (result, result.get("verification") or {})
                             if isinstance(src, dict) and isinstance(src.get("bits"), int | float)), None)
            made, stats = figures.verification(groups[path], truth, span, folder / "verification.png",
                                               reported=reported)
            extra["verification"] = stats
            add("verification.png", made)
    trainings = {}
    for path in _find(groups, "training/batches") + _find(groups, "training/epochs"):
        base = path.rpartition("/")[0]
        name = base.rpartition("/")[0] or rec.get("procedure") or "train"
        trainings.setdefault(name, {})[path.rpartition("/")[2]] = groups[path]
    if trainings:
        add("training.png", figures.training(trainings, folder / "training.png"))
    rows = _bench_rows(rec, trainings)
    if rows:
        add("bench_time.png", figures.bench_time(rows, folder / "bench_time.png"))
    page = folder / "index.html"
    page.write_text(_html(rec, run_dir, sections, extra, folder))
    log.info("report of %s in %s", run_dir, folder)
    return Report(page, [p for _, _, p in sections])


def _drive_unit(rec: dict[str, Any]) -> str:
    snap = ((rec.get("instruments") or {}).get("start") or {}).get("_safety") or {}
    return str(snap.get("heater_unit", "V"))


def _n_rings(groups: dict[str, dict[str, np.ndarray]], path: str) -> int:
    models = groups.get(_sibling(groups, path, "models"), {})
    if "center_m" in models:
        return int(np.shape(models["center_m"])[1])
    drive = groups[path]["drive"]
    weight = groups[path]["weight"]
    return int(drive.shape[-1] // weight.shape[-1])


def _bench_rows(rec: dict[str, Any], trainings: dict[str, dict[str, dict[str, np.ndarray]]]
                ) -> list[tuple[str, float, float | None, float | None]]:
    rows: list[tuple[str, float, float | None, float | None]] = []
    result = rec.get("result") or {}
    cal = result if result.get("procedure") in ("calibrate", "recalibrate") else result.get("calibration") or {}
    if isinstance(cal, dict) and isinstance(cal.get("projected_time_s"), int | float):
        naive = (cal.get("naive_full_grid") or {}).get("elapsed_s")
        rows.append(("calibration", float(cal["projected_time_s"]), None, naive))
    for name, parts in trainings.items():
        e = parts.get("epochs", {})
        if "hw_projected_time_s" in e and np.sum(e["hw_projected_time_s"]) > 0:
            rows.append((f"training ({name})", float(np.sum(e["hw_projected_time_s"])),
                         float(np.sum(e["hw_minimum_time_s"])) if "hw_minimum_time_s" in e else None,
                         float(np.sum(e["hw_naive_time_s"])) if "hw_naive_time_s" in e else None))
    return rows


PARTS = ("calibration", "verification", "stack", "fast", "digital")
#: Result values a report lists: label and how to show the value.
RESULT_KEYS: dict[str, tuple[str, Any]] = {
    "span": ("weight span (median ring range, normalised weight units)", lambda v: f"{v:.3f}"),
    "bits": ("measured bits (log2 span / rms error)", lambda v: f"{v:.2f}"),
    "true_bits": ("true bits (against the emulator's ground truth)", lambda v: f"{v:.2f}"),
    "test_accuracy": ("test accuracy", lambda v: f"{100 * v:.2f} %"),
    "projected_time_s": ("projected bench time", lambda v: f"{v:.1f} s ({v / 3600:.2f} h)"),
    "transactions": ("instrument transactions", lambda v: f"{v:.0f}"),
}


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape(str(value))


def _html(rec: dict[str, Any], run_dir: Path, sections: list[tuple[str, str, Path]], extra: dict[str, Any],
          folder: Path) -> str:
    from labctl.runs.record import run_row
    from labctl.runs.engine import format_duration

    row = run_row(rec)
    bench = rec.get("bench") or {}
    result = rec.get("result") or {}
    facts = [("procedure", row["procedure"]), ("status", rec.get("status")), ("command", rec.get("command")),
             ("started", rec.get("created")),
             ("wall time", format_duration(row["wall_s"]) if row["wall_s"] is not None else "-"),
             ("bench time", (format_duration(row["bench_s"]) + (" (projected: emulated bench)"
                                                                if bench.get("kind") == "emulated" else ""))
              if row["bench_s"] is not None else "-"),
             ("bench", f"{bench.get('name')} ({bench.get('kind')}), sha256 {str(bench.get('sha256'))[:16]}..."
              if bench else "none (no instruments)"),
             ("code", f"labctl {(rec.get('code') or {}).get('labctl')}, git "
                      f"{str((rec.get('code') or {}).get('git_commit'))[:12]}")]
    for art in rec.get("artifacts") or []:
        facts.append((f"artifact ({art['kind']})", f"{art['path']} ({art.get('note', '')})"))
    results = []
    for part, sub in [("", result)] + [(f"{p}: ", result.get(p)) for p in PARTS]:
        if isinstance(sub, dict):
            for key, (label, show) in RESULT_KEYS.items():
                if isinstance(sub.get(key), int | float) and not isinstance(sub.get(key), bool):
                    results.append((part + label, show(sub[key])))
    if isinstance(result.get("accuracy_bits"), int | float) and isinstance(result.get("precision_bits"), int | float):
        results.append(("verification: accuracy / precision bits (verify's estimates: reading noise removed, "
                        "reference level included / repeated settings)",
                        f"{result['accuracy_bits']:.2f} / {result['precision_bits']:.2f}"))
    if result.get("expectation"):
        results.append(("note", result["expectation"]))
    rows_html = "\n".join(f"<tr><th>{html.escape(k)}</th><td>{_fmt(v)}</td></tr>" for k, v in facts)
    res_html = "\n".join(f"<tr><th>{html.escape(k)}</th><td>{_fmt(v)}</td></tr>" for k, v in results)
    figs = "\n".join(
        f'<figure><img src="{html.escape(p.relative_to(folder).as_posix())}" alt="{html.escape(t)}">'
        f"<figcaption><b>{html.escape(t)}.</b> {html.escape(c)}</figcaption></figure>" for t, c, p in sections)
    params = ", ".join(f"{k}={v}" for k, v in (rec.get("params") or {}).items())
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>labctl run {html.escape(str(rec.get('id')))}</title>
<style>
body {{ font-family: sans-serif; max-width: 1100px; margin: 1.5em auto; color: #222; }}
h1 {{ font-size: 1.4em; }} table {{ border-collapse: collapse; margin-bottom: 1em; font-size: 0.9em; }}
th {{ text-align: left; padding: 2px 12px 2px 0; vertical-align: top; color: #555; font-weight: normal; }}
td {{ padding: 2px 0; }} figure {{ margin: 1.2em 0; }} img {{ max-width: 100%; border: 1px solid #ddd; }}
figcaption {{ font-size: 0.85em; color: #444; }} .params {{ font-size: 0.8em; color: #666; }}
</style></head><body>
<h1>labctl run {html.escape(str(rec.get('id')))}: {html.escape(str(row['procedure']))}, {html.escape(str(rec.get('status')))}</h1>
<table>{rows_html}</table>
<table>{res_html}</table>
<p class="params">parameters: {html.escape(params)}</p>
{figs or '<p>No figures: this run recorded no spectra, sweeps, verification vectors or training.</p>'}
<p class="params">record: {html.escape(str(run_dir))}/run.json and {html.escape(rec.get('data_file') or DATA_FILE)}</p>
</body></html>
"""
