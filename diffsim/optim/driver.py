"""One optimisation loop for every diffsim problem: iterations, history, progress, resume.

:func:`minimize` runs L-BFGS-B or projected Adam on ``objective(x) -> (value, gradient)``
and records every iteration in a :class:`History` (written atomically after each
iteration, with a progress line). Combined with an
:class:`~diffsim.optim.store.EvaluationStore` on disk, a run killed at any point and
started again replays its finished evaluations from the store and ends with the same
result, bit for bit, as a run that was never interrupted. FWI (stage by stage), spring
design and the chain demo all run through this loop.
"""

from __future__ import annotations

import pathlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import minimize as scipy_minimize

from diffsim.io import read_json, write_json
from diffsim.optim.methods import LBFGSB, Adam, AdamState, adam_step, stop_reason
from diffsim.optim.store import Objective

__all__ = ["History", "MinimizeResult", "minimize"]


class History:
    """The record of a run: one entry per iteration, iteration 0 being the start.

    Every entry holds ``iteration``, ``loss``, ``gradient_norm``, ``seconds`` (wall time
    since the run began, earlier sessions of a resumed run included) and the problem's
    own metrics. Several :func:`minimize` calls may share one history (FWI's frequency
    stages); iterations are numbered across them.

    Args:
        path: the JSON file rewritten after every entry, or ``None`` for none.
        resume: read the entries of an earlier session from ``path``; a replayed
            iteration keeps the time it was first recorded at.
        total: iterations planned in all (for the progress bar; 0 for no bar).
        echo: where progress lines go (``None``: quiet).
        label: put before every progress line (e.g. the problem's name).
    """

    def __init__(self, path: pathlib.Path | None = None, *, resume: bool = False, total: int = 0,
                 echo: Callable[[str], None] | None = print, label: str = "") -> None:
        self.path = None if path is None else pathlib.Path(path)
        self.total = total
        self.echo = echo
        self.label = label
        self.entries: list[dict[str, Any]] = []
        self.previous: list[dict[str, Any]] = []
        if resume and self.path is not None and self.path.is_file():
            saved = read_json(self.path)
            self.previous = saved if isinstance(saved, list) else []
        self._clock = time.perf_counter()
        self._offset = float(self.previous[-1].get("seconds", 0.0)) if self.previous else 0.0

    @property
    def seconds(self) -> float:
        """Wall time of the run so far, earlier sessions included."""
        return self._offset + time.perf_counter() - self._clock

    @property
    def next_iteration(self) -> int:
        """The number the next entry gets."""
        return int(self.entries[-1]["iteration"]) + 1 if self.entries else 0

    def record(self, entry: dict[str, Any], describe: Callable[[dict[str, Any]], str] | None = None
               ) -> dict[str, Any]:
        """Add ``entry`` (numbered and timed here), write the file, print a progress line."""
        n = len(self.entries)
        seconds = (float(self.previous[n]["seconds"])
                   if n < len(self.previous) and "seconds" in self.previous[n] else self.seconds)
        entry = {"iteration": self.next_iteration, **entry, "seconds": seconds}
        self.entries.append(entry)
        if self.path is not None:
            write_json(self.path, self.entries)
        if self.echo is not None:
            text = describe(entry) if describe is not None else (
                f"loss {entry['loss']:.6e}  |g| {entry['gradient_norm']:.3e}")
            it = entry["iteration"]
            bar = f"[{'#' * round(20 * min(it, self.total) / self.total):<20s}] {it:3d}/{self.total}  " \
                if self.total else f"iter {it:3d}  "
            head = f"{self.label}: " if self.label else ""
            self.echo(f"{head}{bar}{text}  {seconds:.1f} s")
        return entry

    def best(self) -> dict[str, Any]:
        """The entry with the lowest loss (the first one on a tie)."""
        return min(self.entries, key=lambda h: h["loss"])


@dataclass
class MinimizeResult:
    """What :func:`minimize` returns.

    Attributes:
        x: the final point ``[p]``.
        loss: the objective there (unscaled).
        grad: its gradient ``[p]``.
        iterations: iterations taken by this call.
        message: why the optimiser stopped, as a sentence.
    """

    x: np.ndarray
    loss: float
    grad: np.ndarray
    iterations: int
    message: str


