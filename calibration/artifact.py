"""The calibration file: one versioned, human-readable JSON document with a SHA-256 of its canonical content.

Layout (``FORMAT`` version ``VERSION``): readable metadata first (format, version, created, chip_id, bench and
wiring hashes, instrument identities, code version with the git commit when known, fit quality, timing), then
the models (resonance map, thermal model, weight model, drift reference), each a table of named fields whose
arrays are stored as ``{"dtype", "shape", "data"}`` with the flat data as a list. Floats are written with
Python's shortest round-trip repr, so a file loads back bit-exactly; NaN is stored as null and infinities as
the strings "inf"/"-inf" (strict JSON). ``sha256`` is the hash of the canonical JSON (sorted keys, no spaces)
of the document without that key, so reformatting the file does not change it but any edit of a value does.

Loading refuses, with the reason: unreadable JSON, another format or an unknown version, a hash mismatch, missing
keys, arrays whose shapes disagree with the bank (B, R, C, N), and a file made for another chip or another
wiring than the bench it is loaded for.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import logging
import math
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

FORMAT = "labctl.calibration"
VERSION = 1
REQUIRED = ("format", "version", "created", "chip_id", "bench_sha256", "wiring_sha256", "instruments",
            "code_version", "shape", "resonance_map", "thermal_model", "weight_model", "sha256")


class CalibrationFileError(ValueError):
    """A calibration file cannot be used; the message says why."""


# ---- values <-> JSON ---------------------------------------------------------------------------------------------
def _enc_float(x: float) -> float | str | None:
    if math.isnan(x):
        return None
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return x


def _dec_float(x: Any) -> float:
    if x is None:
        return math.nan
    if x == "inf":
        return math.inf
    if x == "-inf":
        return -math.inf
    return float(x)


def encode(value: Any) -> Any:
    """JSON-ready form of arrays, numpy scalars, floats, dicts and lists."""
    if isinstance(value, np.ndarray):
        kind = value.dtype.kind
        if kind == "b":
            data: list[Any] = [bool(v) for v in value.reshape(-1)]
            dtype = "bool"
        elif kind in "iu":
            data = [int(v) for v in value.reshape(-1)]
            dtype = "int64"
        elif kind == "f":
            data = [_enc_float(float(v)) for v in value.reshape(-1)]
            dtype = "float64"
        else:
            raise TypeError(f"cannot store arrays of dtype {value.dtype}")
        return {"__ndarray__": dtype, "shape": list(value.shape), "data": data}
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        f = float(value)
        return f if math.isfinite(f) else {"__float__": _enc_float(f) if not math.isnan(f) else "nan"}
    if isinstance(value, dict):
        return {str(k): encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [encode(v) for v in value]
    if value is None or isinstance(value, str):
        return value
    raise TypeError(f"cannot store a {type(value).__name__}")


def decode(value: Any, where: str = "value") -> Any:
    """The inverse of :func:`encode`; a malformed array or number raises :class:`CalibrationFileError` naming
    ``where`` (the key path)."""
    if isinstance(value, dict):
        if "__ndarray__" in value:
            return _decode_array(value, where)
        if "__float__" in value:
            try:
                return math.nan if value["__float__"] == "nan" else _dec_float(value["__float__"])
            except (TypeError, ValueError) as exc:
                raise CalibrationFileError(f"{where}: not a number ({exc})") from None
        return {k: decode(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [decode(v, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def _decode_array(table: dict[str, Any], where: str) -> np.ndarray:
    shape, data, dtype = table.get("shape"), table.get("data"), table.get("__ndarray__")
    if not (isinstance(shape, list) and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0
                                            for s in shape)):
        raise CalibrationFileError(f"{where}: array shape must be a list of non-negative integers, got {shape!r}")
    if not isinstance(data, list):
        raise CalibrationFileError(f"{where}: array data must be a list, got {type(data).__name__}")
    try:
        if dtype == "float64":
            arr = np.array([_dec_float(x) for x in data], dtype=np.float64)
        elif dtype == "int64":
            arr = np.array(data, dtype=np.int64)
        elif dtype == "bool":
            arr = np.array(data, dtype=bool)
        else:
            raise CalibrationFileError(f"{where}: unknown array dtype {dtype!r}")
    except (TypeError, ValueError, OverflowError) as exc:
        raise CalibrationFileError(f"{where}: array data is not {dtype} ({exc})") from None
    if arr.ndim != 1 or arr.size != int(np.prod(shape)):
        raise CalibrationFileError(f"{where}: array data has {arr.size} values for shape {list(shape)}")
    return arr.reshape(shape)


def canonical_json(doc: Any) -> str:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), allow_nan=False, ensure_ascii=True)


def content_sha256(doc: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON of ``doc`` without its ``sha256`` key."""
    body = {k: v for k, v in doc.items() if k != "sha256"}
    return hashlib.sha256(canonical_json(body).encode()).hexdigest()


