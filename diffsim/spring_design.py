"""Gradient-based design with mass-spring systems: a resumable, bounded Adam driver.

A :class:`DesignProblem` says what is optimised (a flat vector ``x`` with bounds), how
``x`` maps onto the simulation (``apply``) and how the simulation's gradients map back
(``pullback``). :func:`run_design` runs projected Adam on it, writing after every
iteration, atomically, the optimiser state (``optimizer.npz``: ``x``, Adam moments,
iteration, history) and ``history.json``; with ``resume=True`` it continues from the
last finished iteration and gives the same result as an uninterrupted run. At the end
it writes ``summary.json``, before/after animations and the loss curve.
"""

from __future__ import annotations

import io
import json
import pathlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from diffsim.checkpoint import Schedule
from diffsim.io import atomic_write, write_json
from diffsim.springs import Loss, SpringSimulation, SpringSystem

__all__ = ["AdamState", "DesignProblem", "adam_step", "run_design"]


@dataclass
class AdamState:
    """Projected Adam: the point, the moment estimates and the iteration count."""

    x: np.ndarray
    m: np.ndarray
    v: np.ndarray
    iteration: int = 0


def adam_step(state: AdamState, grad: np.ndarray, *, lr: float, lower: np.ndarray,
              upper: np.ndarray, beta1: float = 0.9, beta2: float = 0.999,
              eps: float = 1e-12) -> AdamState:
    """One Adam step, then clip ``x`` into ``[lower, upper]``."""
    t = state.iteration + 1
    m = beta1 * state.m + (1 - beta1) * grad
    v = beta2 * state.v + (1 - beta2) * grad * grad
    mhat = m / (1 - beta1**t)
    vhat = v / (1 - beta2**t)
    x = np.clip(state.x - lr * mhat / (np.sqrt(vhat) + eps), lower, upper)
    return AdamState(x, m, v, t)


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


def _save_state(path: pathlib.Path, state: AdamState, history: list[dict]) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, x=state.x, m=state.m, v=state.v, iteration=state.iteration,
             history=np.array(json.dumps(history)))
    atomic_write(path, lambda h: h.write(buffer.getvalue()), binary=True)


def _load_state(path: pathlib.Path, size: int) -> tuple[AdamState, list[dict]]:
    with np.load(path) as data:
        state = AdamState(data["x"].copy(), data["m"].copy(), data["v"].copy(),
                          int(data["iteration"]))
        history = json.loads(str(data["history"]))
    if state.x.shape != (size,):
        raise ValueError(f"{path}: the saved design has {state.x.size} values but this problem "
                         f"has {size}; run without --resume, or use another --out folder")
    return state, history


def run_design(problem: DesignProblem, *, iterations: int, out: pathlib.Path | None,
               resume: bool = False, checkpoint: Schedule | None = None,
               echo: Callable[[str], None] = print, frames: int = 90,
               frame_size: tuple[int, int] = (480, 360)) -> dict[str, object]:
    """Optimise ``problem`` with projected Adam for ``iterations`` iterations.

    Args:
        problem: the design problem.
        iterations: Adam iterations in total (a resumed run counts the finished ones).
        out: output folder, or ``None`` to write nothing (then ``resume`` is ignored).
        resume: continue from ``out/optimizer.npz`` when it exists.
        checkpoint: schedule for every gradient (default: the tape's memory budget).
        echo: progress lines.
        frames: frames per animation.
        frame_size: ``(width, height)`` of a frame in pixels.

    Returns:
        The summary (also written to ``out/summary.json``): initial, final and best loss,
        iterations, the tape's forward/recompute counts, wall time and the metrics.
    """
    start = time.perf_counter()
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

    state_path = None if out is None else pathlib.Path(out) / "optimizer.npz"
    x0 = np.asarray(problem.x0, dtype=np.float64)
    state = AdamState(x0.copy(), np.zeros_like(x0), np.zeros_like(x0), 0)
    history: list[dict] = []
    if resume and state_path is not None and state_path.exists():
        state, history = _load_state(state_path, x0.size)
        echo(f"{problem.name}: resuming after iteration {state.iteration} from {state_path}")
    try:
        while state.iteration < iterations:
            value, grad = evaluate(state.x)
            entry = {"iteration": state.iteration, "loss": value,
                     "gradient_norm": float(np.linalg.norm(grad))}
            if problem.metrics is not None:
                entry.update(problem.metrics(state.x))
            history.append(entry)
            echo(f"{problem.name}: iter {state.iteration:3d}  loss {value:.6e}  |grad| "
                 f"{entry['gradient_norm']:.3e}")
            state = adam_step(state, grad, lr=problem.lr, lower=problem.lower, upper=problem.upper)
            if state_path is not None:
                _save_state(state_path, state, history)
                write_json(pathlib.Path(out) / "history.json", history)
        value, grad = evaluate(state.x)
        final = {"iteration": state.iteration, "loss": value,
                 "gradient_norm": float(np.linalg.norm(grad))}
        if problem.metrics is not None:
            final.update(problem.metrics(state.x))
        history = [h for h in history if h["iteration"] < state.iteration] + [final]
        best = min(history, key=lambda h: h["loss"])   # Adam's loss need not fall every step
        echo(f"{problem.name}: loss {history[0]['loss']:.6e} -> {value:.6e} after "
             f"{state.iteration} iterations (best {best['loss']:.6e} at iteration "
             f"{best['iteration']})")
        summary: dict[str, object] = {
            "problem": problem.name,
            "initial_loss": history[0]["loss"],
            "final_loss": value,
            "best_loss": best["loss"],
            "best_iteration": best["iteration"],
            "iterations": state.iteration,
            "steps": problem.steps,
            "dt": problem.dt,
            "particles": problem.system.n_particles,
            "springs": problem.system.n_springs,
            **report,
            "wall_seconds": time.perf_counter() - start,
            **{k: v for k, v in final.items() if k not in ("iteration", "loss")},
            **{f"initial_{k}": v for k, v in history[0].items()
               if k not in ("iteration", "loss", "gradient_norm")},
            **problem.extra,
        }
        if out is not None:
            out = pathlib.Path(out)
            write_json(out / "history.json", history)
            _write_figures(problem, sim, x0, state.x, history, out, frames, frame_size)
            write_json(out / "summary.json", summary)
            echo(f"{problem.name}: wrote {out}/summary.json, history.json, before.gif, "
                 "after.gif, loss.png")
        summary["design"] = state.x
        return summary
    finally:
        sim.close()


def _write_figures(problem: DesignProblem, sim: SpringSimulation, x0: np.ndarray,
                   x: np.ndarray, history: list[dict], out: pathlib.Path, frames: int,
                   size: tuple[int, int]) -> None:
    from diffsim.viz.render import frames as make_frames
    from diffsim.viz.render import plot_loss, save_filmstrip, save_gif

    for tag, point in (("before", x0), ("after", x)):
        sim.update(**problem.apply(point))
        traj = sim.simulate()
        images = make_frames(traj, sim.system, max_frames=frames, size=size,
                             label=f"{problem.name}, {tag}")
        save_gif(out / f"{tag}.gif", images)
        save_filmstrip(out / f"{tag}.png", images)
    plot_loss(history, out / "loss.png", title=problem.name)
