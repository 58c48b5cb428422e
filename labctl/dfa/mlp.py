"""A plain numpy multilayer perceptron with the pieces DFA needs exposed: the forward pass keeps every layer's
pre- and post-activation, the output error is a separate step, and gradients are built from per-layer deltas so
backprop and DFA differ only in where the hidden deltas come from.

Conventions (chosen to match Filipovich et al.'s PyTorch simulation so results are comparable):

* layer ``l`` computes ``a_l = h_{l-1} @ W_l + b_l`` with ``W_l`` of shape (n_in, n_out) (the transpose of torch's
  storage, so a batch is a row-major matmul), ``h_l = f(a_l)`` for hidden layers, logits at the output;
* initialisation is torch ``nn.Linear``'s default: ``kaiming_uniform_(a=sqrt(5))`` for weights, which is
  U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and the same bound for biases; drawn from a seeded numpy Generator, layer by
  layer, weight then bias;
* loss is the batch mean of softmax cross-entropy, so the output error ``e = dL/dz = (softmax(z) - onehot) / batch``
  is exactly torch's ``e_vector`` in ``dfa.py``;
* dtype: float32 by default (torch's default, and about twice as fast on CPU), float64 for gradient checks.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import DTypeLike

log = logging.getLogger(__name__)

Activation = Literal["relu", "tanh"]


@dataclass
class ForwardPass:
    """Everything a backward pass needs: inputs and post-activations ``h`` (h[0] = x), pre-activations ``a``."""

    h: list[np.ndarray]
    a: list[np.ndarray]

    @property
    def logits(self) -> np.ndarray:
        return self.a[-1]


def softmax_cross_entropy(logits: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean cross-entropy over the batch and its gradient w.r.t. the logits, ``(softmax - onehot) / batch``."""
    n = logits.shape[0]
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    sum_exp = exp.sum(axis=1, keepdims=True)
    log_p = shifted - np.log(sum_exp)
    rows = np.arange(n)
    loss = float(-log_p[rows, y].astype(np.float64).mean())
    error = exp / sum_exp
    error[rows, y] -= 1
    error /= n
    return loss, error


class MLP:
    """Fully connected network ``sizes[0] -> ... -> sizes[-1]`` with one activation on all hidden layers."""

    def __init__(self, sizes: Sequence[int] = (784, 800, 800, 10), *, activation: Activation = "relu",
                 dtype: DTypeLike = np.float32, rng: np.random.Generator | int = 0) -> None:
        if len(sizes) < 2 or any(int(s) < 1 for s in sizes):
            raise ValueError(f"MLP sizes must be at least two positive layer widths, got {list(sizes)}")
        if activation not in ("relu", "tanh"):
            raise ValueError(f"activation must be 'relu' or 'tanh', got {activation!r}")
        self.sizes = tuple(int(s) for s in sizes)
        self.activation: Activation = activation
        self.dtype = np.dtype(dtype)
        gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        self.weights: list[np.ndarray] = []
        self.biases: list[np.ndarray] = []
        for n_in, n_out in zip(self.sizes[:-1], self.sizes[1:]):
            bound = 1.0 / np.sqrt(n_in)
            self.weights.append(gen.uniform(-bound, bound, (n_in, n_out)).astype(self.dtype))
            self.biases.append(gen.uniform(-bound, bound, n_out).astype(self.dtype))

    @property
    def n_layers(self) -> int:
        return len(self.weights)

    @property
    def hidden_sizes(self) -> tuple[int, ...]:
        return self.sizes[1:-1]

    def params(self) -> list[np.ndarray]:
        """Parameters in a fixed order ``[W0, b0, W1, b1, ...]`` (the optimizer and checkpoints rely on it)."""
        return [p for wb in zip(self.weights, self.biases) for p in wb]

    def _f(self, a: np.ndarray) -> np.ndarray:
        return np.maximum(a, 0) if self.activation == "relu" else np.tanh(a)

    def f_prime(self, a: np.ndarray, h: np.ndarray) -> np.ndarray:
        """Activation derivative from the stored pre/post-activation (ReLU: a > 0, as torch; tanh: 1 - h^2)."""
        if self.activation == "relu":
            return (a > 0).astype(a.dtype)
        return 1 - h * h

    def forward(self, x: np.ndarray) -> ForwardPass:
        h = [np.asarray(x, dtype=self.dtype)]
        a: list[np.ndarray] = []
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            z = h[-1] @ w
            z += b
            a.append(z)
            if i < self.n_layers - 1:
                h.append(self._f(z))
        return ForwardPass(h=h, a=a)

    def logits(self, x: np.ndarray, batch_size: int = 1000) -> np.ndarray:
        """Logits without keeping activations, in chunks to bound memory."""
        x = np.asarray(x, dtype=self.dtype)
        out = []
        for start in range(0, x.shape[0], batch_size):
            z = x[start:start + batch_size]
            for i, (w, b) in enumerate(zip(self.weights, self.biases)):
                z = z @ w + b
                if i < self.n_layers - 1:
                    z = self._f(z)
            out.append(z)
        return np.concatenate(out) if out else np.zeros((0, self.sizes[-1]), self.dtype)

    def backprop_deltas(self, fwd: ForwardPass, error: np.ndarray) -> list[np.ndarray]:
        """Hidden-layer deltas ``dL/da_l`` by the chain rule (backpropagation)."""
        deltas: list[np.ndarray] = []
        g = error
        for layer in range(self.n_layers - 1, 0, -1):
            g_h = g @ self.weights[layer].T
            g = g_h * self.f_prime(fwd.a[layer - 1], fwd.h[layer])
            deltas.append(g)
        return deltas[::-1]

    def gradients(self, fwd: ForwardPass, hidden_deltas: Sequence[np.ndarray], error: np.ndarray
                  ) -> list[np.ndarray]:
        """Parameter gradients ``[dW0, db0, ...]`` from the hidden deltas and the output error."""
        deltas = [*hidden_deltas, error]
        if len(deltas) != self.n_layers:
            raise ValueError(f"need {self.n_layers - 1} hidden deltas, got {len(hidden_deltas)}")
        grads: list[np.ndarray] = []
        for layer, d in enumerate(deltas):
            grads.append(fwd.h[layer].T @ d)
            grads.append(d.sum(axis=0))
        return grads

    def loss_and_gradients(self, x: np.ndarray, y: np.ndarray) -> tuple[float, list[np.ndarray]]:
        """Backprop loss and gradients for one batch (used by the gradient check)."""
        fwd = self.forward(x)
        loss, error = softmax_cross_entropy(fwd.logits, y)
        return loss, self.gradients(fwd, self.backprop_deltas(fwd, error), error)

    def state_arrays(self) -> dict[str, np.ndarray]:
        return {f"model/{kind}{i}": p for i, (w, b) in enumerate(zip(self.weights, self.biases))
                for kind, p in (("W", w), ("b", b))}

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        for i in range(self.n_layers):
            for kind, target in (("W", self.weights), ("b", self.biases)):
                value = np.asarray(arrays[f"model/{kind}{i}"])
                if value.shape != target[i].shape:
                    raise ValueError(f"checkpoint {kind}{i} has shape {value.shape}, model has {target[i].shape}")
                target[i][...] = value
