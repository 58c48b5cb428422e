"""Training loops for backpropagation and DFA with any :class:`~labctl.dfa.feedback.FeedbackProjector`, with
checkpoints that resume bit-identically and run folders that record everything as the run goes.

Why bit-identical resume: hardware-in-the-loop runs get interrupted (instrument faults, bench time slots), and a
resumed run must be the same experiment, not a similar one. Everything that changes during training is in the
checkpoint: weights, momentum buffers, the epoch's shuffle order and the shuffle Generator's
``bit_generator.state``, the feedback projector's state (noise RNG, matrix hash), the position (epoch, batch,
step) and the epoch's running sums.

Defaults follow Filipovich et al.'s ``main.py``: SGD lr 0.01, momentum 0.9 (torch semantics: ``v = m v + g``,
``p -= lr v``, no dampening), batch 64 with the last partial batch kept, a fresh shuffle each epoch. One master
seed gives the model init, the shuffle order, the feedback matrices and the feedback noise independent streams
(``SeedSequence(seed).spawn(4)``), recorded in the run.

History, one dict per epoch: ``epoch`` (1-based), ``train_loss`` / ``train_accuracy`` (running over the epoch's
mini-batches, before each update, as the usual PyTorch loop reports), ``test_loss`` / ``test_accuracy`` (full test
set after the epoch), ``time_s`` (training wall time of the epoch), ``eval_time_s`` and ``hardware`` (the
projector's counters for the epoch: ``reconfigurations``, ``transactions``, ``projected_time_s`` for hardware;
empty for digital runs).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import numbers
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from labctl.dfa.datasets import Dataset, DatasetError, load_dataset
from labctl.dfa.feedback import DigitalFeedback, FeedbackProjector, NoisyFeedback
from labctl.dfa.mlp import MLP, Activation, softmax_cross_entropy
from labctl.runs.record import Checkpoint, Run, resume

log = logging.getLogger(__name__)

Method = Literal["bp", "dfa"]
#: photonic: the chip computes B e (the projector is built by procedures.train from a bench and a calibration);
#: external: any projector handed to build()
FeedbackKind = Literal["digital", "noisy", "photonic", "external"]


class TrainingDiverged(FloatingPointError):
    """The loss became NaN or infinite; the run stops rather than writing garbage weights for hours."""


#: Accepted ranges of the numeric training settings, (low, high, low excluded): TrainConfig and Experiment refuse a
#: value outside them naming the field (a study spec or a recorded run can hold anything); the train plan's
#: command-line options declare theirs from this table.
RANGES: dict[str, tuple[float, float, bool]] = {
    "epochs": (1, 100_000, False), "lr": (0.0, 10.0, True), "momentum": (0.0, 1.0, False),
    "batch_size": (1, 65_536, False), "eval_batch_size": (1, 1_000_000, False),
    "checkpoint_every": (0, 1_000_000, False), "seed": (0, 2**32 - 1, False), "n_train": (1, 10_000_000, False),
    "n_test": (1, 10_000_000, False), "noise_std": (0.0, 1e3, False), "noise_mean": (-1e3, 1e3, False),
    "hidden": (1, 100_000, False),
}
_INTEGERS = {"epochs", "batch_size", "eval_batch_size", "checkpoint_every", "seed", "n_train", "n_test", "hidden"}


def check_field(name: str, value: Any) -> None:
    """``value`` of training field ``name`` within :data:`RANGES` (and an integer where one is meant)."""
    lo, hi, open_low = RANGES[name]
    integer = name in _INTEGERS
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind) or not math.isfinite(value):
        raise ValueError(f"{name} must be {'an integer' if integer else 'a finite number'}, got {value!r:.40}")
    if value < lo or value > hi or (open_low and value == lo):
        raise ValueError(f"{name} must be {'>' if open_low else '>='} {lo:g} and <= {hi:g}, got {value!r}")


@dataclass(frozen=True)
class TrainConfig:
    method: Method = "dfa"
    epochs: int = 10
    lr: float = 0.01
    momentum: float = 0.9
    batch_size: int = 64
    eval_batch_size: int = 1000
    checkpoint_every: int = 0  # mini-batches between checkpoints; 0: only at epoch ends

    def __post_init__(self) -> None:
        if self.method not in ("bp", "dfa"):
            raise ValueError(f"method must be 'bp' or 'dfa', got {self.method!r:.40}")
        for name in ("epochs", "lr", "momentum", "batch_size", "eval_batch_size", "checkpoint_every"):
            check_field(name, getattr(self, name))


def derive_seeds(seed: int) -> dict[str, int]:
    """Independent seeds for each random stream, from one master seed."""
    names = ("model", "shuffle", "feedback", "noise")
    children = np.random.SeedSequence(seed).spawn(len(names))
    return {"master": int(seed), **{n: int(c.generate_state(1, np.uint64)[0] >> 1) for n, c in zip(names, children)}}


class SGDMomentum:
    """torch.optim.SGD with momentum, no dampening, no Nesterov, no weight decay."""

    def __init__(self, params: list[np.ndarray], lr: float = 0.01, momentum: float = 0.9) -> None:
        self.lr, self.momentum = float(lr), float(momentum)
        self.velocity = [np.zeros_like(p) for p in params]

    def step(self, params: list[np.ndarray], grads: list[np.ndarray]) -> None:
        for p, v, g in zip(params, self.velocity, grads):
            v *= self.momentum
            v += g
            p -= self.lr * v


CheckpointHook = Callable[[Checkpoint], None]
EpochHook = Callable[[dict[str, Any]], None]
BatchHook = Callable[["Trainer"], None]


@dataclass
class _EpochSums:
    loss_sum: float = 0.0
    correct: int = 0
    seen: int = 0
    time_s: float = 0.0


class Trainer:
    """Runs ``config.epochs`` epochs of BP or DFA on ``dataset``; resumable from any :meth:`checkpoint`."""

    def __init__(self, model: MLP, dataset: Dataset, config: TrainConfig, *,
                 feedback: FeedbackProjector | None = None, shuffle_seed: int = 0) -> None:
        if config.method == "dfa":
            if feedback is None:
                raise ValueError("DFA needs a feedback projector")
            shapes = [m.shape for m in feedback.matrices()]
            wanted = [(model.sizes[-1], n) for n in model.hidden_sizes]
            if shapes != wanted:
                raise ValueError(f"feedback matrices {shapes} do not fit the model (need {wanted})")
        if dataset.n_features != model.sizes[0] or dataset.n_classes != model.sizes[-1]:
            raise ValueError(f"dataset {dataset.name} ({dataset.n_features} features, {dataset.n_classes} "
                             f"classes) does not fit model sizes {model.sizes}")
        self.model, self.dataset, self.config, self.feedback = model, dataset, config, feedback
        self.optimizer = SGDMomentum(model.params(), config.lr, config.momentum)
        self.shuffle_rng = np.random.default_rng(shuffle_seed)
        self.epoch = 0  # epoch being run (0-based)
        self.batch = 0  # next mini-batch within the epoch
        self.step = 0  # mini-batches done in the whole run
        self.history: list[dict[str, Any]] = []
        self.last_batch: dict[str, Any] = {}
        self._perm: np.ndarray | None = None
        self._sums = _EpochSums()
        self.checkpoint_hooks: list[CheckpointHook] = []
        self.epoch_hooks: list[EpochHook] = []
        self.batch_hooks: list[BatchHook] = []
        #: Run before each mini-batch (e.g. the photonic run's drift steps).
        self.pre_batch_hooks: list[BatchHook] = []

    @property
    def n_batches(self) -> int:
        return math.ceil(self.dataset.x_train.shape[0] / self.config.batch_size)

    @property
    def done(self) -> bool:
        return self.epoch >= self.config.epochs

    # -------------------------------------------------------------------------------------------- steps --
    def train_step(self, x: np.ndarray, y: np.ndarray) -> tuple[float, int]:
        """One SGD update on a mini-batch; returns the batch loss and the number of correct predictions."""
        model = self.model
        fwd = model.forward(x)
        loss, error = softmax_cross_entropy(fwd.logits, y)
        if not math.isfinite(loss):
            raise TrainingDiverged(f"loss {loss} at epoch {self.epoch + 1}, batch {self.batch}")
        correct = int(np.count_nonzero(fwd.logits.argmax(axis=1) == y))
        if self.config.method == "bp":
            deltas = model.backprop_deltas(fwd, error)
        else:
            assert self.feedback is not None
            deltas = []
            for layer in range(model.n_layers - 1):
                delta = self.feedback.project(layer, error)
                delta *= model.f_prime(fwd.a[layer], fwd.h[layer + 1])
                deltas.append(delta)
        self.optimizer.step(model.params(), model.gradients(fwd, deltas, error))
        return loss, correct

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        """Mean loss and accuracy on a whole split."""
        if x.shape[0] == 0:
            return float("nan"), float("nan")
        logits = self.model.logits(x, self.config.eval_batch_size)
        loss, _ = softmax_cross_entropy(logits, y)
        return loss, float(np.mean(logits.argmax(axis=1) == y))

    def run(self) -> list[dict[str, Any]]:
        """Train to ``config.epochs`` from wherever the trainer stands; returns the history."""
        for _ in self.steps():
            pass
        return self.history

    def steps(self) -> Iterator[str]:
        """Train to ``config.epochs``, yielding ``"batch"`` after every mini-batch (``last_batch`` says how it
        went) and ``"epoch"`` after every epoch's evaluation: the places where a run records and checkpoints."""
        x, y = self.dataset.x_train, self.dataset.y_train
        bs, cfg = self.config.batch_size, self.config
        while not self.done:
            if self._perm is None:
                self._perm = self.shuffle_rng.permutation(x.shape[0])
                self._sums = _EpochSums()
            while self.batch < self.n_batches:
                t0 = time.perf_counter()
                for hook in self.pre_batch_hooks:
                    hook(self)
                idx = self._perm[self.batch * bs:(self.batch + 1) * bs]
                loss, correct = self.train_step(x[idx], y[idx])
                self._sums.loss_sum += loss * idx.size
                self._sums.correct += correct
                self._sums.seen += int(idx.size)
                self.batch += 1
                self.step += 1
                elapsed = time.perf_counter() - t0
                self._sums.time_s += elapsed
                self.last_batch = {"loss": loss, "accuracy": correct / max(int(idx.size), 1),
                                   "samples": int(idx.size), "time_s": elapsed}
                for hook in self.batch_hooks:
                    hook(self)
                if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                    self._emit_checkpoint()
                yield "batch"
            self._end_epoch()
            yield "epoch"

    def _end_epoch(self) -> None:
        t0 = time.perf_counter()
        test_loss, test_acc = self.evaluate(self.dataset.x_test, self.dataset.y_test)
        sums = self._sums
        record = {
            "epoch": self.epoch + 1, "step": self.step,
            "train_loss": sums.loss_sum / max(sums.seen, 1), "train_accuracy": sums.correct / max(sums.seen, 1),
            "test_loss": test_loss, "test_accuracy": test_acc,
            "time_s": sums.time_s, "eval_time_s": time.perf_counter() - t0,
            "hardware": dict(self.feedback.pop_counters()) if self.feedback is not None else {},
        }
        self.history.append(record)
        log.info("epoch %d: train loss %.4f acc %.4f, test acc %.4f (%.2f s)", record["epoch"],
                 record["train_loss"], record["train_accuracy"], test_acc, sums.time_s)
        self.epoch += 1
        self.batch = 0
        self._perm = None
        self._sums = _EpochSums()
        for hook in self.epoch_hooks:
            hook(record)
        self._emit_checkpoint()

    # --------------------------------------------------------------------------------------- checkpoints --
    def _emit_checkpoint(self) -> None:
        if self.checkpoint_hooks:
            ckpt = self.checkpoint()
            for hook in self.checkpoint_hooks:
                hook(ckpt)

    def checkpoint(self) -> Checkpoint:
        """Everything needed to continue exactly from here (copies, safe to keep)."""
        arrays = {k: v.copy() for k, v in self.model.state_arrays().items()}
        arrays.update({f"optimizer/v{i}": v.copy() for i, v in enumerate(self.optimizer.velocity)})
        if self._perm is not None:
            arrays["shuffle/perm"] = self._perm.copy()
        if self.feedback is not None:
            arrays.update({f"feedback/B{i}": np.array(b) for i, b in enumerate(self.feedback.matrices())})
        meta = {
            "position": {"epoch": self.epoch, "batch": self.batch, "step": self.step},
            "config": asdict(self.config),
            "model": {"sizes": list(self.model.sizes), "activation": self.model.activation,
                      "dtype": self.model.dtype.name},
            "shuffle_rng": self.shuffle_rng.bit_generator.state,
            "epoch_sums": asdict(self._sums),
            "feedback": self.feedback.state_dict() if self.feedback is not None else None,
            "history": self.history,
        }
        return Checkpoint(arrays=arrays, meta=meta)

    def restore(self, ckpt: Checkpoint) -> None:
        """Continue from ``ckpt``; refuses one made for another model, method or batch size."""
        meta = ckpt.meta
        model_meta = {"sizes": list(self.model.sizes), "activation": self.model.activation,
                      "dtype": self.model.dtype.name}
        if meta["model"] != model_meta:
            raise ValueError(f"checkpoint model {meta['model']} differs from this trainer's {model_meta}")
        for key in ("method", "batch_size", "lr", "momentum"):
            if meta["config"][key] != getattr(self.config, key):
                raise ValueError(f"checkpoint {key}={meta['config'][key]!r}, trainer has "
                                 f"{getattr(self.config, key)!r}")
        self.model.load_state_arrays(ckpt.arrays)
        for i, v in enumerate(self.optimizer.velocity):
            v[...] = ckpt.arrays[f"optimizer/v{i}"]
        self._perm = ckpt.arrays["shuffle/perm"].copy() if "shuffle/perm" in ckpt.arrays else None
        if self._perm is not None and self._perm.size != self.dataset.x_train.shape[0]:
            raise ValueError("checkpoint shuffle order does not match the training set size")
        self.shuffle_rng.bit_generator.state = meta["shuffle_rng"]
        if self.feedback is not None:
            if meta.get("feedback") is None:
                raise ValueError("checkpoint has no feedback state but the trainer has a projector")
            self.feedback.load_state_dict(meta["feedback"])
        self._sums = _EpochSums(**meta["epoch_sums"])
        self.history = [dict(h) for h in meta["history"]]
        pos = meta["position"]
        self.epoch, self.batch, self.step = int(pos["epoch"]), int(pos["batch"]), int(pos["step"])


