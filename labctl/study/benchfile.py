"""The bench file of one study job: the base bench with the job's chip seed and ChipSpec overrides written in.

A job's chip parameters travel as text of an ordinary bench file, so every job can be rerun by hand with
``labctl calibrate --bench <job folder>/bench.toml``. The bench file parser validates it (including the
``[chip.spec]`` overrides, which it hands to the emulation root), so the study never imports the simulator.
"""

from __future__ import annotations

import copy
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import tomli_w

from labctl.bench.config import BenchConfigError, embedded_bench_path, parse_bench


def resolve_bench(value: str | None, base_dir: Path) -> Path:
    """A bench file relative to the spec's folder (or absolute), else an embedded bench name; None: default."""
    if value is None:
        return embedded_bench_path("default")
    path = Path(value).expanduser()
    candidate = path if path.is_absolute() else base_dir / path
    if candidate.is_file():
        return candidate
    if "/" not in value and not value.endswith(".toml") and embedded_bench_path(value).is_file():
        return embedded_bench_path(value)
    raise ValueError(f"bench {value!r}: neither a file (relative to {base_dir}) nor an embedded bench name")


def chip_overrides(params: Mapping[str, Any]) -> tuple[int | None, dict[str, dict[str, Any]]]:
    """(chip seed or None, nested ``[chip.spec]`` overrides) from a job's ``chip.*`` parameters."""
    seed = params.get("chip.seed")
    spec: dict[str, dict[str, Any]] = {}
    for key, value in params.items():
        if key.startswith("chip.spec."):
            section, name = key.removeprefix("chip.spec.").split(".", 1)
            spec.setdefault(section, {})[name] = value
    return seed, spec


def job_bench_text(base: Path, params: Mapping[str, Any], label: str) -> str:
    """The job's bench file as TOML text, validated; ValueError (one line) names the job and the problem."""
    text = base.read_text()
    seed, spec = chip_overrides(params)
    if seed is None and not spec:
        data = tomllib.loads(text)
        _validate(data, label)
        return text
    data = tomllib.loads(text)
    if data.get("bench", {}).get("kind") != "emulated":
        raise ValueError(f"{label}: chip parameters need an emulated bench, {base} is not one")
    chip = copy.deepcopy(data.get("chip", {}))
    if seed is not None:
        chip["seed"] = seed
    merged = chip.setdefault("spec", {})
    for section, values in spec.items():
        merged.setdefault(section, {}).update(values)
    data["chip"] = chip
    _validate(data, label)
    return f"# {label}: {base.name} with this job's chip parameters (written by labctl study)\n" + tomli_w.dumps(data)


def _validate(data: dict[str, Any], label: str) -> None:
    try:
        parse_bench(data, label)
    except BenchConfigError as exc:
        problems = "; ".join(f"{path}: {message}" for path, message in exc.problems)
        raise ValueError(f"{label}: bench file: {problems}") from None
