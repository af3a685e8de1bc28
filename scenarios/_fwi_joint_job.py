"""What the joint-inversion jobs share (velocity-density, elastic): data, inversion, summary.

A job describes its problem in a :class:`JointSetup` (the parameters with their start
models, truths, bounds and steps; the simulation factory; the recorded component) and
draws its own figures; :func:`run_joint` does the rest: the output folder and
``--resume``, the observed data, the staged L-BFGS-B inversion
(:class:`~diffsim.fwi.JointInversion`), the misfits, model errors and crosstalk of
``summary.json``.
"""

from __future__ import annotations

import itertools
import math
import pathlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from diffsim.fwi import SerialShots, ShotData, SimulationFactory, Stage
from diffsim.fwi.imaging import correlation
from diffsim.fwi.joint import JointInversion, JointResult, Parameter, cap_vs, cap_vs_evaluator
from diffsim.io import RunOptions, write_json, write_npy
from diffsim.scenarios._fwi_job import _check_out

if TYPE_CHECKING:
    from diffsim.scenarios.fwi import DensityFwiScenario

__all__ = ["JointOutcome", "JointSetup", "run_joint", "smoothed_start", "water_rows"]


def water_rows(scenario: DensityFwiScenario, spacing: float) -> int:
    """The top rows kept at the truth (``water_depth`` in cells, rounded up)."""
    return int(math.ceil(scenario.water_depth / spacing - 1e-9))


def smoothed_start(truth: np.ndarray, scenario: DensityFwiScenario, spacing: float,
                   bounds: tuple[float, float]) -> np.ndarray:
    """The start model ``[z, x]``: the truth smoothed, water rows kept, clipped to ``bounds``.

    The smoothing is the scenario's ``start_smoothing`` (Gaussian sigma in m).
    """
    from diffsim.models import smooth

    sigma = scenario.start_smoothing / spacing
    return np.clip(smooth(truth, sigma, fixed_rows=water_rows(scenario, spacing)), *bounds)


