"""The DFA feedback projection ``B_l e`` as an interface, so digital, noisy and photonic versions are
interchangeable under the same trainer.

DFA (Nøkland 2016) gives hidden layer ``l`` the delta ``(B_l e) ⊙ f'(a_l)``, with a fixed random ``B_l`` and the
output error ``e``. The trainer only calls :meth:`FeedbackProjector.project`; it applies ``f'(a_l)`` itself.

Filipovich et al. (Optica 2022; ``Shastri-Lab/dfa_optica_paper``, ``dfa.py``) compute ``B_l e`` on microring
weight banks. This module follows their simulation exactly:

* ``B_l ~ U(-1, 1)`` with shape ``(n_out, n_l)`` (their ``torch.rand(e_size, layer.size) * 2 - 1``), fixed for the
  run; we draw it from a numpy Generator seeded by ``seed``, layer 0 first;
* ``B_e = e @ B_l`` with ``e`` the gradient of the batch-mean loss w.r.t. the logits, shape (batch, n_out);
* optional measurement noise ``max|e| * N(mean, std)`` added to every element of ``B_e``, ``max`` over the whole
  batch (their experiment: std 0.618, mean 0.03);
* then ``B_e / sqrt(n_l)`` (after the noise), which keeps hidden deltas O(1) whatever the width.

The seam for hardware is :class:`MatVecEngine`: something that, once programmed with the ``B_l`` matrices,
returns ``e @ B_l`` for a batch of errors. :class:`MatVecFeedback` owns the matrices (made from a seed, so they can
be recorded and reproduced), programs the engine, and applies the digital ``1/sqrt(n_l)``. The later
``PhotonicFeedback`` is ``MatVecFeedback(..., engine=<photonic engine>)``: the engine encodes ``e`` on the WDM
carriers (normalising by ``max|e|`` and rescaling its result, so the product is in the units of ``e @ B_l``),
programs ``B_l`` into ring weights (tiling to the bank size as it needs) and counts what it did in
:meth:`MatVecEngine.pop_counters` (``reconfigurations``, ``transactions``, ``projected_time_s``), which the
trainer stores per epoch in the history.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import DTypeLike

log = logging.getLogger(__name__)


@runtime_checkable
class FeedbackProjector(Protocol):
    """Computes the DFA feedback signal for each hidden layer; owns the fixed random matrices."""

    def project(self, layer: int, error: np.ndarray) -> np.ndarray:
        """(batch, n_out) output error -> (batch, n_hidden_layer) signal that replaces dL/dh_layer."""
        ...

    def matrices(self) -> list[np.ndarray]:
        """The feedback matrices ``B_l``, shape (n_out, n_hidden_l), as used (read-only views)."""
        ...

    def pop_counters(self) -> dict[str, float]:
        """Hardware counters accumulated since the last call (empty for digital projectors), then reset."""
        ...

    def describe(self) -> dict[str, Any]:
        """JSON-able parameters for the run record."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """JSON-able state needed for an exact resume (RNG states, matrix hash)."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None:
        ...


class MatVecEngine(Protocol):
    """What computes ``e @ B_l`` once programmed: numpy here, the microring weight banks later."""

    def program(self, matrices: Sequence[np.ndarray]) -> None:
        """Load the fixed feedback matrices (called once, and again after a resume)."""
        ...

    def matvec(self, layer: int, error: np.ndarray) -> np.ndarray:
        """(batch, n_out) -> (batch, n_l): ``error @ B_layer`` as the engine computes it (with its errors)."""
        ...

    def pop_counters(self) -> dict[str, float]:
        ...

    def describe(self) -> dict[str, Any]:
        ...

    def state_dict(self) -> dict[str, Any]:
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None:
        ...


def feedback_matrices(n_out: int, hidden_sizes: Sequence[int], seed: int, dtype: DTypeLike = np.float32
                      ) -> list[np.ndarray]:
    """``B_l ~ U(-1, 1)`` of shape (n_out, n_l), layer 0 first, from ``default_rng(seed)``."""
    gen = np.random.default_rng(seed)
    return [gen.uniform(-1.0, 1.0, (n_out, int(n))).astype(dtype) for n in hidden_sizes]


def matrices_sha256(matrices: Sequence[np.ndarray]) -> str:
    h = hashlib.sha256()
    for m in matrices:
        h.update(str((m.shape, m.dtype.str)).encode())
        h.update(np.ascontiguousarray(m).tobytes())
    return h.hexdigest()


