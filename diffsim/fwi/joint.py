"""Joint inversion of several model parameters (velocity and density) with L-BFGS-B.

Each parameter ``p`` has its own variable ``δ_p`` and scale ``s_p``:
``p = clip(p_start + s_p w δ_p, lo_p, hi_p)`` with ``w`` the shared diagonal preconditioner
(:func:`~diffsim.fwi.driver.update_weights`). At the start of every stage ``s_p`` is set
so that L-BFGS-B's first step (minus the gradient) changes ``p`` by at most ``step_p``
(its own units): without it the parameter with the larger gradient in its units takes
the whole update, which is one face of the crosstalk between parameter classes. The
optimiser sees the exact gradient ``s_p w dL/dp`` of each block.

Resumable as :class:`~diffsim.fwi.Inversion`: every evaluation is stored, and a resumed
run replays the optimiser and reproduces the uninterrupted one bit for bit.
"""

from __future__ import annotations

import functools
import math
import pathlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from diffsim.fwi.data import ShotData
from diffsim.fwi.driver import Stage, update_weights
from diffsim.io import write_npy
from diffsim.optim import LBFGSB, EvaluationStore, History, minimize

__all__ = ["JointInversion", "JointResult", "Parameter", "cap_vs", "cap_vs_evaluator"]

#: ``models -> (loss, {name: dL/d model})`` over every shot (e.g. ``SerialShots.evaluate``).
JointEvaluator = Callable[[Mapping[str, np.ndarray], ShotData],
                          tuple[float, dict[str, np.ndarray]]]


def cap_vs(models: Mapping[str, np.ndarray], ratio: float) -> dict[str, np.ndarray]:
    """``models`` with ``vs`` capped at ``ratio * vp`` (elastic models stay physical).

    A positive bulk modulus needs ``vs / vp < sqrt(3/4)``; box bounds on ``vp`` and ``vs``
    alone cannot say so, so the elastic evaluations see ``min(vs, ratio * vp)``.
    """
    return {**models, "vs": np.minimum(models["vs"], ratio * models["vp"])}


def cap_vs_evaluator(evaluate: JointEvaluator, ratio: float) -> JointEvaluator:
    """``evaluate`` at :func:`cap_vs` of the models, with the gradient through the cap.

    Where ``vs > ratio * vp`` the simulation sees ``vs = ratio * vp``: there ``dL/dvs``
    is 0 and ``dL/dvp`` gains ``ratio`` times the simulation's ``dL/dvs`` (the exact
    gradient of the capped objective, so the line search sees a consistent function).
    """
    def capped(models: Mapping[str, np.ndarray], data: ShotData
               ) -> tuple[float, dict[str, np.ndarray]]:
        over = models["vs"] > ratio * models["vp"]
        loss, grads = evaluate(cap_vs(models, ratio), data)
        if not over.any():
            return loss, grads
        g_vs = grads["vs"]
        return loss, {**grads, "vp": grads["vp"] + np.where(over, ratio * g_vs, 0.0),
                      "vs": np.where(over, 0.0, g_vs)}

    return capped


@dataclass(frozen=True)
class Parameter:
    """One parameter of a joint inversion.

    Attributes:
        name: the simulation's parameter name (``"velocity"``, ``"density"``).
        initial: the starting model ``[z, x]``.
        bounds: ``(lo, hi)`` in the parameter's units.
        step: the largest change of each stage's first iteration, in its units.
        truth: the true model, when known (its relative error is reported).
        unit: for messages (``"m/s"``, ``"kg/m^3"``).
    """

    name: str
    initial: np.ndarray
    bounds: tuple[float, float]
    step: float
    truth: np.ndarray | None = None
    unit: str = ""

    def error(self, model: np.ndarray) -> float | None:
        """Relative L2 error against the truth (``None`` when unknown)."""
        if self.truth is None:
            return None
        return float(np.linalg.norm(model - self.truth) / np.linalg.norm(self.truth))


@dataclass
class JointResult:
    """What :meth:`JointInversion.run` returns.

    Attributes:
        models: the final model of every parameter.
        history: one entry per iteration (iteration 0 the start), with ``NAME_error``
            per parameter with a truth.
        wall_seconds: time over every session of this run.
        evaluations: gradients computed in this session (not read back).
    """

    models: dict[str, np.ndarray]
    history: list[dict[str, object]]
    wall_seconds: float
    evaluations: int


