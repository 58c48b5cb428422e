"""Feedback projectors, the BP/DFA trainers, and exact resume from checkpoints."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from labctl.dfa.datasets import Dataset, DatasetError
from labctl.dfa.feedback import (
    DigitalFeedback,
    ExactMatVec,
    FeedbackProjector,
    MatVecFeedback,
    NoisyFeedback,
    feedback_matrices,
)
from labctl.dfa.mlp import MLP, softmax_cross_entropy
from labctl.runs.record import Checkpoint, Run
from labctl.dfa.training import Experiment, TrainConfig, Trainer, derive_seeds, resume_experiment, run_experiment


def toy_dataset(n_train: int = 300, n_test: int = 100, n_features: int = 20, seed: int = 0) -> Dataset:
    """Ten Gaussian blobs: learnable in a few epochs by a tiny net, no package data needed."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((10, n_features)) * 1.5

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, 10, n)
        return (centres[y] + rng.standard_normal((n, n_features))).astype(np.float32), y.astype(np.int64)

    x_tr, y_tr = draw(n_train)
    x_te, y_te = draw(n_test)
    return Dataset(x_tr, y_tr, x_te, y_te, "blobs", 10, {"files": {"blobs": f"seed{seed}"}})


# ------------------------------------------------------------------------------------------ feedback --

def test_digital_feedback_is_exactly_b_e_scaled() -> None:
    fb = DigitalFeedback(10, (30, 20), seed=5, dtype=np.float64)
    b = fb.matrices()
    assert [m.shape for m in b] == [(10, 30), (10, 20)]
    assert all(m.min() >= -1 and m.max() <= 1 for m in b)
    np.testing.assert_array_equal(b[0], feedback_matrices(10, (30, 20), 5, np.float64)[0])
    e = np.random.default_rng(0).standard_normal((7, 10))
    for layer, n in enumerate((30, 20)):
        out = fb.project(layer, e)
        np.testing.assert_array_equal(out, (e @ b[layer]) * (1 / np.sqrt(n)))
        np.testing.assert_allclose(out * np.sqrt(n), e @ b[layer], rtol=1e-13)
    assert fb.pop_counters() == {}
    assert isinstance(fb, FeedbackProjector)
    assert not np.array_equal(DigitalFeedback(10, (30,), seed=6).matrices()[0], b[0][:, :30])


def test_feedback_matrices_are_uniform_minus_one_one() -> None:
    b = feedback_matrices(10, (5000,), seed=0, dtype=np.float64)[0]
    assert b.mean() == pytest.approx(0, abs=0.01) and b.std() == pytest.approx(1 / np.sqrt(3), rel=0.01)


def test_noisy_feedback_statistics_follow_filipovich() -> None:
    """noise = max|e| * N(0.03, 0.618) on each element of e @ B, max over the whole batch, before 1/sqrt(n)."""
    n, batch = 500, 2000
    fb = NoisyFeedback(10, (n,), seed=1, noise_seed=2, dtype=np.float64)
    rng = np.random.default_rng(3)
    e = rng.uniform(-0.01, 0.01, (batch, 10))
    e[17, 4] = 0.5  # one large error sets the scale for every row of the batch
    out = fb.project(0, e)
    noise = out * np.sqrt(n) - e @ fb.matrices()[0]
    rel = noise / 0.5
    assert rel.mean() == pytest.approx(0.03, abs=0.002)
    assert rel.std() == pytest.approx(0.618, rel=0.005)
    assert rel[:100].std() == pytest.approx(0.618, rel=0.05)  # rows with small |e| get the batch-max scale
    centred = rel - rel.mean()
    assert abs(np.corrcoef(centred[:, :-1].ravel(), centred[:, 1:].ravel())[0, 1]) < 0.005  # independent
    assert abs(np.corrcoef(centred[:-1].ravel(), centred[1:].ravel())[0, 1]) < 0.005  # per element
    # reproducible by seed, and the state restores the noise stream exactly
    again = NoisyFeedback(10, (n,), seed=1, noise_seed=2, dtype=np.float64)
    np.testing.assert_array_equal(again.project(0, e), out)
    state = json.loads(json.dumps(fb.state_dict()))
    nxt = fb.project(0, e)
    again.load_state_dict(state)
    np.testing.assert_array_equal(again.project(0, e), nxt)
    with pytest.raises(ValueError, match="different feedback matrices"):
        NoisyFeedback(10, (n,), seed=9).load_state_dict(state)