# ------------------------------------------------------------------------------------------- experiments --

@dataclass(frozen=True)
class Experiment:
    """A complete, JSON-recordable description of one training run (what run.json stores under params)."""

    dataset: str = "mnist5k"
    hidden: tuple[int, ...] = (800, 800)
    activation: Activation = "relu"
    dtype: str = "float32"
    feedback: FeedbackKind = "digital"  # DFA only
    noise_std: float = 0.618
    noise_mean: float = 0.03
    seed: int = 0
    n_train: int | None = None  # subsets for quick runs
    n_test: int | None = None
    train: TrainConfig = field(default_factory=TrainConfig)
    #: photonic feedback only: {"path": "stack" | "fast", **PhotonicOptions fields}
    photonic: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.dataset, str) or not self.dataset.strip():
            raise ValueError(f"dataset must be a dataset name or file, got {self.dataset!r:.40}")
        if not isinstance(self.hidden, tuple) or not self.hidden:
            raise ValueError(f"hidden must be a list of layer sizes, got {self.hidden!r:.40}")
        for size in self.hidden:
            check_field("hidden", size)
        if self.activation not in ("relu", "tanh"):
            raise ValueError(f"activation must be 'relu' or 'tanh', got {self.activation!r:.40}")
        for name in ("seed", "noise_std", "noise_mean"):
            check_field(name, getattr(self, name))
        for name in ("n_train", "n_test"):
            if getattr(self, name) is not None:
                check_field(name, getattr(self, name))
        if not isinstance(self.train, TrainConfig):
            raise ValueError(f"train must be a table of training settings, got {self.train!r:.40}")
        if self.photonic is not None and not isinstance(self.photonic, dict):
            raise ValueError(f"photonic must be a table, got {self.photonic!r:.40}")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")
        if self.feedback not in ("digital", "noisy", "photonic", "external"):
            raise ValueError(f"feedback must be 'digital', 'noisy', 'photonic' or 'external', got {self.feedback!r}")
        if self.photonic is not None and self.photonic.get("path", "stack") not in ("stack", "fast"):
            raise ValueError(f"photonic path must be 'stack' or 'fast', got {self.photonic.get('path')!r}")

    @property
    def label(self) -> str:
        if self.train.method == "bp":
            return "bp"
        if self.feedback == "photonic":
            return f"dfa-photonic-{(self.photonic or {}).get('path', 'stack')}"
        return "dfa" if self.feedback == "digital" else f"dfa-{self.feedback}"

    def seeds(self) -> dict[str, int]:
        return derive_seeds(self.seed)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Experiment:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown experiment fields {sorted(unknown)}")
        values = dict(data)
        if "hidden" in values:
            if not isinstance(values["hidden"], list | tuple):
                raise ValueError(f"hidden must be a list of layer sizes, got {values['hidden']!r:.40}")
            values["hidden"] = tuple(values["hidden"])
        if "train" in values:
            train = values["train"]
            if not isinstance(train, Mapping):
                raise ValueError(f"train must be a table of training settings, got {train!r:.40}")
            unknown = set(train) - {f.name for f in dataclasses.fields(TrainConfig)}
            if unknown:
                raise ValueError(f"unknown training fields {sorted(unknown)}")
            values["train"] = TrainConfig(**train)
        return cls(**values)

    def load_dataset(self) -> Dataset:
        ds = load_dataset(self.dataset, dtype=np.dtype(self.dtype).type)
        return ds.subset(self.n_train, self.n_test) if (self.n_train or self.n_test) else ds

    def make_feedback(self, n_out: int) -> FeedbackProjector | None:
        if self.train.method == "bp":
            return None
        seeds, dtype = self.seeds(), np.dtype(self.dtype).type
        if self.feedback == "digital":
            return DigitalFeedback(n_out, self.hidden, seed=seeds["feedback"], dtype=dtype)
        if self.feedback == "noisy":
            return NoisyFeedback(n_out, self.hidden, seed=seeds["feedback"], noise_seed=seeds["noise"],
                                 std=self.noise_std, mean=self.noise_mean, dtype=dtype)
        raise ValueError(f"feedback={self.feedback!r} needs the projector passed to build() / run_experiment() / "
                         "resume_experiment() (photonic: labctl.procedures.train builds it from a bench)")

    def build(self, dataset: Dataset | None = None, feedback: FeedbackProjector | None = None) -> Trainer:
        """Model, projector (``feedback`` overrides the spec's, e.g. a photonic one) and trainer."""
        ds = dataset if dataset is not None else self.load_dataset()
        seeds = self.seeds()
        model = MLP((ds.n_features, *self.hidden, ds.n_classes), activation=self.activation,
                    dtype=np.dtype(self.dtype).type, rng=seeds["model"])
        if feedback is None:
            feedback = self.make_feedback(ds.n_classes)
        return Trainer(model, ds, self.train, feedback=feedback if self.train.method == "dfa" else None,
                       shuffle_seed=seeds["shuffle"])


