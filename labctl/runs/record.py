"""Run folders: a ``run.json`` kept current while the run goes, and checkpoints beside it.

A training run on a bench can last hours and die in the middle (instrument fault, Ctrl-C, power). So the record is
written as the run goes, every write atomic (temporary file, fsync, ``os.replace``): whatever happens, ``run.json``
is a complete JSON document with the run's status, and the checkpoint it names exists. ``resume(run_dir)`` picks
the run up from its latest checkpoint.

Layout, under the data directory (argument, else ``$LABCTL_DATA``, else ``./runs``)::

    <data>/<kind>-<YYYYmmdd-HHMMSS>-<6 hex>/
        run.json                     parameters, code version, seeds, dataset provenance, bench identity,
                                     history, status, checkpoints
        ckpt-<tag>.npz               arrays + a JSON ``__meta__`` entry (no pickles)

``run.json`` keys: ``schema``, ``id``, ``kind``, ``status`` (running / finished / failed / interrupted),
``created``, ``updated``, ``params``, ``seeds``, ``code`` (labctl version, git commit and dirty flag when
available), ``environment``, ``dataset`` (provenance with file hashes), ``hardware`` (bench file hash, instrument
identities, calibration hash, when given), ``history`` (one dict per epoch), ``checkpoints``, ``error``,
``resumes``.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
import logging
import math
import os
import platform
import subprocess
import tempfile
import traceback
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import numpy as np

import labctl

log = logging.getLogger(__name__)

SCHEMA = 1
RUN_FILE = "run.json"
META_KEY = "__meta__"
STATUSES = ("running", "finished", "failed", "interrupted", "paused")


class RunRecordError(ValueError):
    """A run.json that cannot be read or does not hold what a run record holds; one line naming file and key."""


_NUM = (int, float)
#: What each top-level key of run.json holds (when present): the types ``labctl show``, ``report`` and ``--resume``
#: rely on. A list of (key, types) for entries of list-valued keys.
_RECORD_TYPES: dict[str, tuple[type, ...]] = {
    "schema": (int,), "id": (str,), "kind": (str,), "procedure": (str,), "status": (str,), "created": (str,),
    "updated": (str, type(None)), "command": (str,), "params": (dict,), "seeds": (dict,), "code": (dict,),
    "environment": (dict,), "dataset": (dict,), "hardware": (dict, type(None)), "history": (list,),
    "checkpoints": (list,), "error": (dict, type(None)), "resumes": (list,), "bench": (dict, type(None)),
    "instruments": (dict, type(None)), "artifacts": (list,), "notes": (dict,), "result": (dict, type(None)),
    "segments": (list,), "data_file": (str,), "parameters": (dict,),
}
_ENTRY_TYPES: dict[str, dict[str, tuple[type, ...]]] = {
    "history": {"epoch": (int,), "train_loss": _NUM + (type(None),), "test_accuracy": _NUM + (type(None),)},
    "checkpoints": {"file": (str,)},
    "artifacts": {"kind": (str,), "path": (str,)},
    "segments": {"wall_s": _NUM + (type(None),), "bench_s": _NUM + (type(None),)},
    "resumes": {},
}
_REQUIRED_ENTRY_KEYS = {"checkpoints": ("file",), "artifacts": ("kind", "path"), "history": ("epoch",)}


def _type_names(types: tuple[type, ...]) -> str:
    names = {int: "an integer", float: "a number", str: "a string", dict: "a table", list: "a list",
             type(None): "null"}
    return " or ".join(dict.fromkeys(names[t] for t in types))


def check_record(record: Any, where: str) -> dict[str, Any]:
    """``record`` if it is a run record labctl can read; :class:`RunRecordError` naming ``where`` and the key."""
    if not isinstance(record, dict):
        raise RunRecordError(f"{where}: not a run record (top level is {type(record).__name__}, not a table)")
    if record.get("schema", SCHEMA) != SCHEMA:
        raise RunRecordError(f"{where}: schema: {record.get('schema')!r}, this labctl reads {SCHEMA}")
    for key, types in _RECORD_TYPES.items():
        value = record.get(key, types[0]() if types[0] is not type(None) else None)
        if key in record and (not isinstance(value, types) or isinstance(value, bool)):
            raise RunRecordError(f"{where}: {key}: expected {_type_names(types)}, got {value!r:.60}")
    if "status" in record and record["status"] not in STATUSES:
        raise RunRecordError(f"{where}: status: {record['status']!r:.60} is not one of {', '.join(STATUSES)}")
    for key, fields in _ENTRY_TYPES.items():
        for i, entry in enumerate(record.get(key) or []):
            if not isinstance(entry, dict):
                raise RunRecordError(f"{where}: {key}[{i}]: expected a table, got {entry!r:.60}")
            for name in _REQUIRED_ENTRY_KEYS.get(key, ()):
                if name not in entry:
                    raise RunRecordError(f"{where}: {key}[{i}].{name}: missing")
            for name, types in fields.items():
                if name in entry and (not isinstance(entry[name], types) or isinstance(entry[name], bool)):
                    raise RunRecordError(f"{where}: {key}[{i}].{name}: expected {_type_names(types)}, got "
                                         f"{entry[name]!r:.60}")
    for key in ("checkpoints", "artifacts"):
        for i, entry in enumerate(record.get(key) or []):
            name = entry.get("file" if key == "checkpoints" else "path")
            if key == "checkpoints" and (not name or "/" in name or "\x00" in name or name in (".", "..")):
                raise RunRecordError(f"{where}: checkpoints[{i}].file: {name!r:.60} is not a file name in the run "
                                     "folder")
    return record


def read_record(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The run.json of a run folder, checked (:func:`check_record`); one-line :class:`RunRecordError` otherwise."""
    file = Path(run_dir) / RUN_FILE
    try:
        text = file.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise RunRecordError(f"{Path(run_dir)}: no {RUN_FILE}; not a run folder") from None
    except OSError as exc:
        raise RunRecordError(f"{file}: cannot read ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise RunRecordError(f"{file}: not a text file (byte {exc.start} is not UTF-8); damaged") from None
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RunRecordError(f"{file}: not valid JSON ({exc}); the file is damaged") from None
    return check_record(record, str(file))


def data_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """Where run folders go: the argument, else ``$LABCTL_DATA``, else ``./runs``."""
    if explicit is not None:
        return Path(explicit)
    env = os.environ.get("LABCTL_DATA")
    return Path(env) if env else Path("runs")


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).astimezone().isoformat(timespec="seconds")


def sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def code_version() -> dict[str, Any]:
    """labctl's version and, when the package sits in a git work tree, its commit and whether it is dirty."""
    info: dict[str, Any] = {"labctl": labctl.__version__, "git_commit": None, "git_dirty": None}
    where = Path(labctl.__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True,
                                timeout=10, check=False)
        if commit.returncode == 0:
            info["git_commit"] = commit.stdout.strip()
            status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=where,
                                    capture_output=True, text=True, timeout=10, check=False)
            if status.returncode == 0:
                info["git_dirty"] = bool(status.stdout.strip())
    except (OSError, subprocess.SubprocessError) as exc:
        log.debug("no git information: %s", exc)
    return info


def blas_threads() -> dict[str, int] | None:
    """BLAS libraries and their thread counts: float results (so bit-identical resume) depend on them."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    return {f"{i.get('internal_api')}:{Path(str(i.get('filepath'))).name}": int(i.get("num_threads", 0))
            for i in threadpool_info() if i.get("user_api") == "blas"}


def _jsonable(obj: Any) -> Any:
    """Plain JSON types; numpy scalars unwrapped, non-finite floats as None so every JSON reader accepts it."""
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        # whole arrays at once where no element needs a look (a photonic checkpoint holds thousands of numbers)
        if obj.dtype.kind in "biu" or (obj.dtype.kind == "f" and bool(np.isfinite(obj).all())):
            return obj.tolist()
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return _jsonable(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    _atomic_write_bytes(Path(path), (json.dumps(_jsonable(obj), indent=1) + "\n").encode())


@dataclass
class Checkpoint:
    """Arrays (weights, optimizer buffers, ...) and JSON-able metadata (position, RNG states, history)."""

    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def save(self, path: str | os.PathLike[str]) -> None:
        if META_KEY in self.arrays:
            raise ValueError(f"array name {META_KEY!r} is reserved")
        buf = io.BytesIO()
        payload: dict[str, Any] = {**self.arrays, META_KEY: np.array(json.dumps(_jsonable(self.meta)))}
        np.savez(buf, **payload)
        _atomic_write_bytes(Path(path), buf.getvalue())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Checkpoint:
        """A checkpoint file; a damaged one raises ValueError naming the file (never half a state)."""
        import zipfile

        try:
            with np.load(path, allow_pickle=False) as npz:
                if META_KEY not in npz.files:
                    raise ValueError(f"{path}: not a labctl checkpoint (no {META_KEY})")
                meta = json.loads(str(npz[META_KEY]))
                arrays = {k: npz[k] for k in npz.files if k != META_KEY}
        except (OSError, EOFError, zipfile.BadZipFile, KeyError, ValueError) as exc:  # incl. pickled/garbled entries
            raise ValueError(f"{path}: damaged checkpoint ({type(exc).__name__}: {exc})") from None
        if not isinstance(meta, dict):
            raise ValueError(f"{path}: damaged checkpoint (metadata is not a table)")
        return cls(arrays=arrays, meta=meta)


class Run:
    """One run folder; every change to the record is written to ``run.json`` at once, atomically."""

    def __init__(self, path: Path, record: dict[str, Any]) -> None:
        self.path = path
        self.record = record

    # ------------------------------------------------------------------------------------------ creation --
    @classmethod
    def create(cls, kind: str, params: Mapping[str, Any], *, root: str | os.PathLike[str] | None = None,
               seeds: Mapping[str, Any] | None = None, dataset: Mapping[str, Any] | None = None,
               bench_file: str | os.PathLike[str] | None = None, instruments: Mapping[str, str] | None = None,
               calibration: str | os.PathLike[str] | None = None) -> Run:
        """A new run folder under ``root`` (see :func:`data_dir`), status ``running``.

        ``calibration`` is a file (hashed) or a hash string; ``instruments`` maps names to identity strings.
        """
        root_dir = data_dir(root)
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        safe_kind = "".join(c if c.isalnum() or c in "-_." else "_" for c in kind) or "run"
        path = root_dir / f"{safe_kind}-{stamp}-{uuid.uuid4().hex[:6]}"
        path.mkdir(parents=True, exist_ok=False)
        hardware: dict[str, Any] = {}
        if bench_file is not None:
            hardware["bench_file"] = {"path": str(Path(bench_file).resolve()), "sha256": sha256_file(bench_file)}
        if instruments:
            hardware["instruments"] = dict(instruments)
        if calibration is not None:
            cal = Path(calibration)
            hardware["calibration"] = ({"path": str(cal.resolve()), "sha256": sha256_file(cal)} if cal.is_file()
                                       else {"sha256": str(calibration)})
        record: dict[str, Any] = {
            "schema": SCHEMA, "id": path.name, "kind": kind, "status": "running", "created": _now(),
            "updated": None, "params": dict(params), "seeds": dict(seeds or {}), "code": code_version(),
            "environment": {"python": platform.python_version(), "numpy": np.__version__,
                            "host": platform.node(), "pid": os.getpid(), "blas_threads": blas_threads()},
            "dataset": dict(dataset or {}), "hardware": hardware or None, "history": [], "checkpoints": [],
            "error": None, "resumes": [],
        }
        run = cls(path, record)
        run.write()
        log.info("run %s started in %s", kind, path)
        return run

    @classmethod
    def open(cls, run_dir: str | os.PathLike[str]) -> Run:
        path = Path(run_dir)
        if not (path / RUN_FILE).is_file():
            raise FileNotFoundError(f"{path}: no {RUN_FILE}; not a run folder")
        return cls(path, read_record(path))

    # ------------------------------------------------------------------------------------------ updates --
    @property
    def status(self) -> str:
        return str(self.record["status"])

    @property
    def history(self) -> list[dict[str, Any]]:
        return list(self.record["history"])

    def write(self) -> None:
        self.record["updated"] = _now()
        atomic_write_json(self.path / RUN_FILE, self.record)

    def update(self, **fields: Any) -> None:
        self.record.update(fields)
        self.write()

    def add_epoch(self, entry: Mapping[str, Any]) -> None:
        self.record["history"].append(dict(entry))
        self.write()

    def set_history(self, history: list[dict[str, Any]]) -> None:
        self.record["history"] = [dict(h) for h in history]
        self.write()

    def save_checkpoint(self, checkpoint: Checkpoint, tag: str, *, keep: int = 2) -> Path:
        """Write ``ckpt-<tag>.npz`` atomically, name it in run.json, then drop all but the ``keep`` newest."""
        file = self.path / f"ckpt-{tag}.npz"
        checkpoint.save(file)
        entries = [c for c in self.record["checkpoints"] if c["file"] != file.name]
        entries.append({"file": file.name, "time": _now(), "position": checkpoint.meta.get("position")})
        stale = entries[:-keep] if keep > 0 else []
        self.record["checkpoints"] = entries[-keep:] if keep > 0 else entries
        self.write()
        for old in stale:  # only after run.json names the new one
            try:
                (self.path / old["file"]).unlink()
            except FileNotFoundError:
                pass
        return file

    def latest_checkpoint_path(self) -> Path | None:
        for entry in reversed(self.record["checkpoints"]):
            candidate = self.path / entry["file"]
            if candidate.is_file():
                return candidate
            log.warning("%s: checkpoint %s named in run.json is missing", self.path, entry["file"])
        return None

    def finish(self, status: str, error: BaseException | None = None) -> None:
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}")
        self.record["status"] = status
        if error is not None:
            self.record["error"] = {
                "type": type(error).__name__, "message": str(error),
                "traceback": "".join(traceback.format_exception(type(error), error, error.__traceback__))[-8000:],
            }
        self.write()
        log.info("run %s %s", self.path.name, status)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc is None:
            self.finish("finished")
        elif isinstance(exc, KeyboardInterrupt | SystemExit):  # Ctrl-C, or SIGTERM via the bench guard
            self.finish("interrupted", exc)
        else:
            self.finish("failed", exc)


def resume(run_dir: str | os.PathLike[str]) -> tuple[Run, Checkpoint]:
    """Open a run folder, load its latest checkpoint and mark the run ``running`` again (noting the resume)."""
    run = Run.open(run_dir)
    path = run.latest_checkpoint_path()
    if path is None:
        raise FileNotFoundError(f"{run.path}: run has no checkpoint to resume from (status {run.status})")
    checkpoint = Checkpoint.load(path)
    before, now = run.record.get("environment", {}).get("blas_threads"), blas_threads()
    if before is not None and now is not None and before != now:
        log.warning("%s: BLAS threads were %s, now %s: the resumed run will not be bit-identical to an "
                    "uninterrupted one", run.path, before, now)
    run.record["resumes"].append({"time": _now(), "checkpoint": path.name, "previous_status": run.status,
                                  "previous_error": run.record.get("error"), "code": code_version(),
                                  "blas_threads": now})
    run.record["status"] = "running"
    run.record["error"] = None
    run.write()
    log.info("resuming %s from %s", run.path, path.name)
    return run, checkpoint


def _duration(rec: dict[str, Any], key: str) -> float | None:
    vals = [s.get(key) for s in rec.get("segments") or [] if s.get(key) is not None]
    return float(sum(vals)) if vals else None


def run_row(rec: dict[str, Any]) -> dict[str, Any]:
    """One line of ``labctl runs``: id, procedure, status, start, bench, wall and bench time (summed over the
    run's segments), folder."""
    return {"id": rec.get("id"), "procedure": rec.get("procedure") or rec.get("kind"), "status": rec.get("status"),
            "created": rec.get("created"), "bench": (rec.get("bench") or {}).get("name"),
            "wall_s": _duration(rec, "wall_s"), "bench_s": _duration(rec, "bench_s"), "path": rec.get("path")}