def dataclass_fields(obj: Any) -> dict[str, Any]:
    """The init fields of a dataclass instance, encoded."""
    return {f.name: encode(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.init}


def dataclass_from(cls: type, table: dict[str, Any], what: str) -> Any:
    if not isinstance(table, dict):
        raise CalibrationFileError(f"{what}: expected a table of fields, got {type(table).__name__}")
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    required = [f.name for f in dataclasses.fields(cls)
                if f.init and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    missing = [n for n in required if n not in table]
    if missing:
        raise CalibrationFileError(f"{what}: missing key(s) {', '.join(missing)}")
    unknown = sorted(set(table) - set(names))
    if unknown:
        raise CalibrationFileError(f"{what}: unknown key(s) {', '.join(unknown)}")
    values = {k: decode(v, f"{what}.{k}") for k, v in table.items()}
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise CalibrationFileError(f"{what}: {exc}") from exc


# ---- code version ------------------------------------------------------------------------------------------------
def code_version() -> dict[str, Any]:
    """labctl version and, when the package sits in a git checkout, the commit and whether the tree is dirty."""
    import labctl

    out: dict[str, Any] = {"labctl": getattr(labctl, "__version__", "unknown"), "git_commit": None}
    root = Path(labctl.__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5,
                                check=False)
        if commit.returncode == 0:
            out["git_commit"] = commit.stdout.strip()
            dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                                   capture_output=True, text=True, timeout=5, check=False)
            out["git_dirty"] = bool(dirty.stdout.strip()) if dirty.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        pass
    return out


def now_iso() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


# ---- files -------------------------------------------------------------------------------------------------------
def finalize(doc: dict[str, Any]) -> dict[str, Any]:
    """Add format, version and the content hash (in place); returns the document."""
    doc["format"] = FORMAT
    doc["version"] = VERSION
    doc.pop("sha256", None)
    canonical_json(doc)                       # raises on anything that is not strict JSON
    doc["sha256"] = content_sha256(doc)
    return doc


def write_document(doc: dict[str, Any], path: str | Path) -> Path:
    """Write atomically (temp file + rename) so a crash never leaves half a calibration behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    order = ["format", "version", "sha256", "created", "chip_id", "bench_sha256", "wiring_sha256", "instruments",
             "code_version", "shape"]
    ordered = {k: doc[k] for k in order if k in doc}
    ordered.update({k: v for k, v in doc.items() if k not in ordered})
    text = json.dumps(ordered, indent=1, allow_nan=False) + "\n"
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path


def read_document(path: str | Path, *, chip_id: str | None = None, wiring_sha256: str | None = None
                  ) -> dict[str, Any]:
    """Parse and check a calibration file (format, version, keys, hash, chip, wiring); raises with the reason."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CalibrationFileError(f"{path}: cannot read: {exc}") from exc
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CalibrationFileError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(doc, dict):
        raise CalibrationFileError(f"{path}: not a calibration document (top level is not an object)")
    if doc.get("format") != FORMAT:
        raise CalibrationFileError(f"{path}: format is {doc.get('format')!r}, expected {FORMAT!r}")
    if doc.get("version") != VERSION:
        raise CalibrationFileError(f"{path}: version {doc.get('version')!r} is not supported (this code reads "
                                   f"version {VERSION})")
    missing = [k for k in REQUIRED if k not in doc]
    if missing:
        raise CalibrationFileError(f"{path}: missing key(s) {', '.join(missing)}")
    digest = content_sha256(doc)
    if digest != doc["sha256"]:
        raise CalibrationFileError(f"{path}: content hash mismatch (file says {str(doc['sha256'])[:16]}..., "
                                   f"content is {digest[:16]}...): the file was modified or corrupted")
    if chip_id is not None and doc["chip_id"] != chip_id:
        raise CalibrationFileError(f"{path}: made for chip {doc['chip_id']!r}, but this bench has chip {chip_id!r}")
    if wiring_sha256 is not None and doc["wiring_sha256"] != wiring_sha256:
        raise CalibrationFileError(f"{path}: made for wiring {str(doc['wiring_sha256'])[:16]}..., but this bench's "
                                   f"wiring is {wiring_sha256[:16]}... (heater channels, lasers or detectors differ)")
    return doc


def check_shapes(arrays: dict[str, np.ndarray], expected: dict[str, tuple[str, ...]], dims: dict[str, int],
                 what: str) -> None:
    """Every named array has the shape its symbolic dims give (B, R, C, N, K...)."""
    for name, symbols in expected.items():
        if name not in arrays:
            raise CalibrationFileError(f"{what}: missing array {name}")
        if not isinstance(arrays[name], np.ndarray):
            raise CalibrationFileError(f"{what}.{name}: expected an array, got {type(arrays[name]).__name__}")
        shape = tuple(arrays[name].shape)
        want = tuple(dims.get(s, -1) for s in symbols)
        if len(shape) != len(want) or any(w not in (-1, s) for w, s in zip(want, shape)):
            raise CalibrationFileError(f"{what}.{name}: shape {list(shape)} does not match "
                                       f"({', '.join(symbols)}) = {[dims.get(s, '?') for s in symbols]}")