@dataclass(frozen=True)
class JointSetup:
    """What a joint-inversion job chooses; :func:`run_joint` does the rest.

    Attributes:
        parameters: the inverted models in the simulation's parameter names, the first
            one the factory's; start models and truths ``[z, x]`` on one grid.
        data: the experiment (observed traces zero, to be synthesised).
        factory: ``factory(first_model, data) -> Simulation`` with the other models bound.
        output: the simulation output compared with the data (``"traces"``, ``"vz"``...).
        physics: words for the progress line, e.g. ``"variable density"``.
        vs_ratio: elastic models only: every simulation sees ``vs`` capped at
            ``vs_ratio * vp`` (:func:`~diffsim.fwi.joint.cap_vs`); ``None`` for no cap.
    """

    parameters: Sequence[Parameter]
    data: ShotData
    factory: SimulationFactory
    output: str = "traces"
    physics: str = ""
    vs_ratio: float | None = None

    def physical(self, models: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``models`` as the simulations see them (``vs`` capped when ``vs_ratio`` is set)."""
        return cap_vs(models, self.vs_ratio) if self.vs_ratio is not None else dict(models)


@dataclass(frozen=True)
class JointOutcome:
    """What :func:`run_joint` hands the job's figures.

    Attributes:
        truths, starts, finals: each parameter's model ``[z, x]`` by name (the finals as
            the simulations see them).
        data: the experiment with the observed traces ``[shot, receiver, nt]``.
        result: the inversion's result (its history has ``NAME_error`` per parameter).
        spacing: grid spacing in m.
    """

    truths: dict[str, np.ndarray]
    starts: dict[str, np.ndarray]
    finals: dict[str, np.ndarray]
    data: ShotData
    result: JointResult
    spacing: float

    def panels(self, name: str, label: str = "") -> list[tuple[str, np.ndarray]]:
        """``[(title, model)]`` of one parameter: true (titled ``true LABEL``), initial, inverted."""
        return [(f"true {label}".strip(), self.truths[name]), ("initial", self.starts[name]),
                ("inverted", self.finals[name])]


def _crosstalk(outcome: JointOutcome, fixed: int) -> dict[str, float]:
    """Correlations of each update (below the water) with each true perturbation.

    ``P_update_vs_true_Q_perturbation`` for every pair of parameters (``P == Q``: how
    much of the update is right; ``P != Q``: crosstalk), and
    ``true_P_and_Q_perturbations_correlation`` (how alike the true perturbations are).
    """
    below = np.s_[fixed:]
    names = list(outcome.truths)
    true = {n: (outcome.truths[n] - outcome.starts[n])[below] for n in names}
    update = {n: (outcome.finals[n] - outcome.starts[n])[below] for n in names}
    out = {f"{p}_update_vs_true_{q}_perturbation": correlation(update[p], true[q])
           for p in names for q in names}
    for p, q in itertools.combinations(names, 2):
        out[f"true_{p}_and_{q}_perturbations_correlation"] = correlation(true[p], true[q])
    return out


def run_joint(scenario: DensityFwiScenario, options: RunOptions, setup: JointSetup,
              draw: Callable[[pathlib.Path, JointOutcome], None]) -> dict[str, object]:
    """Run a joint inversion into ``options.out`` (resumable); returns the summary.

    Writes ``scenario.toml``, ``observed.npy``, ``NAME_NNNN.npy`` per parameter and
    iteration, ``history.json`` (each parameter's relative model error per iteration),
    ``NAME_final.npy``, the job's figures (``draw``) and ``summary.json``: misfits, each
    parameter's relative model error ``|m - m_true| / |m_true|`` at the start and the end
    (keys ``initial_NAME_error``, ``final_NAME_error``), the crosstalk correlations and
    the timings. Everything that can fail (the simulations, the output folder) is
    checked before the folder is written.
    """
    start = time.perf_counter()
    out = pathlib.Path(options.out)
    if options.iterations is not None:
        scenario = scenario.with_(iterations=options.iterations)
    say = options.echo
    params = list(setup.parameters)
    first = params[0]
    h = setup.data.spacing
    fixed = water_rows(scenario, h)
    truths = {p.name: np.asarray(p.truth) for p in params}
    starts = {p.name: p.initial for p in params}
    shots = SerialShots(batch=scenario.batch, checkpoint=options.checkpoint,
                        simulation=setup.factory, output=setup.output)
    shots.check(first.initial, setup.data)
    _check_out(scenario, out, options.resume)
    out.mkdir(parents=True, exist_ok=True)
    scenario.save(out / "scenario.toml")
    observed_path = out / "observed.npy"
    if observed_path.is_file():
        observed = np.load(observed_path)
    else:
        nz, nx = first.initial.shape
        say(f"synthesising {scenario.shots} shots on {nz} x {nx} cells ({setup.physics}), "
            f"{setup.data.wavelet.size} samples at dt {setup.data.dt * 1e3:.3f} ms")
        observed = shots.forward(setup.physical(truths), setup.data)
        write_npy(observed_path, observed)
    data = replace(setup.data, observed=np.asarray(observed, dtype=np.float64))
    evaluate = (shots.evaluate if setup.vs_ratio is None
                else cap_vs_evaluator(shots.evaluate, setup.vs_ratio))
    stages = [Stage(f or None, scenario.iterations) for f in scenario.stages]
    inversion = JointInversion(data=data, parameters=params, stages=stages, evaluator=evaluate,
                               out=out, fixed_rows=fixed, depth_power=scenario.depth_power,
                               echo=None if options.quiet else say)
    result = inversion.run()
    finals = setup.physical(result.models)
    syn0 = shots.forward(setup.physical(starts), data)
    syn1 = shots.forward(finals, data)
    shots.close()
    norm = float(np.linalg.norm(observed))
    outcome = JointOutcome(truths=truths, starts=starts, finals=finals, data=data,
                           result=result, spacing=h)
    summary: dict[str, object] = {
        "scenario": scenario.as_dict(), "grid": list(first.initial.shape), "spacing_m": h,
        "dt_s": data.dt, "nt": data.wavelet.size, "output": setup.output,
        "initial_misfit": float(np.linalg.norm(syn0 - observed) / norm),
        "final_misfit": float(np.linalg.norm(syn1 - observed) / norm),
    }
    for p in params:
        summary[f"initial_{p.name}_error"] = p.error(starts[p.name])
        summary[f"final_{p.name}_error"] = p.error(finals[p.name])
    summary.update(_crosstalk(outcome, fixed))
    summary.update({
        "misfit_history": [{k: entry[k] for k in ("iteration", "stage", "loss", "stage_misfit")
                            if k in entry} for entry in result.history],
        "iterations": max(len(result.history) - 1, 0),     # the history's entry 0 is the start
        "wall_seconds": result.wall_seconds, "gradients_this_session": result.evaluations,
        "resumed": bool(options.resume),
    })
    for name, model in finals.items():
        write_npy(out / f"{name}_final.npy", model)
    draw(out, outcome)
    summary["session_seconds"] = time.perf_counter() - start
    write_json(out / "summary.json", summary)
    errors = ", ".join(f"{p.name} error {summary[f'initial_{p.name}_error']:.4f} -> "
                       f"{summary[f'final_{p.name}_error']:.4f}" for p in params)
    say(f"misfit {summary['initial_misfit']:.4f} -> {summary['final_misfit']:.4f}; {errors}; "
        f"wrote {out}")
    return summary
