"""Precision advice: the same problem in float32 and float64, compared over the horizon.

Taichi fixes a process's precision at start-up, so each precision runs in a fresh
process (``multiprocessing``'s spawn), built by a *problem factory*: a picklable callable
(a module-level function, or a ``functools.partial`` of one) returning ``(simulation,
loss, wrt)``. Each process runs the forward and the gradient; the parent compares the
outputs time level by time level and the gradients parameter by parameter.
"""

from __future__ import annotations

import math
import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["PrecisionAdvice", "precision_advice", "run_problem"]

ProblemFactory = Callable[[], tuple[Any, Any, Sequence[str] | None]]


def _per_level(raw: dict[str, np.ndarray], steps: int, times: Sequence[int] | None
               ) -> np.ndarray:
    """Stack the time-first outputs into ``[steps + 1, values]`` (NaN rows where unrecorded)."""
    columns = []
    for arr in raw.values():
        a = np.asarray(arr, dtype=np.float64)
        flat = a.reshape(a.shape[0], -1)
        if a.shape[0] == steps + 1:
            columns.append(flat)
        elif times is not None and a.shape[0] == len(times):
            full = np.full((steps + 1, flat.shape[1]), np.nan)
            full[np.asarray(times, dtype=int)] = flat
            columns.append(full)
    return np.concatenate(columns, axis=1) if columns else np.zeros((steps + 1, 0))


def run_problem(factory: ProblemFactory, precision: str, threads: int | None = None
                ) -> dict[str, Any]:
    """Initialise diffsim in ``precision`` and run the factory's problem (in this process).

    Returns the loss, the outputs per time level ``[steps + 1, values]``, and the
    gradients (float64 copies). Meant for a fresh process: see :func:`precision_advice`.
    """
    import diffsim

    diffsim.init("cpu", precision, threads=threads)  # type: ignore[arg-type]
    simulation, loss, wrt = factory()
    with simulation:
        res = simulation.value_and_grad(loss, wrt=wrt)
        stepper = simulation._stepper(loss)
        levels = _per_level(stepper.outputs(), int(stepper.steps), getattr(stepper, "times", None))
    return {"loss": float(res.loss), "levels": levels,
            "grads": {k: np.asarray(v, dtype=np.float64) for k, v in res.grads.items()}}


@dataclass(frozen=True)
class PrecisionAdvice:
    """What :func:`precision_advice` found.

    Attributes:
        digits: correct significant digits of the float32 outputs at each time level,
            ``[steps + 1]``: ``-log10(‖y32 - y64‖ / max_t ‖y64‖)`` (NaN where nothing is
            recorded), capped at 16.
        gradient_error: ``‖g32 - g64‖ / ‖g64‖`` per parameter.
        loss32, loss64: the two losses.
        wanted: the digits asked for.
        lost_at: the first time level where float32 keeps fewer than ``wanted`` digits
            (``None`` if it never does).
        use_float64: the recommendation.
        recommendation: a sentence saying why.
    """

    digits: np.ndarray
    gradient_error: dict[str, float]
    loss32: float
    loss64: float
    wanted: float
    lost_at: int | None
    use_float64: bool
    recommendation: str

    def summary(self) -> str:
        """A few lines."""
        lines = [f"precision: {self.recommendation}",
                 f"  loss float32 {self.loss32:.9g}, float64 {self.loss64:.9g}"]
        for name, err in self.gradient_error.items():
            lines.append(f"  gradient {name!r}: float32 differs by {err:.2e} (relative)")
        finite = self.digits[np.isfinite(self.digits)]
        if finite.size:
            lines.append(f"  outputs: {finite.min():.1f} to {finite.max():.1f} correct digits "
                         "over the horizon")
        return "\n".join(lines)

    def plot(self, path: object, *, dt: float | None = None) -> None:
        """Correct digits of the float32 outputs against time (PNG)."""
        import pathlib

        from diffsim._plot import pyplot, save_figure

        plt = pyplot()
        fig, ax = plt.subplots(figsize=(6, 3.4))
        t = np.arange(self.digits.size) * (dt or 1.0)
        ax.plot(t, self.digits, ".-", ms=2, lw=0.8)
        ax.axhline(self.wanted, color="C3", lw=0.8, ls="--", label=f"{self.wanted:g} digits")
        if self.lost_at is not None:
            ax.axvline(self.lost_at * (dt or 1.0), color="C3", lw=0.8)
        ax.set_ylim(0, 16.5)
        ax.set_xlabel("time (s)" if dt else "time step t")
        ax.set_ylabel("correct digits, float32")
        ax.set_title("float32 against float64: " + ("use float64" if self.use_float64
                                                    else "float32 is enough"))
        ax.legend(fontsize=8)
        fig.tight_layout()
        save_figure(fig, pathlib.Path(str(path)))


