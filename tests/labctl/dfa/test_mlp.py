"""MLP: backprop gradients against finite differences, torch-default initialisation, loss, dtypes."""

from __future__ import annotations

import numpy as np
import pytest

from labctl.dfa.mlp import MLP, softmax_cross_entropy


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_backprop_matches_finite_differences(activation: str) -> None:
    rng = np.random.default_rng(3)
    model = MLP((6, 7, 5, 4), activation=activation, dtype=np.float64, rng=1)
    x = rng.standard_normal((9, 6))
    y = rng.integers(0, 4, 9)
    _, grads = model.loss_and_gradients(x, y)
    eps = 1e-6
    for p, g in zip(model.params(), grads):
        assert g.shape == p.shape and g.dtype == np.float64
        numeric = np.empty_like(p)
        for i in np.ndindex(p.shape):
            old = p[i]
            p[i] = old + eps
            up, _ = model.loss_and_gradients(x, y)
            p[i] = old - eps
            down, _ = model.loss_and_gradients(x, y)
            p[i] = old
            numeric[i] = (up - down) / (2 * eps)
        np.testing.assert_allclose(g, numeric, rtol=1e-5, atol=1e-8)


def test_softmax_cross_entropy_and_error() -> None:
    rng = np.random.default_rng(0)
    z = rng.standard_normal((5, 3)) * 10
    y = np.array([0, 2, 1, 1, 0])
    loss, e = softmax_cross_entropy(z, y)
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    assert loss == pytest.approx(-np.mean(np.log(p[np.arange(5), y])))
    np.testing.assert_allclose(e, (p - np.eye(3)[y]) / 5)
    big_loss, _ = softmax_cross_entropy(np.array([[1000.0, -1000.0]]), np.array([1]))
    assert big_loss == pytest.approx(2000.0)  # stable for large logits


def test_init_is_torch_linear_default_and_seeded() -> None:
    model = MLP((784, 800, 800, 10), rng=0)
    assert [w.shape for w in model.weights] == [(784, 800), (800, 800), (800, 10)]
    for w, b, fan_in in zip(model.weights, model.biases, (784, 800, 800)):
        bound = 1 / np.sqrt(fan_in)
        assert np.abs(w).max() <= bound and np.abs(b).max() <= bound
        assert w.std() == pytest.approx(bound / np.sqrt(3), rel=0.02)  # uniform
    same = MLP((784, 800, 800, 10), rng=0)
    assert all(np.array_equal(a, b) for a, b in zip(model.params(), same.params()))
    other = MLP((784, 800, 800, 10), rng=1)
    assert not np.array_equal(model.weights[0], other.weights[0])


def test_float32_end_to_end_and_chunked_logits() -> None:
    rng = np.random.default_rng(0)
    model = MLP((8, 16, 3), rng=0)
    x = rng.standard_normal((50, 8))
    fwd = model.forward(x)
    assert all(a.dtype == np.float32 for a in fwd.a + fwd.h)
    np.testing.assert_allclose(model.logits(x, batch_size=7), fwd.logits, rtol=1e-5, atol=1e-6)
    _, grads = model.loss_and_gradients(x, rng.integers(0, 3, 50))
    assert all(g.dtype == np.float32 for g in grads)


def test_bad_configuration() -> None:
    with pytest.raises(ValueError, match="activation"):
        MLP((3, 2), activation="sigmoid")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sizes"):
        MLP((3,))
