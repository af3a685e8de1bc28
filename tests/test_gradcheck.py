"""The public gradient-check utilities on functions with known derivatives."""

from __future__ import annotations

import numpy as np
import pytest

from diffsim.gradcheck import dot_product_test, fd_sweep, taylor_test


def rosenbrock(x: np.ndarray) -> float:
    return float(np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2))


def rosenbrock_grad(x: np.ndarray) -> np.ndarray:
    g = np.zeros_like(x)
    g[:-1] = -400.0 * x[:-1] * (x[1:] - x[:-1] ** 2) - 2 * (1 - x[:-1])
    g[1:] += 200.0 * (x[1:] - x[:-1] ** 2)
    return g


@pytest.fixture
def point() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.normal(size=5), rng.normal(size=5)


def test_fd_sweep_has_a_v_curve(point) -> None:
    x, d = point
    sweep = fd_sweep(rosenbrock, x, d, rosenbrock_grad(x))
    assert sweep.best_error < 1e-8
    best = int(np.argmin(sweep.errors))
    # Truncation error on the large-step side, round-off on the small-step side.
    assert sweep.errors[0] > 100 * sweep.best_error
    assert sweep.errors[-1] > 100 * sweep.best_error
    assert 0 < best < len(sweep.errors) - 1
    assert "directional derivative" in sweep.table()


def test_fd_sweep_flags_a_wrong_gradient(point) -> None:
    x, d = point
    assert fd_sweep(rosenbrock, x, d, 1.01 * rosenbrock_grad(x)).best_error > 1e-3


def test_taylor_slopes(point) -> None:
    x, d = point
    good = taylor_test(rosenbrock, x, d, rosenbrock_grad(x))
    assert good.first_order == pytest.approx(1.0, abs=0.1)
    assert good.second_order == pytest.approx(2.0, abs=0.1)
    bad = taylor_test(rosenbrock, x, d, rosenbrock_grad(x) + 0.1 * d, h0=1e-5)
    assert bad.second_order == pytest.approx(1.0, abs=0.1)
    assert "slope" in good.table()


def test_dot_product_test() -> None:
    rng = np.random.default_rng(1)
    a = rng.normal(size=(4, 6))
    x, y = rng.normal(size=6), rng.normal(size=4)
    exact = dot_product_test(lambda v: a @ v, lambda w: a.T @ w, x, y)
    assert exact.relative_error < 1e-14
    wrong = dot_product_test(lambda v: a @ v, lambda w: (a.T @ w) * 1.001, x, y)
    assert wrong.relative_error > 1e-4


def test_argument_errors(point) -> None:
    x, d = point
    with pytest.raises(ValueError, match="direction has shape \\(3,\\); expected the shape of x"):
        fd_sweep(rosenbrock, x, d[:3], rosenbrock_grad(x))
    with pytest.raises(ValueError, match="direction is all zeros"):
        taylor_test(rosenbrock, x, np.zeros_like(x), rosenbrock_grad(x))
    with pytest.raises(ValueError, match="apply\\(x\\) has shape"):
        dot_product_test(lambda v: v, lambda w: w, np.ones(3), np.ones(2))
