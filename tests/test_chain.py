"""Forward physics of the oscillator chain against closed forms and invariants."""

from __future__ import annotations

import numpy as np
import pytest

from diffsim import rollout as run_forward
from diffsim.chain import OscillatorChain, energy, period


def rollout(**kwargs) -> dict:
    chain = OscillatorChain(**kwargs)
    out = run_forward(chain)
    chain.destroy()
    return out


def zero_crossings(t: np.ndarray, q: np.ndarray) -> np.ndarray:
    up = np.nonzero((q[:-1] < 0) & (q[1:] >= 0))[0]
    return t[up] - q[up] * (t[up + 1] - t[up]) / (q[up + 1] - q[up])


def test_single_mass_period() -> None:
    k, m, dt, steps = 40.0, 0.5, 1e-3, 6000
    out = rollout(stiffness=k, mass=m, forcing=np.zeros((steps, 1)), dt=dt, observed=[0],
                  v0=1.0)
    q = out["positions"][:, 0]
    crossings = zero_crossings(dt * np.arange(steps + 1), q)
    measured = float(np.mean(np.diff(crossings)))
    omega_dt = np.sqrt(2 * k / m) * dt
    discrete = 2 * np.pi * dt / np.arccos(1 - omega_dt**2 / 2)  # symplectic Euler's own period
    assert measured == pytest.approx(discrete, rel=1e-6)
    assert measured == pytest.approx(period(k, m), rel=omega_dt**2)


def test_symplectic_energy_is_bounded_without_drift() -> None:
    rng = np.random.default_rng(4)
    n, steps, dt = 8, 10000, 2e-3
    k = rng.uniform(50, 100, n + 1)
    m = rng.uniform(0.5, 1.0, n)
    beta = rng.uniform(0, 50, n + 1)
    out = rollout(stiffness=k, mass=m, beta=beta, forcing=np.zeros((steps, n)), dt=dt,
                  observed=list(range(n)), q0=rng.normal(0, 0.1, n))
    e = energy(out["positions"], out["velocities"], k, m, beta)
    rel = np.abs(e - e[0]) / e[0]
    assert rel.max() < 0.05  # O(dt) oscillation of the modified energy ...
    window = steps // 10
    assert abs(e[:window].mean() - e[-window:].mean()) / e[0] < 1e-3  # ... but no drift


def test_first_order_convergence() -> None:
    k, m, beta, t_end = 30.0, 1.0, 20.0, 1.0
    n = 3

    def final(dt: float) -> np.ndarray:
        steps = round(t_end / dt)
        out = rollout(stiffness=k, mass=m, beta=beta, forcing=np.zeros((steps, n)), dt=dt,
                      observed=[0, 1, 2], q0=[0.1, -0.05, 0.02])
        return out["positions"][-1]

    reference = final(1e-4)
    errors = [np.linalg.norm(final(dt) - reference) for dt in (8e-3, 4e-3, 2e-3)]
    orders = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    assert np.all(np.abs(orders - 1.0) < 0.15), orders


def test_input_validation() -> None:
    base = dict(stiffness=1.0, mass=1.0, forcing=np.zeros((4, 3)), dt=0.1, observed=[0])
    with pytest.raises(ValueError, match="stiffness has shape \\(2,\\); expected \\(4,\\)"):
        OscillatorChain(**{**base, "stiffness": [1.0, 2.0]})
    with pytest.raises(ValueError, match="mass must be > 0 everywhere"):
        OscillatorChain(**{**base, "mass": [1.0, -1.0, 1.0]})
    with pytest.raises(ValueError, match="dt=5.0 s is unstable.*dt < 2 / omega_max = 1 s"):
        OscillatorChain(**{**base, "dt": 5.0})
    with pytest.raises(ValueError, match="observed indices \\[3\\] must lie in \\[0, 2\\]"):
        OscillatorChain(**{**base, "observed": [3]})
    with pytest.raises(ValueError, match="forcing contains NaN"):
        OscillatorChain(**{**base, "forcing": np.full((4, 3), np.nan)})
    with pytest.raises(ValueError, match="adjoint='jax'"):
        OscillatorChain(**{**base, "adjoint": "jax"})