def compare(r32: dict[str, Any], r64: dict[str, Any], *, digits: float = 3.0) -> PrecisionAdvice:
    """Compare two :func:`run_problem` results (float32, float64)."""
    y32, y64 = r32["levels"], r64["levels"]
    scale = float(np.nanmax(np.linalg.norm(np.nan_to_num(y64), axis=1))) if y64.size else 0.0
    err = np.linalg.norm(y32 - y64, axis=1)
    recorded = np.all(np.isfinite(y64), axis=1) & (y64.shape[1] > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = err / scale if scale > 0 else np.full(err.shape, np.nan)
        dig = np.where(recorded, np.minimum(16.0, -np.log10(np.maximum(rel, 1e-16))), np.nan)
    dig = np.where(recorded & ~np.isfinite(err), 0.0, dig)     # float32 overflowed
    gerr = {}
    for name, g64 in r64["grads"].items():
        g32 = r32["grads"][name]
        norm = float(np.linalg.norm(g64))
        gerr[name] = (float(np.linalg.norm(g32 - g64)) / norm if norm > 0
                      else float(np.linalg.norm(g32)))
    below = np.flatnonzero(np.isfinite(dig) & (dig < digits))
    lost_at = int(below[0]) if below.size else None
    worst = max(gerr.values(), default=0.0)
    grad_digits = -math.log10(max(worst, 1e-16)) if math.isfinite(worst) else 0.0
    use64 = lost_at is not None or grad_digits < digits
    if use64:
        why = []
        if lost_at is not None:
            why.append(f"its outputs keep fewer than {digits:g} correct digits from time level "
                       f"{lost_at} on")
        if grad_digits < digits:
            why.append(f"its gradient keeps {max(grad_digits, 0.0):.1f} digits")
        text = "use float64: in float32 " + " and ".join(why)
    elif np.any(np.isfinite(dig)):
        text = (f"float32 is enough: its outputs keep at least {np.nanmin(dig):.1f} digits over "
                f"the horizon and its gradient {grad_digits:.1f}")
    else:
        text = (f"float32 is enough: its gradient keeps {grad_digits:.1f} digits (the outputs "
                "are not recorded per time level, so only the gradient was compared)")
    return PrecisionAdvice(dig, gerr, float(r32["loss"]), float(r64["loss"]), float(digits),
                           lost_at, use64, text)


def precision_advice(factory: ProblemFactory, *, digits: float = 3.0,
                     threads: int | None = None) -> PrecisionAdvice:
    """Run ``factory``'s problem in float32 and in float64 (fresh processes) and compare.

    Args:
        factory: a picklable callable returning ``(simulation, loss, wrt)``: a module-level
            function or a ``functools.partial`` of one (a lambda cannot reach another
            process).
        digits: correct digits the outputs and the gradient must keep in float32.
        threads: CPU threads per run (default: Taichi's).

    Returns:
        :class:`PrecisionAdvice`.
    """
    if not (isinstance(digits, (int, float)) and 0 < digits < 16):
        raise ValueError(f"digits={digits!r} must lie in (0, 16)")
    ctx = multiprocessing.get_context("spawn")
    results = {}
    for precision in ("float32", "float64"):
        with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
            results[precision] = pool.submit(run_problem, factory,
                                             "f32" if precision == "float32" else "f64",
                                             threads).result()
    return compare(results["float32"], results["float64"], digits=digits)