def test_dfa_step_matches_the_dfa_rule() -> None:
    """One DFA update by hand: hidden grads from (e @ B_l / sqrt(n_l)) * f'(a_l), output grads from e."""
    ds = toy_dataset(64, 10)
    model = MLP((20, 16, 12, 10), dtype=np.float64, rng=0)
    fb = DigitalFeedback(10, (16, 12), seed=1, dtype=np.float64)
    trainer = Trainer(model, ds, TrainConfig(method="dfa", lr=0.1), feedback=fb)
    before = [p.copy() for p in model.params()]
    x, y = ds.x_train.astype(np.float64), ds.y_train
    fwd = model.forward(x)
    _, e = softmax_cross_entropy(fwd.logits, y)
    deltas = [(e @ fb.matrices()[i] / np.sqrt(n)) * (fwd.a[i] > 0) for i, n in enumerate((16, 12))] + [e]
    trainer.train_step(ds.x_train, y)
    for i, d in enumerate(deltas):
        np.testing.assert_allclose(model.weights[i], before[2 * i] - 0.1 * fwd.h[i].T @ d, rtol=1e-12)
        np.testing.assert_allclose(model.biases[i], before[2 * i + 1] - 0.1 * d.sum(0), rtol=1e-12)


@pytest.mark.parametrize("label", ["bp", "dfa", "dfa-noisy"])
def test_training_reduces_the_loss(label: str) -> None:
    ds = toy_dataset()
    exp = Experiment(dataset="blobs", hidden=(32, 32), seed=0, feedback="noisy" if label == "dfa-noisy" else "digital",
                     train=TrainConfig(method="bp" if label == "bp" else "dfa", epochs=6, batch_size=16))
    trainer = exp.build(ds)
    initial, _ = trainer.evaluate(ds.x_train, ds.y_train)
    history = trainer.run()
    assert [h["epoch"] for h in history] == list(range(1, 7))
    final, _ = trainer.evaluate(ds.x_train, ds.y_train)
    assert final < 0.3 * initial
    assert history[-1]["test_accuracy"] > 0.85
    assert all(h["hardware"] == {} for h in history)