@dataclass
class JointInversion:
    """L-BFGS-B over several parameters with per-parameter scaling and bounds.

    Attributes:
        data: the experiment (observed traces included).
        parameters: the parameters, velocity first.
        stages: frequency stages, low to high.
        evaluator: ``models -> (loss, gradients)`` over all shots.
        out: output folder (models, history, evaluation store).
        fixed_rows: top rows kept at their initial values (a known water layer).
        depth_power: depth weighting of the update (see :func:`update_weights`).
        max_line_search: L-BFGS-B's line-search evaluations per iteration.
        echo: where progress lines go (``None`` for quiet).
    """

    data: ShotData
    parameters: Sequence[Parameter]
    stages: Sequence[Stage]
    evaluator: JointEvaluator
    out: pathlib.Path
    fixed_rows: int = 0
    depth_power: float = 1.0
    max_line_search: int = 8
    echo: Callable[[str], None] | None = print

    @functools.cached_property
    def _weights(self) -> np.ndarray:
        return update_weights(self.parameters[0].initial.shape, self.data,
                              fixed_rows=self.fixed_rows, depth_power=self.depth_power)

    @functools.cached_property
    def _store(self) -> EvaluationStore:
        return EvaluationStore(self.out / "evaluations",
                               tag="joint-" + "-".join(p.name for p in self.parameters))

    def _models(self, start: Mapping[str, np.ndarray], scales: Sequence[float],
                delta: np.ndarray) -> dict[str, np.ndarray]:
        blocks = np.split(delta, len(self.parameters))
        return {p.name: np.clip(start[p.name] + s * self._weights * b.reshape(self._weights.shape),
                                *p.bounds)
                for p, s, b in zip(self.parameters, scales, blocks, strict=True)}

    def _evaluate(self, stage: int, start: Mapping[str, np.ndarray], scales: Sequence[float],
                  data: ShotData, delta: np.ndarray
                  ) -> tuple[float, np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
        """(loss, dL/dδ, models, dL/d model) at ``δ``, from the store when already computed."""
        models = self._models(start, scales, delta)

        def compute() -> dict[str, np.ndarray | float]:
            loss, grads = self.evaluator(models, data)
            out: dict[str, np.ndarray | float] = {"loss": loss}
            for p in self.parameters:
                out[f"grad_{p.name}"] = grads[p.name]
            return out

        # keyed by the models themselves: the start of a stage (δ = 0) is one evaluation
        # whatever the scales
        key = self._store.key(float(stage), *(models[p.name] for p in self.parameters))
        found = self._store.fetch(key, compute)
        raw = {p.name: np.asarray(found[f"grad_{p.name}"]) for p in self.parameters}
        blocks = []
        for p, s in zip(self.parameters, scales, strict=True):
            m = models[p.name]
            inside = (m > p.bounds[0]) & (m < p.bounds[1])
            blocks.append((s * self._weights * np.where(inside, raw[p.name], 0.0)).ravel())
        return float(found["loss"]), np.concatenate(blocks), models, raw

    def _say(self, text: str) -> None:
        if self.echo is not None:
            self.echo(text)

    def run(self) -> JointResult:
        """Run every stage; writes ``NAME_NNNN.npy`` and ``history.json`` per iteration."""
        computed = self._store.computed
        total = sum(st.iterations for st in self.stages)
        history = History(self.out / "history.json", resume=True, total=total, echo=self.echo)
        models = {p.name: np.asarray(p.initial, dtype=np.float64).copy() for p in self.parameters}
        w2 = self._weights**2
        for s, stage in enumerate(self.stages):
            data = self.data.stage(stage.cutoff)
            start = dict(models)
            ones = [1.0] * len(self.parameters)
            f0, _, _, g0 = self._evaluate(s, start, ones, data, np.zeros(len(ones) * w2.size))
            # The optimiser sees f / sigma (sigma = f0: values near 1, so L-BFGS-B's
            # relative-reduction test is not fooled by a loss in tiny physical units) and
            # its first step -grad moves parameter p by s_p^2 max|w^2 g_p| / sigma = step_p.
            sigma = f0 if f0 > 0 else 1.0
            scales = []
            for p in self.parameters:
                reach = float(np.abs(w2 * g0[p.name]).max())
                scales.append(math.sqrt(p.step * sigma / reach) if reach > 0 else 1.0)
            norm = float(np.linalg.norm(data.observed))

            def objective(delta: np.ndarray, s: int = s, start: dict = start,
                          scales: list = scales, data: ShotData = data
                          ) -> tuple[float, np.ndarray]:
                loss, grad, _, _ = self._evaluate(s, start, scales, data, delta)
                return loss, grad

            def metrics(n: int, delta: np.ndarray, loss: float, grad: np.ndarray, s: int = s,
                        start: dict = start, scales: list = scales, stage: Stage = stage,
                        norm: float = norm) -> dict[str, object]:
                current = self._models(start, scales, delta)
                entry: dict[str, object] = {"stage": s, "cutoff_hz": stage.cutoff or 0.0,
                                            "stage_misfit": (math.sqrt(2.0 * loss) / norm
                                                             if norm > 0 else math.nan)}
                for p in self.parameters:
                    write_npy(self.out / f"{p.name}_{n:04d}.npy", current[p.name])
                    entry[f"{p.name}_error"] = p.error(current[p.name])
                return entry

            def describe(entry: dict[str, object], stage: Stage = stage, s: int = s) -> str:
                errors = "".join(f"  {p.name} error {entry[f'{p.name}_error']:.4f}"
                                 for p in self.parameters if p.truth is not None)
                return (f"stage {s + 1}/{len(self.stages)} ({stage.cutoff or 'full band'} Hz)  "
                        f"stage misfit {entry['stage_misfit']:.4f}{errors}")

            lower, upper = [], []
            w = self._weights.ravel()
            safe = np.where(w > 0, w, 1.0)
            for p, sc in zip(self.parameters, scales, strict=True):
                st = start[p.name].ravel()
                lower.append(np.where(w > 0, (p.bounds[0] - st) / (sc * safe), 0.0))
                upper.append(np.where(w > 0, (p.bounds[1] - st) / (sc * safe), 0.0))
            method = LBFGSB(max_line_search=self.max_line_search, gtol=0.0,
                            max_evaluations=stage.iterations * (self.max_line_search + 2))
            result = minimize(objective, np.zeros(len(ones) * w.size), method=method,
                              iterations=stage.iterations, history=history,
                              bounds=(np.concatenate(lower), np.concatenate(upper)),
                              scale=sigma, metrics=metrics, describe=describe)
            if stage.iterations > 0:
                models = self._models(start, scales, result.x)
                self._say(f"stage {s + 1} ended after {result.iterations} iterations: "
                          f"{result.message}")
        return JointResult(models=models, history=history.entries, wall_seconds=history.seconds,
                           evaluations=self._store.computed - computed)
