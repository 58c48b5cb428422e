"""The README's "Using labctl from Python" example runs as written (on the small emulated bench, for speed) and
does what it says: weights set through a calibration come back close, and every bank gives an output."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from tests.calibration.test_calibrate import bench_file

README = Path(__file__).resolve().parents[1] / "README.md"


def _example() -> str:
    text = README.read_text()
    section = text.split("## Using labctl from Python", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "no python block in the section"
    return match.group(1)


def test_readme_python_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("LABCTL_LOCK_DIR", str(tmp_path / "locks"))
    code = _example()
    assert "Bench.open()" in code
    small = bench_file(tmp_path / "bench.toml", seed=4)
    scope: dict = {}
    exec(compile(code.replace("Bench.open()", f"Bench.open({str(small)!r})"), "README", "exec"), scope)
    out = capsys.readouterr().out
    error = float(re.search(r"largest weight error: (\S+)", out).group(1))
    assert error < 0.05                                    # normalised weight units, span about 1.5
    outputs = np.asarray(scope["outputs"])
    assert outputs.shape == (2,) and np.all(np.isfinite(outputs)) and np.any(outputs != 0)
    assert scope["bench"].heaters.applied.max() == 0.0     # left safe
