"""The study's table: one row per job (parameters, outcome, figures, run folder), as CSV and, with pyarrow, Parquet.

Columns: ``job``, ``index``, ``case``, ``status`` (finished / failed), ``error``, ``run`` (the job's run folder,
relative to the study folder), ``wall_s``, ``started``/``ended`` (Unix time on the worker), ``worker``
(host:pid), then the parameters under their dotted names (``chip.seed``, ``experiment.noise_std``), then the
figures (plain names: ``true_bits``, ``test_accuracy_pct``). Units: ``labctl.study.units`` and the study's run.json.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from labctl.runs.record import _atomic_write_bytes

CSV_FILE = "results.csv"
PARQUET_FILE = "results.parquet"
FIXED_COLUMNS = ("job", "index", "case", "status", "error", "run", "wall_s", "started", "ended", "worker")


def flat_rows(rows: Iterable[Mapping[str, Any]]) -> tuple[list[dict[str, Any]], list[str], list[str]]:
    """Job rows (``params`` and ``figures`` nested) to flat dicts; the parameter and the figure columns."""
    flat, params, figures = [], {}, {}
    for row in sorted(rows, key=lambda r: r["index"]):
        entry = {k: row.get(k) for k in FIXED_COLUMNS}
        for k, v in row.get("params", {}).items():
            params.setdefault(k, None)
            entry[k] = v
        for k, v in (row.get("figures") or {}).items():
            figures.setdefault(k, None)
            entry[k] = v
        flat.append(entry)
    return flat, list(params), [f for f in figures if f not in params]


def _cell(value: Any) -> Any:
    if isinstance(value, list | tuple | dict):
        return json.dumps(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_tables(study_dir: Path, rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Write ``results.csv`` (always) and ``results.parquet`` (when pyarrow is installed), atomically; returns
    the files and the parameter and figure column names (kept in the study's run.json)."""
    flat, params, figures = flat_rows(rows)
    columns = list(FIXED_COLUMNS) + params + figures
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for entry in flat:
        writer.writerow({k: _cell(entry.get(k)) for k in columns})
    _atomic_write_bytes(study_dir / CSV_FILE, buf.getvalue().encode())
    written: dict[str, Any] = {"csv": str(study_dir / CSV_FILE), "params": params, "figures": figures}
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return written
    data = {}
    for col in columns:
        values = [_cell(e.get(col)) for e in flat]
        present = [v for v in values if v is not None]
        if present and all(isinstance(v, int | float) and not isinstance(v, bool) for v in present) \
                and any(isinstance(v, float) for v in present):
            values = [None if v is None else float(v) for v in values]     # one numeric type per column
        elif present and len({type(v) for v in present}) > 1:
            values = [None if v is None else str(v) for v in values]
        data[col] = values
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table(data), sink)
    _atomic_write_bytes(study_dir / PARQUET_FILE, sink.getvalue().to_pybytes())
    written["parquet"] = str(study_dir / PARQUET_FILE)
    return written


def _parse(text: str) -> Any:
    if text == "":
        return None
    if text in ("True", "False"):
        return text == "True"
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def read_table(path: Path) -> list[dict[str, Any]]:
    """The CSV table back as typed rows (numbers as int/float, empty cells as None)."""
    with open(path, newline="") as f:
        return [{k: _parse(v) for k, v in row.items()} for row in csv.DictReader(f)]
