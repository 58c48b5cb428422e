"""Run folders: where they go, run.json kept readable through crashes, atomic checkpoints, resume."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

import labctl
from labctl.runs.record import Checkpoint, Run, atomic_write_json, code_version, data_dir, resume


def read_json(run: Run) -> dict:
    with open(run.path / "run.json") as f:
        return json.load(f)


def test_data_dir_argument_then_environment_then_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LABCTL_DATA", raising=False)
    assert data_dir() == Path("runs")
    monkeypatch.setenv("LABCTL_DATA", str(tmp_path / "env"))
    assert data_dir() == tmp_path / "env"
    assert data_dir(tmp_path / "arg") == tmp_path / "arg"
    run = Run.create("probe", {}, root=None)
    assert run.path.parent == tmp_path / "env"


def test_record_holds_what_reproduces_the_run(tmp_path: Path) -> None:
    bench = tmp_path / "bench.toml"
    bench.write_text("[bench]\nname = 'lab-3'\n")
    cal = tmp_path / "cal.npz"
    cal.write_bytes(b"calibration")
    run = Run.create("dfa-mnist5k", {"lr": 0.01}, root=tmp_path / "runs", seeds={"master": 3},
                     dataset={"name": "mnist5k", "files": {"x": "abc"}}, bench_file=bench,
                     instruments={"laser": "Keysight,N7776C,123,1.0"}, calibration=cal)
    rec = read_json(run)
    assert rec["status"] == "running" and rec["params"] == {"lr": 0.01} and rec["seeds"] == {"master": 3}
    assert rec["code"]["labctl"] == labctl.__version__ and "git_commit" in rec["code"]
    assert rec["dataset"]["files"] == {"x": "abc"}
    assert len(rec["hardware"]["bench_file"]["sha256"]) == 64
    assert rec["hardware"]["instruments"]["laser"].startswith("Keysight")
    assert len(rec["hardware"]["calibration"]["sha256"]) == 64
    assert Run.create("x", {}, root=tmp_path, calibration="deadbeef").record["hardware"] == \
        {"calibration": {"sha256": "deadbeef"}}


def test_code_version_reports_git_when_available() -> None:
    info = code_version()
    assert info["labctl"] == labctl.__version__
    if info["git_commit"] is not None:
        assert len(info["git_commit"]) == 40 and isinstance(info["git_dirty"], bool)


def test_writes_are_atomic_and_leave_no_temporaries(tmp_path: Path) -> None:
    run = Run.create("t", {}, root=tmp_path)
    run.add_epoch({"epoch": 1, "train_loss": float("nan")})
    assert read_json(run)["history"] == [{"epoch": 1, "train_loss": None}]  # strict JSON
    with pytest.raises(TypeError):
        run.update(bad=object())  # fails while serialising: the file on disk is untouched
    assert read_json(run)["history"] == [{"epoch": 1, "train_loss": None}] and "bad" not in read_json(run)
    assert sorted(p.name for p in run.path.iterdir()) == ["run.json"]
    atomic_write_json(tmp_path / "x.json", {"a": np.float32(1.5), "b": np.arange(2)})
    assert json.loads((tmp_path / "x.json").read_text()) == {"a": 1.5, "b": [0, 1]}


def test_checkpoints_round_trip_and_only_the_newest_are_kept(tmp_path: Path) -> None:
    run = Run.create("t", {}, root=tmp_path)
    state = np.random.default_rng(5).bit_generator.state  # 128-bit integers must survive exactly
    for step in range(1, 5):
        ck = Checkpoint({"w": np.full((2, 3), step, np.float32)}, {"position": {"step": step}, "rng": state})
        run.save_checkpoint(ck, f"s{step:09d}", keep=2)
    assert [c["file"] for c in read_json(run)["checkpoints"]] == ["ckpt-s000000003.npz", "ckpt-s000000004.npz"]
    assert sorted(p.name for p in run.path.glob("*.npz")) == ["ckpt-s000000003.npz", "ckpt-s000000004.npz"]
    loaded = Checkpoint.load(run.latest_checkpoint_path())
    assert loaded.meta["rng"] == state and loaded.meta["position"] == {"step": 4}
    assert loaded.arrays["w"].dtype == np.float32 and loaded.arrays["w"][0, 0] == 4
    with pytest.raises(ValueError, match="reserved"):
        Checkpoint({"__meta__": np.zeros(1)}).save(tmp_path / "bad.npz")


def test_status_follows_how_the_run_ended(tmp_path: Path) -> None:
    with Run.create("ok", {}, root=tmp_path) as run:
        pass
    assert read_json(run)["status"] == "finished"
    with pytest.raises(ZeroDivisionError), Run.create("boom", {}, root=tmp_path) as run:
        run.save_checkpoint(Checkpoint({"w": np.ones(2)}, {"position": {"step": 1}}), "s1")
        1 / 0  # noqa: B018
    rec = read_json(run)
    assert rec["status"] == "failed" and rec["error"]["type"] == "ZeroDivisionError"
    assert "1 / 0" in rec["error"]["traceback"]
    assert (run.path / rec["checkpoints"][-1]["file"]).is_file()
    with pytest.raises(KeyboardInterrupt), Run.create("ctrl-c", {}, root=tmp_path) as run:
        raise KeyboardInterrupt
    assert read_json(run)["status"] == "interrupted"


def test_resume_loads_the_latest_checkpoint_and_notes_it(tmp_path: Path) -> None:
    run = Run.create("t", {}, root=tmp_path)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        resume(run.path)
    run.save_checkpoint(Checkpoint({"w": np.zeros(1)}, {"position": {"step": 1}}), "s1")
    run.save_checkpoint(Checkpoint({"w": np.ones(1)}, {"position": {"step": 2}}), "s2")
    run.finish("failed", RuntimeError("laser dropped out"))
    again, ck = resume(run.path)
    assert ck.arrays["w"][0] == 1 and again.status == "running"
    assert read_json(again)["resumes"][0]["previous_error"]["message"] == "laser dropped out"
    (run.path / "ckpt-s2.npz").unlink()  # a lost file: fall back to the previous one
    assert Run.open(run.path).latest_checkpoint_path().name == "ckpt-s1.npz"
    with pytest.raises(FileNotFoundError, match="not a run folder"):
        Run.open(tmp_path / "nowhere")


def test_run_folders_are_unique(tmp_path: Path) -> None:
    names = {Run.create("same", {}, root=tmp_path).path.name for _ in range(5)}
    assert len(names) == 5 and all(n.startswith("same-") for n in names)
    assert os.listdir(tmp_path) and all((tmp_path / n / "run.json").is_file() for n in names)