class ExactMatVec:
    """The ideal engine: ``error @ B`` in the network's dtype."""

    def __init__(self) -> None:
        self._b: list[np.ndarray] = []

    def program(self, matrices: Sequence[np.ndarray]) -> None:
        self._b = list(matrices)

    def matvec(self, layer: int, error: np.ndarray) -> np.ndarray:
        return error @ self._b[layer]

    def pop_counters(self) -> dict[str, float]:
        return {}

    def describe(self) -> dict[str, Any]:
        return {"engine": "exact"}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class NoisyMatVec(ExactMatVec):
    """Filipovich's inner-product error model: ``e @ B + max|e| * N(mean, std)`` elementwise, max over the batch.

    The noise RNG is its own seeded Generator (their ``np.random.normal`` was unseeded), saved in checkpoints.
    """

    def __init__(self, std: float = 0.618, mean: float = 0.03, seed: int = 0) -> None:
        super().__init__()
        self.std, self.mean, self.seed = float(std), float(mean), int(seed)
        self.rng = np.random.default_rng(seed)

    def matvec(self, layer: int, error: np.ndarray) -> np.ndarray:
        exact = error @ self._b[layer]
        scale = np.abs(error).max() if error.size else 0.0
        noise = self.rng.standard_normal(exact.shape, dtype=exact.dtype if exact.dtype == np.float32
                                         else np.float64)
        noise *= self.std
        noise += self.mean
        noise *= scale
        exact += noise.astype(exact.dtype, copy=False)
        return exact

    def describe(self) -> dict[str, Any]:
        return {"engine": "filipovich_noise", "std": self.std, "mean": self.mean, "seed": self.seed}

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]


class MatVecFeedback:
    """DFA feedback ``engine(e @ B_l) / sqrt(n_l)`` with seeded ``B_l ~ U(-1, 1)``; the base of every projector."""

    kind = "matvec"

    def __init__(self, n_out: int, hidden_sizes: Sequence[int], *, seed: int = 0, engine: MatVecEngine,
                 dtype: DTypeLike = np.float32) -> None:
        self.n_out = int(n_out)
        self.hidden_sizes = tuple(int(n) for n in hidden_sizes)
        self.seed = int(seed)
        self.dtype = np.dtype(dtype)
        self._b = feedback_matrices(self.n_out, self.hidden_sizes, self.seed, self.dtype)
        for m in self._b:
            m.flags.writeable = False
        self._scale = [self.dtype.type(1.0 / np.sqrt(n)) for n in self.hidden_sizes]
        self.engine = engine
        self.engine.program(self._b)
        self._sha = matrices_sha256(self._b)

    def project(self, layer: int, error: np.ndarray) -> np.ndarray:
        if error.ndim != 2 or error.shape[1] != self.n_out:
            raise ValueError(f"error must be (batch, {self.n_out}), got {error.shape}")
        out = np.asarray(self.engine.matvec(layer, error))
        if out.shape != (error.shape[0], self.hidden_sizes[layer]):
            raise ValueError(f"engine returned shape {out.shape} for layer {layer}, expected "
                             f"{(error.shape[0], self.hidden_sizes[layer])}")
        return out * self._scale[layer]  # not in place: an engine may hand back its own buffer

    def matrices(self) -> list[np.ndarray]:
        return list(self._b)

    def pop_counters(self) -> dict[str, float]:
        return self.engine.pop_counters()

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "seed": self.seed, "n_out": self.n_out, "hidden_sizes": list(self.hidden_sizes),
                "distribution": "U(-1,1)", "scaling": "1/sqrt(n_l) after the engine", "matrices_sha256": self._sha,
                **self.engine.describe()}

    def state_dict(self) -> dict[str, Any]:
        return {"matrices_sha256": self._sha, "engine": self.engine.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("matrices_sha256") != self._sha:
            raise ValueError("checkpoint was made with different feedback matrices (seed or sizes differ): "
                             f"{state.get('matrices_sha256')} != {self._sha}")
        self.engine.load_state_dict(state.get("engine", {}))


class DigitalFeedback(MatVecFeedback):
    """Exact DFA feedback ``(e @ B_l) / sqrt(n_l)``."""

    kind = "digital"

    def __init__(self, n_out: int, hidden_sizes: Sequence[int], *, seed: int = 0, dtype: DTypeLike = np.float32
                 ) -> None:
        super().__init__(n_out, hidden_sizes, seed=seed, engine=ExactMatVec(), dtype=dtype)


class NoisyFeedback(MatVecFeedback):
    """Filipovich's photonic error model: noise ``max|e| * N(mean, std)`` on ``e @ B_l`` before the 1/sqrt(n_l)."""

    kind = "noisy"

    def __init__(self, n_out: int, hidden_sizes: Sequence[int], *, seed: int = 0, noise_seed: int = 1,
                 std: float = 0.618, mean: float = 0.03, dtype: DTypeLike = np.float32) -> None:
        super().__init__(n_out, hidden_sizes, seed=seed, engine=NoisyMatVec(std, mean, noise_seed), dtype=dtype)
