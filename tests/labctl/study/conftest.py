from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
SMALL_BENCH = HERE / "small_bench.toml"


@pytest.fixture
def write_spec(tmp_path: Path):
    """Write a study file next to a copy of the small bench; returns its path."""
    (tmp_path / "small_bench.toml").write_text(SMALL_BENCH.read_text())

    def write(text: str, name: str = "study.toml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path
    return write
