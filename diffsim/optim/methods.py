"""The optimisers: L-BFGS-B (through SciPy) and projected Adam, as small strategy objects."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["LBFGSB", "Adam", "AdamState", "adam_step", "stop_reason"]


@dataclass(frozen=True)
class LBFGSB:
    """SciPy's L-BFGS-B.

    Attributes:
        max_line_search: line-search evaluations per iteration (SciPy's ``maxls``).
        gtol: stop when the largest projected gradient entry is below this (0: never).
        max_evaluations: objective evaluations in all (``None``: SciPy's default, 15000).
    """

    max_line_search: int = 20
    gtol: float = 1e-5
    max_evaluations: int | None = None

    def __post_init__(self) -> None:
        if self.max_line_search < 1:
            raise ValueError(f"max_line_search={self.max_line_search} must be at least 1")


@dataclass(frozen=True)
class Adam:
    """Projected Adam: an Adam step, then ``x`` clipped into the bounds.

    Attributes:
        lr: step size in units of ``x``.
        beta1, beta2: decay rates of the first and second moment estimates.
        eps: added to the root of the second moment.
    """

    lr: float
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-12

    def __post_init__(self) -> None:
        if not self.lr > 0:
            raise ValueError(f"lr={self.lr} must be positive")
        for name in ("beta1", "beta2"):
            value = getattr(self, name)
            if not 0 <= value < 1:
                raise ValueError(f"{name}={value} must be in [0, 1)")


@dataclass
class AdamState:
    """Projected Adam's state: the point, the moment estimates and the iteration count."""

    x: np.ndarray
    m: np.ndarray
    v: np.ndarray
    iteration: int = 0


def adam_step(state: AdamState, grad: np.ndarray, method: Adam, lower: np.ndarray | None,
              upper: np.ndarray | None) -> AdamState:
    """One Adam step from ``state`` with gradient ``grad``, then clip into ``[lower, upper]``."""
    t = state.iteration + 1
    m = method.beta1 * state.m + (1 - method.beta1) * grad
    v = method.beta2 * state.v + (1 - method.beta2) * grad * grad
    mhat = m / (1 - method.beta1**t)
    vhat = v / (1 - method.beta2**t)
    x = state.x - method.lr * mhat / (np.sqrt(vhat) + method.eps)
    if lower is not None and upper is not None:
        x = np.clip(x, lower, upper)
    return AdamState(x, m, v, t)


def stop_reason(message: object) -> str:
    """SciPy's L-BFGS-B stop message as a plain sentence.

    SciPy spells its messages with underscores in some versions and spaces in others;
    both are recognised.
    """
    text = str(message)
    plain_text = text.upper().replace("_", " ")
    plain = {
        "TOTAL NO. OF ITERATIONS REACHED LIMIT": "the iteration limit was reached",
        "TOTAL NO. OF F,G EVALUATIONS EXCEEDS LIMIT": "the evaluation limit was reached",
        "CONVERGENCE: REL_REDUCTION_OF_F_<=_FACTOR*EPSMCH": "converged (the misfit stopped decreasing)",
        "CONVERGENCE: NORM_OF_PROJECTED_GRADIENT_<=_PGTOL": "converged (the projected gradient is tiny)",
        "ABNORMAL_TERMINATION_IN_LNSRCH": "the line search found no lower misfit in the current "
                                           "direction (often converged to the data's precision)",
    }
    for key, sentence in plain.items():
        if key.replace("_", " ") in plain_text:
            return sentence
    return text.removeprefix("STOP: ").lower()
