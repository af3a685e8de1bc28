"""Gradient-based design with mass-spring systems, on the resumable optimisation driver.

A :class:`DesignProblem` says what is optimised (a flat vector ``x`` with bounds), how
``x`` maps onto the simulation (``apply``) and how the simulation's gradients map back
(``pullback``). :func:`run_design` runs projected Adam on it through
:func:`diffsim.optim.minimize`: every evaluation goes to ``out/evaluations`` and every
iteration to ``history.json``, atomically; with ``resume=True`` the run replays its
stored evaluations and ends with the result of an uninterrupted run. At the end it
writes ``summary.json``, before/after animations and the loss curve.
"""

from __future__ import annotations

import hashlib
import pathlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from diffsim.checkpoint import Schedule
from diffsim.io import write_json
from diffsim.optim import Adam, EvaluationStore, History, minimize
from diffsim.springs import Loss, SpringSimulation, SpringSystem

__all__ = ["DesignProblem", "run_design"]


@dataclass
class DesignProblem:
    """An optimisation over a mass-spring simulation.

    Attributes:
        name: shown in progress lines and figures.
        system: the system at the start (topology fixed).
        steps, dt: rollout length and time step in s.
        loss: the simulation loss.
        wrt: simulation parameters whose gradients ``pullback`` needs.
        x0: starting design vector ``[p]``; lower, upper: bounds ``[p]``.
        apply: ``x -> SpringSimulation.update`` keyword arguments.
        pullback: ``(x, grads) -> ∂loss/∂x`` from the gradients named in ``wrt``.
        lr: Adam step size in units of ``x``.
        velocities, actuation: initial velocities and actuation when ``apply`` sets neither.
        penalty: optional ``x -> (value, gradient)`` added to the loss (e.g. material cost).
        metrics: optional ``x -> dict`` of extra numbers for the history and summary.
    """

    name: str
    system: SpringSystem
    steps: int
    dt: float
    loss: Loss
    wrt: tuple[str, ...]
    x0: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    apply: Callable[[np.ndarray], dict]
    pullback: Callable[[np.ndarray, dict], np.ndarray]
    lr: float
    velocities: np.ndarray | None = None
    actuation: np.ndarray | None = None
    penalty: Callable[[np.ndarray], tuple[float, np.ndarray]] | None = None
    metrics: Callable[[np.ndarray], dict] | None = None
    extra: dict = field(default_factory=dict)


def _fingerprint(problem: DesignProblem) -> str:
    """A digest of what defines the problem's evaluations (so a resume never reads another's)."""
    h = hashlib.sha1(f"{problem.name}|{problem.steps}|{problem.dt!r}|{problem.wrt}|"
                     f"{type(problem.loss).__name__}".encode())
    system = problem.system
    for array in (problem.x0, problem.lower, problem.upper, system.positions, system.springs,
                  system.stiffness, system.rest_length, system.mass, problem.velocities,
                  problem.actuation):
        if array is not None:
            h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()[:16]


