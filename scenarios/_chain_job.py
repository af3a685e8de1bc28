"""The job behind ``diffsim demo`` and ``diffsim run chain``: stiffness from a trajectory.

A driven nonlinear chain is observed at a few masses; starting from uniform stiffness,
L-BFGS-B recovers the per-spring stiffness from the misfit gradient, which the tape
computes under a checkpoint schedule. Before optimising, the gradient is checked
against finite differences (Taylor test) and the tape's report and costate trace are
shown.
"""

from __future__ import annotations

import pathlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from diffsim._tape import Tape, rollout
from diffsim.checkpoint import Schedule
from diffsim.gradcheck import taylor_test
from diffsim.io import write_json
from diffsim.optim import LBFGSB, EvaluationStore, History, minimize

if TYPE_CHECKING:
    from diffsim.scenarios.chain import ChainScenario

__all__ = ["run_chain_demo"]


def run_chain_demo(
    scenario: ChainScenario,
    *,
    checkpoint: Schedule,
    iterations: int,
    out: pathlib.Path | None = None,
    echo: Callable[[str], None] = print,
) -> dict[str, object]:
    """Run the stiffness-identification demo.

    Args:
        scenario: a :class:`diffsim.scenarios.ChainScenario`.
        checkpoint: the schedule for every gradient.
        iterations: L-BFGS-B iterations (0 computes and checks one gradient only).
        out: folder for ``summary.json``, ``history.json`` and figures; ``None`` for none.
        echo: where progress lines go.

    Returns:
        The summary: misfits, stiffness errors (relative L2), gradient check, tape report.
    """
    start = time.perf_counter()
    chain = scenario.build()
    truth = scenario.true_stiffness()
    observed = scenario.synthesize(chain)
    scale = scenario.stiffness_mean

    def loss(outputs: dict[str, np.ndarray]) -> tuple[float, dict[str, np.ndarray]]:
        r = outputs["positions"] - observed
        return 0.5 * float(np.sum(r * r)), {"positions": r}

    def value_and_grad(x: np.ndarray) -> tuple[float, np.ndarray, Tape]:
        chain.set_param("stiffness", x * scale)
        tape = Tape(chain, checkpoint=checkpoint)
        value, grads = tape.value_and_grad(loss)
        return value, grads["stiffness"] * scale, tape

    def value_only(x: np.ndarray) -> float:
        chain.set_param("stiffness", x * scale)
        return loss(rollout(chain))[0]

    x0 = scenario.initial_stiffness() / scale
    f0, g0, tape = value_and_grad(x0)
    echo(f"chain: {scenario.masses} masses, {scenario.steps} steps, "
         f"observed masses {scenario.observed_indices()}")
    echo(f"initial misfit {f0:.6e}, |gradient| {np.linalg.norm(g0):.3e}")
    echo(tape.report.summary())
    costate = tape.report.costate
    echo(f"costate |lambda[t]|: t=n {costate[-1]:.3e}, t=n/2 {costate[len(costate) // 2]:.3e}, "
         f"t=0 {costate[0]:.3e}")
    direction = np.random.default_rng(0).normal(size=x0.shape)
    taylor = taylor_test(value_only, x0, direction, g0, h0=1e-2)
    echo(f"Taylor test: first-order remainder slope {taylor.first_order:.2f} (expect 1), "
         f"second-order {taylor.second_order:.2f} (expect 2)")

    def metrics(n: int, x: np.ndarray, value: float, grad: np.ndarray) -> dict[str, float]:
        return {"stiffness_error": float(np.linalg.norm(x * scale - truth) / np.linalg.norm(truth))}

    store = EvaluationStore(None, tag="chain")
    history = History(None, total=iterations, echo=echo, label="chain")
    result = minimize(store.objective(lambda x: value_and_grad(x)[:2]), x0, method=LBFGSB(),
                      iterations=iterations, history=history,
                      bounds=(np.full(x0.size, 0.3), np.full(x0.size, 3.0)), metrics=metrics,
                      describe=lambda e: (f"misfit {e['loss']:.6e}  "
                                          f"stiffness error {e['stiffness_error']:.4f}"))
    x, final = result.x, result.loss
    entries = history.entries
    summary = {
        "scenario": scenario.as_dict(),
        "checkpoint": repr(tape.schedule),
        "initial_misfit": f0,
        "final_misfit": final,
        "initial_stiffness_error": entries[0]["stiffness_error"],
        "final_stiffness_error": metrics(0, x, final, result.grad)["stiffness_error"],
        "iterations": result.iterations,
        "taylor_first_order": taylor.first_order,
        "taylor_second_order": taylor.second_order,
        "forward_steps": tape.report.forward_steps,
        "peak_checkpoints": tape.report.peak_checkpoints,
        "peak_checkpoint_bytes": tape.report.peak_checkpoint_bytes,
        "wall_seconds": time.perf_counter() - start,
    }
    echo(f"misfit {f0:.3e} -> {final:.3e}; stiffness error "
         f"{summary['initial_stiffness_error']:.4f} -> {summary['final_stiffness_error']:.4f}")
    if out is not None:
        _write_outputs(out, summary, entries, costate, truth, x * scale, x0 * scale)
        echo(f"wrote {out}/summary.json, history.json, loss.png, costate.png, stiffness.png")
    chain.destroy()
    return summary


def _write_outputs(out: pathlib.Path, summary: dict, history: list[dict], costate: np.ndarray,
                   truth: np.ndarray, fitted: np.ndarray, initial: np.ndarray) -> None:
    from diffsim.viz import figures

    plt = figures.pyplot()

    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "summary.json", summary)
    write_json(out / "history.json", history)
    figures.costate_figure(out / "costate.png", costate)
    figures.loss_figure(out / "loss.png", history, title="chain: stiffness from a trajectory",
                        error="stiffness_error", error_label="relative stiffness error")
    fig, ax = plt.subplots(figsize=(6, 3.5))
    springs = np.arange(truth.size)
    ax.plot(springs, truth, "k-o", label="true")
    ax.plot(springs, initial, "b--", label="initial")
    ax.plot(springs, fitted, "r-s", label="recovered")
    ax.set_xlabel("spring")
    ax.set_ylabel("stiffness (N/m)")
    ax.legend()
    fig.tight_layout()
    figures.save_figure(fig, out / "stiffness.png")
