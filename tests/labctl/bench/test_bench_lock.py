"""The bench lock refuses a second process and names the holder."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from labctl.bench.lock import BenchBusyError, BenchLock


def test_second_process_is_refused_with_the_holder_named(tmp_path: Path) -> None:
    with BenchLock("lab-3 bench", directory=tmp_path):
        code = textwrap.dedent(f"""
            from pathlib import Path
            from labctl.bench.lock import BenchLock, BenchBusyError
            try:
                BenchLock("lab-3 bench", directory=Path({str(tmp_path)!r})).acquire()
            except BenchBusyError as exc:
                print(exc)
                raise SystemExit(3)
        """)
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
        assert result.returncode == 3, result.stderr
        assert "lab-3 bench" in result.stdout and "in use by process" in result.stdout
        import os
        assert str(os.getpid()) in result.stdout
    # released: a new holder gets it
    lock = BenchLock("lab-3 bench", directory=tmp_path)
    lock.acquire()
    assert lock.held
    lock.release()


def test_same_process_second_lock_is_refused_too(tmp_path: Path) -> None:
    with BenchLock("b", directory=tmp_path):
        with pytest.raises(BenchBusyError):
            BenchLock("b", directory=tmp_path).acquire()


def test_different_benches_do_not_conflict(tmp_path: Path) -> None:
    with BenchLock("a", directory=tmp_path), BenchLock("b", directory=tmp_path):
        pass
