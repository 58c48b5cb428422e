"""The runs in a data folder, newest first (``labctl runs``), and one run found by id, folder or prefix."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from labctl.runs.record import RUN_FILE, RunRecordError, data_dir, read_record

log = logging.getLogger(__name__)


def list_runs(root: str | os.PathLike[str] | None = None) -> list[dict[str, Any]]:
    """Every readable ``run.json`` directly under the data folder (and one level below, for runs made inside a
    dry run's folder), newest first; each record gains ``path``."""
    base = data_dir(root)
    if not base.is_dir():
        return []
    out = []
    for file in list(base.glob(f"*/{RUN_FILE}")):
        try:
            rec = read_record(file.parent)
        except RunRecordError as exc:
            log.warning("%s: unreadable (%s)", file, exc)
            continue
        rec["path"] = str(file.parent)
        out.append(rec)
    out.sort(key=lambda r: str(r.get("created") or ""), reverse=True)
    return out


def find_run(value: str, root: str | os.PathLike[str] | None = None) -> Path:
    """A run folder: a path, or a run id (or unique prefix, or 'latest') in the data folder."""
    path = Path(value)
    if (path / RUN_FILE).is_file():
        return path
    runs = list_runs(root)
    if value == "latest" and runs:
        return Path(runs[0]["path"])
    hits = [r for r in runs if str(r.get("id", "")).startswith(value)]
    if len(hits) == 1:
        return Path(hits[0]["path"])
    if len(hits) > 1:
        raise ValueError(f"RUN: {value!r} matches {len(hits)} runs in {data_dir(root)}: "
                         + ", ".join(str(r['id']) for r in hits[:5]))
    raise ValueError(f"RUN: {value!r} is neither a run folder nor a run id in {data_dir(root)}")
