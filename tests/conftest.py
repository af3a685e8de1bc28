"""One Taichi runtime for the whole test session: CPU, float64."""

from __future__ import annotations

import numpy as np
import pytest

import diffsim


def pytest_configure(config: pytest.Config) -> None:  # noqa: ARG001
    diffsim.init("cpu", "f64")


def tolerance(dtype: str = "f64", kind: str = "exact") -> float:
    """Relative tolerances, keyed by precision and by what is compared.

    exact: two computations of the same discrete gradient (schedules, providers).
    fd: the bottom of the finite-difference V-curve.
    """
    table = {
        ("f64", "exact"): 1e-13,
        ("f64", "provider"): 1e-12,
        ("f64", "fd"): 1e-7,
        ("f32", "exact"): 1e-5,
        ("f32", "fd"): 1e-2,
    }
    return table[(dtype, kind)]


def chain_problem(seed: int = 0, n: int = 6, steps: int = 40) -> tuple[dict, np.ndarray]:
    """A small nonlinear chain, its keyword arguments and observed data."""
    rng = np.random.default_rng(seed)
    forcing = np.zeros((steps, n))
    forcing[:5, 0] = 1.0
    forcing += rng.normal(0.0, 0.1, forcing.shape)
    kwargs = dict(
        stiffness=rng.uniform(50.0, 100.0, n + 1),
        mass=rng.uniform(0.5, 1.0, n),
        beta=rng.uniform(0.0, 100.0, n + 1),
        forcing=forcing,
        dt=0.02,
        observed=[1, n - 1],
        q0=rng.normal(0.0, 0.05, n),
        v0=rng.normal(0.0, 0.05, n),
    )
    observed = rng.normal(0.0, 0.01, (steps + 1, 2))
    return kwargs, observed


def l2_loss(observed: np.ndarray):
    """0.5 * sum of squared residuals of the "positions" output, with its cotangent."""

    def loss(outputs: dict) -> tuple[float, dict]:
        r = outputs["positions"] - observed
        return 0.5 * float(np.sum(r * r)), {"positions": r}

    return loss


SHARED_DATA = __import__("pathlib").Path(__file__).resolve().parents[2] / "shared" / "data"


def data_folder() -> __import__('pathlib').Path:
    """The shared folder of real velocity models (tests read them there; never copied)."""
    import os
    import pathlib

    env = os.environ.get("DIFFSIM_DATA")
    return pathlib.Path(env) if env else SHARED_DATA