def _last_point(objective: Objective) -> Objective:
    """``objective`` remembering its last point, so that asking again costs nothing."""
    last: list[tuple[bytes, float, np.ndarray]] = []

    def remembered(x: np.ndarray) -> tuple[float, np.ndarray]:
        key = np.ascontiguousarray(x, dtype=np.float64).tobytes()
        if last and last[0][0] == key:
            return last[0][1], last[0][2]
        value, grad = objective(x)
        last[:] = [(key, value, grad)]
        return value, grad

    return remembered


def minimize(objective: Objective, x0: np.ndarray, *, method: LBFGSB | Adam, iterations: int,
             history: History, bounds: tuple[np.ndarray, np.ndarray] | None = None,
             scale: float = 1.0,
             metrics: Callable[[int, np.ndarray, float, np.ndarray], dict[str, Any]] | None = None,
             describe: Callable[[dict[str, Any]], str] | None = None) -> MinimizeResult:
    """Minimise ``objective`` from ``x0`` for at most ``iterations`` iterations.

    Args:
        objective: ``x -> (value, gradient)``, ``x`` float64 ``[p]``; wrap it with
            :meth:`EvaluationStore.objective` to make the run resumable.
        x0: the start ``[p]``.
        method: :class:`LBFGSB` or :class:`Adam`.
        iterations: the most iterations (0: evaluate the start only).
        history: where iterations are recorded; an empty history records the start as
            iteration 0 first.
        bounds: ``(lower, upper)``, each ``[p]`` (``-inf``/``inf`` entries allowed), or
            ``None``.
        scale: the optimiser sees ``objective / scale`` (L-BFGS-B's first step is minus
            the gradient, so the scale sets its length); the history keeps the unscaled
            values.
        metrics: ``(iteration, x, value, gradient) -> dict`` of extra numbers for each
            history entry (it may also write files, such as the model of that iteration).
        describe: ``entry -> str``, the middle of the progress line.

    Returns:
        The final point, its value and gradient, the iterations taken and the reason to stop.

    Raises:
        ValueError: ``iterations`` negative, ``scale`` not positive, or shapes that differ.
    """
    if iterations < 0:
        raise ValueError(f"iterations={iterations} must be >= 0")
    if not scale > 0:
        raise ValueError(f"scale={scale} must be positive")
    x0 = np.asarray(x0, dtype=np.float64).ravel()
    lower = upper = None
    if bounds is not None:
        lower, upper = (np.broadcast_to(np.asarray(b, dtype=np.float64), x0.shape) for b in bounds)

    def record(x: np.ndarray, value: float, grad: np.ndarray) -> None:
        entry: dict[str, Any] = {"loss": value, "gradient_norm": float(np.linalg.norm(grad))}
        if metrics is not None:
            entry.update(metrics(history.next_iteration, x, value, grad))
        history.record(entry, describe)

    objective = _last_point(objective)   # SciPy's callback asks again for the point it just had
    f0, g0 = objective(x0)
    if not history.entries:
        record(x0, f0, g0)
    if iterations == 0:
        return MinimizeResult(x0, f0, g0, 0, "no iterations were asked for")
    if isinstance(method, Adam):
        state = AdamState(x0.copy(), np.zeros_like(x0), np.zeros_like(x0), 0)
        grad = g0
        value = f0
        while state.iteration < iterations:
            state = adam_step(state, grad / scale, method, lower, upper)
            value, grad = objective(state.x)
            record(state.x, value, grad)
        return MinimizeResult(state.x, value, grad, state.iteration, "the iteration limit was reached")

    def fun(x: np.ndarray) -> tuple[float, np.ndarray]:
        value, grad = objective(x)
        return value / scale, grad / scale

    def callback(xk: np.ndarray) -> None:
        record(xk, *objective(xk))

    options: dict[str, Any] = {"maxiter": iterations, "maxls": method.max_line_search,
                               "gtol": method.gtol}
    if method.max_evaluations is not None:
        options["maxfun"] = method.max_evaluations
    scipy_bounds = None if lower is None or upper is None else list(zip(lower, upper, strict=True))
    result = scipy_minimize(fun, x0, jac=True, method="L-BFGS-B", bounds=scipy_bounds,
                            callback=callback, options=options)
    value, grad = objective(result.x)
    return MinimizeResult(np.asarray(result.x), value, grad, int(result.nit),
                          stop_reason(result.message))