class CountingEngine(ExactMatVec):
    """A stand-in for a hardware engine: counts what a photonic one would report."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def program(self, matrices: Sequence[np.ndarray]) -> None:
        super().program(matrices)
        self.programmed = len(matrices)

    def matvec(self, layer: int, error: np.ndarray) -> np.ndarray:
        self.calls += 1
        return super().matvec(layer, error)

    def pop_counters(self) -> dict[str, float]:
        out = {"transactions": float(self.calls), "reconfigurations": 0.0, "projected_time_s": self.calls * 1e-3}
        self.calls = 0
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"calls": self.calls}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.calls = state["calls"]


def test_engine_seam_counters_land_in_the_history() -> None:
    ds = toy_dataset(130, 20)
    engine = CountingEngine()
    fb = MatVecFeedback(10, (16,), seed=0, engine=engine)
    assert engine.programmed == 1
    trainer = Trainer(MLP((20, 16, 10), rng=0), ds, TrainConfig(method="dfa", epochs=2), feedback=fb)
    history = trainer.run()
    assert [h["hardware"]["transactions"] for h in history] == [3.0, 3.0]  # 3 mini-batches, 1 hidden layer
    assert history[0]["hardware"]["projected_time_s"] == pytest.approx(3e-3)


def test_external_projector_runs_and_is_recorded(tmp_path: Path) -> None:
    ds = toy_dataset(130, 20)
    exp = Experiment(dataset="blobs", hidden=(16,), feedback="external", train=TrainConfig(method="dfa", epochs=1))
    with pytest.raises(ValueError, match="feedback='external' needs the projector"):
        exp.build(ds)
    fb = MatVecFeedback(10, (16,), seed=exp.seeds()["feedback"], engine=CountingEngine())
    run, _ = run_experiment(exp, root=tmp_path, dataset=ds, feedback=fb, instruments={"meter": "N7744A"})
    record = json.loads((run.path / "run.json").read_text())
    assert record["params"]["feedback"]["kind"] == "matvec" and record["status"] == "finished"
    assert record["history"][0]["hardware"]["transactions"] == 3.0
    assert record["hardware"] == {"instruments": {"meter": "N7744A"}}


def test_bad_pairings_are_refused() -> None:
    ds = toy_dataset(10, 5)
    with pytest.raises(ValueError, match="DFA needs a feedback projector"):
        Trainer(MLP((20, 8, 10)), ds, TrainConfig(method="dfa"))
    with pytest.raises(ValueError, match="do not fit the model"):
        Trainer(MLP((20, 8, 10)), ds, TrainConfig(method="dfa"), feedback=DigitalFeedback(10, (9,)))
    with pytest.raises(ValueError, match="does not fit model sizes"):
        Trainer(MLP((21, 8, 10)), ds, TrainConfig(method="bp"))
    with pytest.raises(ValueError, match="method"):
        TrainConfig(method="fa")  # type: ignore[arg-type]


def test_seeds_are_independent_streams() -> None:
    s = derive_seeds(0)
    assert s == derive_seeds(0) and len({s["model"], s["shuffle"], s["feedback"], s["noise"]}) == 4
    assert derive_seeds(1)["model"] != s["model"]


# -------------------------------------------------------------------------------------------- resume --

class Crash(RuntimeError):
    pass


def crash_at(step: int):
    def hook(trainer: Trainer) -> None:
        if trainer.step == step:
            raise Crash(f"simulated fault at step {step}")
    return hook


def assert_same_run(a: Trainer, b: Trainer) -> None:
    for pa, pb in zip(a.model.params() + a.optimizer.velocity, b.model.params() + b.optimizer.velocity):
        assert np.array_equal(pa, pb)  # bit-identical
    strip = lambda h: [{k: v for k, v in r.items() if not k.endswith("time_s")} for r in h]
    assert strip(a.history) == strip(b.history)
    assert a.shuffle_rng.bit_generator.state == b.shuffle_rng.bit_generator.state


@pytest.mark.parametrize("label", ["bp", "dfa-noisy"])
def test_resume_after_crash_mid_epoch_is_bit_identical(tmp_path: Path, label: str) -> None:
    ds = toy_dataset()  # 300 samples -> 5 mini-batches of 64 per epoch
    exp = Experiment(dataset="blobs", hidden=(32, 24), seed=4, feedback="noisy",
                     train=TrainConfig(method="bp" if label == "bp" else "dfa", epochs=3, checkpoint_every=3))
    _, straight = run_experiment(exp, root=tmp_path / "a", dataset=ds)

    with pytest.raises(Crash):
        run_experiment(exp, root=tmp_path / "b", dataset=ds, batch_hooks=[crash_at(8)])  # epoch 2, batch 3
    (run_dir,) = (tmp_path / "b").iterdir()
    crashed = Run.open(run_dir)
    assert crashed.status == "failed" and crashed.record["error"]["type"] == "Crash"
    assert crashed.record["checkpoints"][-1]["position"] == {"epoch": 1, "batch": 1, "step": 6}  # mid-epoch
    assert len(crashed.history) == 1

    with pytest.raises(DatasetError, match="dataset files differ"):
        resume_experiment(run_dir, dataset=toy_dataset(seed=1))
    assert Run.open(run_dir).status == "failed"  # a refused resume leaves the record as it was

    run, resumed = resume_experiment(run_dir, dataset=ds)
    assert run.status == "finished" and len(run.record["resumes"]) == 1
    assert_same_run(straight, resumed)
    assert Run.open(run_dir).history == resumed.history


def test_checkpoint_round_trip_through_npz_resumes_exactly(tmp_path: Path) -> None:
    ds = toy_dataset(200, 20)
    exp = Experiment(dataset="blobs", hidden=(16,), feedback="noisy", seed=2,
                     train=TrainConfig(method="dfa", epochs=2, batch_size=32))
    straight = exp.build(ds)
    straight.run()
    first = exp.build(ds)
    saved: list[Path] = []

    def save(ck: Checkpoint) -> None:
        saved.append(tmp_path / f"{len(saved)}.npz")
        ck.save(saved[-1])

    first.checkpoint_hooks.append(save)
    first.batch_hooks.append(crash_at(9))  # epoch 2, batch 2 (7 batches per epoch)
    with pytest.raises(Crash):
        first.run()
    assert len(saved) == 1  # the end of epoch 1
    second = exp.build(ds)
    second.restore(Checkpoint.load(saved[0]))
    second.run()
    assert_same_run(straight, second)


def test_restore_refuses_another_model(tmp_path: Path) -> None:
    ds = toy_dataset(64, 10)
    ckpt = Experiment(dataset="blobs", hidden=(16,), train=TrainConfig(method="bp", epochs=1)).build(ds).checkpoint()
    other = Experiment(dataset="blobs", hidden=(17,), train=TrainConfig(method="bp", epochs=1)).build(ds)
    with pytest.raises(ValueError, match="checkpoint model"):
        other.restore(ckpt)