def run_design(problem: DesignProblem, *, iterations: int, out: pathlib.Path | None,
               resume: bool = False, checkpoint: Schedule | None = None,
               echo: Callable[[str], None] = print, frames: int = 90,
               frame_size: tuple[int, int] = (480, 360)) -> dict[str, Any]:
    """Optimise ``problem`` with projected Adam for ``iterations`` iterations.

    Args:
        problem: the design problem.
        iterations: Adam iterations in total (a resumed run counts the finished ones).
        out: output folder, or ``None`` to write nothing (then ``resume`` is ignored).
        resume: replay the evaluations stored in ``out/evaluations`` (without it, a new
            run forgets them).
        checkpoint: schedule for every gradient (default: the tape's memory budget).
        echo: progress lines.
        frames: frames per animation.
        frame_size: ``(width, height)`` of a frame in pixels.

    Returns:
        The summary (also written to ``out/summary.json``): initial, final and best loss,
        iterations, the tape's forward/recompute counts, wall time and the metrics.
    """
    sim = SpringSimulation(problem.system, problem.steps, problem.dt,
                           velocities=problem.velocities, actuation=problem.actuation)
    report: dict[str, object] = {}

    def evaluate(x: np.ndarray) -> tuple[float, np.ndarray]:
        sim.update(**problem.apply(x))
        res = sim.value_and_grad(problem.loss, wrt=problem.wrt, checkpoint=checkpoint)
        value = res.loss
        grad = problem.pullback(x, res.grads)
        if problem.penalty is not None:
            pv, pg = problem.penalty(x)
            value, grad = value + pv, grad + pg
        report.update(schedule=repr(res.report.schedule), forward_steps=res.report.forward_steps,
                      peak_checkpoints=res.report.peak_checkpoints)
        return value, grad

    folder = None if out is None else pathlib.Path(out)
    store = EvaluationStore(None if folder is None else folder / "evaluations",
                            tag=_fingerprint(problem), fresh=not resume)
    history = History(None if folder is None else folder / "history.json", resume=resume,
                      total=iterations, echo=echo, label=problem.name)
    if resume and history.previous:
        echo(f"{problem.name}: resuming; {len(history.previous) - 1} finished iterations are "
             f"read back from {folder}")

    def metrics(n: int, x: np.ndarray, value: float, grad: np.ndarray) -> dict[str, object]:
        return problem.metrics(x) if problem.metrics is not None else {}

    x0 = np.asarray(problem.x0, dtype=np.float64)
    try:
        result = minimize(store.objective(evaluate), x0, method=Adam(lr=problem.lr),
                          iterations=iterations, history=history,
                          bounds=(problem.lower, problem.upper), metrics=metrics)
        if not report:   # every evaluation was read back: one more, for the tape's report
            evaluate(result.x)
        entries = history.entries
        best = history.best()   # Adam's loss need not fall every step
        first, final = entries[0], entries[-1]
        echo(f"{problem.name}: loss {first['loss']:.6e} -> {result.loss:.6e} after "
             f"{result.iterations} iterations (best {best['loss']:.6e} at iteration "
             f"{best['iteration']})")
        skip = ("iteration", "loss", "seconds")
        summary: dict[str, Any] = {
            "problem": problem.name,
            "initial_loss": first["loss"],
            "final_loss": result.loss,
            "best_loss": best["loss"],
            "best_iteration": best["iteration"],
            "iterations": result.iterations,
            "steps": problem.steps,
            "dt": problem.dt,
            "particles": problem.system.n_particles,
            "springs": problem.system.n_springs,
            **report,
            "wall_seconds": history.seconds,
            **{k: v for k, v in final.items() if k not in skip},
            **{f"initial_{k}": v for k, v in first.items() if k not in (*skip, "gradient_norm")},
            **problem.extra,
        }
        if folder is not None:
            _write_figures(problem, sim, x0, result.x, entries, folder, frames, frame_size)
            write_json(folder / "summary.json", summary)
            echo(f"{problem.name}: wrote {folder}/summary.json, history.json, before.gif, "
                 "after.gif, loss.png")
        summary["design"] = result.x
        return summary
    finally:
        sim.close()


def _write_figures(problem: DesignProblem, sim: SpringSimulation, x0: np.ndarray,
                   x: np.ndarray, history: list[dict[str, Any]], out: pathlib.Path, frames: int,
                   size: tuple[int, int]) -> None:
    from diffsim.viz.figures import loss_figure
    from diffsim.viz.render import frames as make_frames
    from diffsim.viz.render import save_filmstrip, save_gif

    for tag, point in (("before", x0), ("after", x)):
        sim.update(**problem.apply(point))
        traj = sim.simulate()
        images = make_frames(traj, sim.system, max_frames=frames, size=size,
                             label=f"{problem.name}, {tag}")
        save_gif(out / f"{tag}.gif", images)
        save_filmstrip(out / f"{tag}.png", images)
    loss_figure(out / "loss.png", history, title=problem.name, error=None)