def _drive(run: Run, trainer: Trainer, keep: int) -> None:
    def save(ck: Checkpoint) -> None:
        run.save_checkpoint(ck, f"s{ck.meta['position']['step']:09d}", keep=keep)

    trainer.checkpoint_hooks.append(save)
    trainer.epoch_hooks.append(run.add_epoch)
    with run:
        trainer.run()


def run_experiment(exp: Experiment, *, root: str | os.PathLike[str] | None = None, dataset: Dataset | None = None,
                   feedback: FeedbackProjector | None = None, kind: str | None = None,
                   bench_file: str | os.PathLike[str] | None = None, instruments: Mapping[str, str] | None = None,
                   calibration: str | os.PathLike[str] | None = None, batch_hooks: list[BatchHook] | None = None,
                   keep_checkpoints: int = 2, on_start: Callable[[Run], None] | None = None,
                   epoch_hooks: list[EpochHook] | None = None, pre_batch_hooks: list[BatchHook] | None = None
                   ) -> tuple[Run, Trainer]:
    """Train ``exp`` in a new run folder; run.json is kept current and the run ends finished/failed/interrupted.

    Exceptions propagate after the run is marked (``failed`` or, for Ctrl-C, ``interrupted``). ``on_start(run)``
    is called once the folder exists (e.g. for a projector that records recalibrations in it).
    """
    ds = dataset if dataset is not None else exp.load_dataset()
    trainer = exp.build(ds, feedback)
    params = {"experiment": exp.to_dict(),
              "feedback": trainer.feedback.describe() if trainer.feedback is not None else None}
    run = Run.create(kind or f"{exp.label}-{ds.name}", params, root=root, seeds=exp.seeds(),
                     dataset={"name": ds.name, "n_train": int(ds.y_train.size), "n_test": int(ds.y_test.size),
                              **ds.provenance},
                     bench_file=bench_file, instruments=instruments, calibration=calibration)
    if on_start is not None:
        on_start(run)
    trainer.pre_batch_hooks.extend(pre_batch_hooks or [])
    trainer.batch_hooks.extend(batch_hooks or [])
    trainer.epoch_hooks.extend(epoch_hooks or [])
    _drive(run, trainer, keep_checkpoints)
    return run, trainer


def resume_experiment(run_dir: str | os.PathLike[str], *, dataset: Dataset | None = None,
                      feedback: FeedbackProjector | None = None, batch_hooks: list[BatchHook] | None = None,
                      keep_checkpoints: int = 2, epoch_hooks: list[EpochHook] | None = None,
                      pre_batch_hooks: list[BatchHook] | None = None) -> tuple[Run, Trainer]:
    """Continue a run from its latest checkpoint in the same folder; the result equals an uninterrupted run.

    The dataset must hash the same as recorded; a custom projector (``feedback``) must be the one used before.
    """
    record = Run.open(run_dir).record
    exp = Experiment.from_dict(record["params"]["experiment"])
    ds = dataset if dataset is not None else exp.load_dataset()
    recorded = record.get("dataset", {}).get("files", {})
    if sorted(recorded.values()) != sorted(ds.provenance.get("files", {}).values()):
        raise DatasetError(f"{Path(run_dir)}: dataset files differ from the ones the run was started with "
                           f"(recorded {recorded}, now {ds.provenance.get('files')})")
    trainer = exp.build(ds, feedback)
    run, ckpt = resume(run_dir)
    try:
        trainer.restore(ckpt)
    except BaseException as exc:
        run.finish("failed", exc)
        raise
    run.set_history(trainer.history)
    trainer.pre_batch_hooks.extend(pre_batch_hooks or [])
    trainer.batch_hooks.extend(batch_hooks or [])
    trainer.epoch_hooks.extend(epoch_hooks or [])
    _drive(run, trainer, keep_checkpoints)
    return run, trainer
