"""The resumable FWI driver: L-BFGS-B stage by stage on a scaled, preconditioned variable."""

from __future__ import annotations

import functools
import pathlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from diffsim.fwi.data import ShotData
from diffsim.fwi.evaluators import ILLUMINATION_FLOOR, Evaluator
from diffsim.io import write_npy
from diffsim.optim import LBFGSB, EvaluationStore, History, minimize

# -- the driver ---------------------------------------------------------------------------------

def update_weights(shape: tuple[int, ...], data: ShotData, *, fixed_rows: int = 0,
                   depth_power: float = 1.0, illumination: np.ndarray | None = None
                   ) -> np.ndarray:
    """The diagonal preconditioner of a model update ``[z, x]`` or ``[z, y, x]`` (largest entry 1).

    A depth weight ``((z + 1) / nz) ** depth_power``, zero on ``fixed_rows``, and on the
    model's edge cells divided by one plus the padding cells they stand for (an edge
    cell's gradient sums the whole padded strip outside it, which would otherwise make
    edges update first); with ``illumination`` ``E``, also ``1 / sqrt(E / max E + floor)``
    (a diagonal pseudo-Hessian: well-lit cells near the sources move less).
    """
    nz, *sides = shape
    z = np.arange(nz, dtype=np.float64)
    wz = ((z + 1) / nz) ** depth_power if depth_power else np.ones(nz)
    wz[:fixed_rows] = 0.0
    wz /= max(wz.max(), 1e-30)
    halo = data.order // 2
    top = halo + (0 if data.free_surface else data.pml_width)
    side = halo + data.pml_width
    wz[0] /= 1 + top
    wz[-1] /= 1 + side
    w = wz.reshape(nz, *(1 for _ in sides))
    for axis, n in enumerate(sides, start=1):   # y and x (2D: x only)
        wa = np.ones(n)
        wa[0] /= 1 + side
        wa[-1] /= 1 + side
        w = w * wa.reshape([n if k == axis else 1 for k in range(len(shape))])
    if illumination is not None:
        e = np.asarray(illumination, dtype=np.float64)
        w = w / np.sqrt(e / max(float(e.max()), 1e-300) + ILLUMINATION_FLOOR)
        w /= max(float(w.max()), 1e-300)
    return w


@dataclass(frozen=True)
class Stage:
    """One frequency stage: data and wavelet low-passed at ``cutoff`` Hz (``None``: full band)."""

    cutoff: float | None
    iterations: int


@dataclass
class Inversion:
    """L-BFGS-B full-waveform inversion with frequency stages, resumable from ``out``.

    Attributes:
        data: the experiment (observed traces included).
        initial: starting velocity ``[z, x]`` or ``[z, y, x]`` in m/s.
        stages: frequency stages, low to high.
        bounds: ``(vmin, vmax)`` in m/s.
        evaluator: velocity -> (loss, gradient) over all shots.
        out: output folder (models, history, evaluation store).
        truth: the true model, when known (for the model error).
        fixed_rows: top rows kept at their initial values (e.g. a known water layer).
        depth_power: the preconditioner weights cells by ``(z / z_max) ** depth_power``
            (0 for none).
        smoothing: Gaussian smoothing of the update in cells (0 for none).
        illumination: source illumination, shaped as the model (see :func:`illumination`); when given,
            the update is scaled by ``1 / sqrt(E / max E + floor)`` (a diagonal
            pseudo-Hessian: well-lit cells near the sources move less).
        step: the largest velocity change in m/s of each stage's first iteration (the
            objective is scaled so that L-BFGS-B's first step, minus the gradient, has this
            size; later steps follow the curvature).
        max_line_search: L-BFGS-B's line-search evaluations per iteration.
        echo: where progress lines go (``None`` for quiet).
    """

    data: ShotData
    initial: np.ndarray
    stages: Sequence[Stage]
    bounds: tuple[float, float]
    evaluator: Evaluator
    out: pathlib.Path
    truth: np.ndarray | None = None
    fixed_rows: int = 0
    depth_power: float = 1.0
    smoothing: float = 0.0
    illumination: np.ndarray | None = None
    step: float = 50.0
    max_line_search: int = 8
    echo: Callable[[str], None] | None = print

    # -- helpers ---------------------------------------------------------------------------
    def model_error(self, v: np.ndarray) -> float | None:
        """Relative L2 error against the truth (``None`` when unknown)."""
        if self.truth is None:
            return None
        return float(np.linalg.norm(v - self.truth) / np.linalg.norm(self.truth))

    @functools.cached_property
    def _weights(self) -> np.ndarray:
        """The diagonal of the preconditioner (largest entry 1); see :func:`update_weights`."""
        return update_weights(self.initial.shape, self.data, fixed_rows=self.fixed_rows,
                              depth_power=self.depth_power, illumination=self.illumination)

    def _apply(self, delta: np.ndarray) -> np.ndarray:
        p = self._weights * delta.reshape(self.initial.shape)
        if self.smoothing > 0:
            p = ndimage.gaussian_filter(p, self.smoothing, mode="constant")
            p[: self.fixed_rows] = 0.0
        return p

    def _apply_t(self, g: np.ndarray) -> np.ndarray:
        if self.smoothing > 0:
            g = g.copy()
            g[: self.fixed_rows] = 0.0
            g = ndimage.gaussian_filter(g, self.smoothing, mode="constant")
        return (self._weights * g).ravel()

    def _say(self, text: str) -> None:
        if self.echo is not None:
            self.echo(text)

    # -- the evaluation store --------------------------------------------------------------
    @functools.cached_property
    def _store(self) -> EvaluationStore:
        return EvaluationStore(self.out / "evaluations", tag="fwi")

    def _evaluate(self, stage: int, start: np.ndarray, data: ShotData, delta: np.ndarray
                  ) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
        """(loss, dL/dδ, velocity, dL/dv) at ``δ``, from the store when already computed."""
        v = np.clip(start + self._apply(delta), *self.bounds)

        def compute() -> dict[str, np.ndarray | float]:
            loss, grad_v = self.evaluator(v, data)
            inside = (v > self.bounds[0]) & (v < self.bounds[1])
            return {"loss": loss, "grad": self._apply_t(np.where(inside, grad_v, 0.0)),
                    "grad_v": grad_v}

        found = self._store.fetch(self._store.key(float(stage), start, delta), compute)
        return float(found["loss"]), found["grad"], v, found["grad_v"]

    # -- run ---------------------------------------------------------------------------------
    def run(self) -> InversionResult:
        """Run every stage; returns the final model and what happened.

        Writes ``model_NNNN.npy`` (``0000``: the start) and ``history.json`` (iteration 0:
        the start) after every iteration.
        """
        computed = self._store.computed
        total = sum(st.iterations for st in self.stages)
        history = History(self.out / "history.json", resume=True, total=total, echo=self.echo)
        model = np.asarray(self.initial, dtype=np.float64).copy()
        stage_losses: list[tuple[float, float]] = []
        lo, hi = self.bounds
        for s, stage in enumerate(self.stages):
            data = self.data.stage(stage.cutoff)
            start = model
            f0, g0, _, g0_v = self._evaluate(s, start, data, np.zeros(model.size))
            if s == 0:
                first_gradient = g0_v
            # L-BFGS-B's first step is minus the gradient: scale the objective so that this
            # step changes the model by at most `step` m/s (later steps use curvature).
            reach = float(np.abs(self._apply(g0)).max())
            scale = (f0 if f0 > 0 else 1.0) if reach == 0 else reach / self.step
            norm = float(np.linalg.norm(data.observed))

            def objective(delta: np.ndarray, s: int = s, start: np.ndarray = start,
                          data: ShotData = data) -> tuple[float, np.ndarray]:
                loss, grad, _, _ = self._evaluate(s, start, data, delta)
                return loss, grad

            def metrics(n: int, delta: np.ndarray, loss: float, grad: np.ndarray, s: int = s,
                        start: np.ndarray = start, stage: Stage = stage, norm: float = norm
                        ) -> dict[str, object]:
                v = np.clip(start + self._apply(delta), lo, hi)
                write_npy(self.out / f"model_{n:04d}.npy", v)
                # 0.5 |d - d_obs|^2 as the relative L2 misfit |d - d_obs| / |d_obs| of the stage
                rel = np.sqrt(2.0 * loss) / norm if norm > 0 else float("nan")
                return {"stage": s, "cutoff_hz": stage.cutoff or 0.0, "stage_misfit": rel,
                        "model_error": self.model_error(v)}

            def describe(entry: dict[str, object], stage: Stage = stage, s: int = s) -> str:
                err = entry["model_error"]
                return (f"stage {s + 1}/{len(self.stages)} ({stage.cutoff or 'full band'} Hz)  "
                        f"stage misfit {entry['stage_misfit']:.4f}  "
                        f"|g| {entry['gradient_norm']:.3e}"
                        + ("" if err is None else f"  model error {err:.4f}"))

            bounds = None
            if self.smoothing == 0:   # v = start + w δ: velocity bounds are bounds on δ
                w = self._weights.ravel()
                safe = np.where(w > 0, w, 1.0)
                bounds = (np.where(w > 0, (lo - start.ravel()) / safe, 0.0),
                          np.where(w > 0, (hi - start.ravel()) / safe, 0.0))
            method = LBFGSB(max_line_search=self.max_line_search, gtol=0.0,
                            max_evaluations=stage.iterations * (self.max_line_search + 2))
            result = minimize(objective, np.zeros(model.size), method=method,
                              iterations=stage.iterations, history=history, bounds=bounds,
                              scale=scale, metrics=metrics, describe=describe)
            if stage.iterations > 0:
                model = np.clip(start + self._apply(result.x), lo, hi)
                self._say(f"stage {s + 1} ended after {result.iterations} iterations: "
                          f"{result.message}")
            stage_losses.append((f0, result.loss))
        return InversionResult(model=model, history=history.entries, first_gradient=first_gradient,
                               stage_losses=stage_losses, wall_seconds=history.seconds,
                               evaluations=self._store.computed - computed)


@dataclass
class InversionResult:
    """What :meth:`Inversion.run` returns.

    Attributes:
        model: the final velocity, shaped as the starting model.
        history: one entry per iteration, iteration 0 the start (stage, loss, gradient norm,
            stage misfit, model error, seconds).
        first_gradient: ``dL/dv`` at the starting model on the first stage's data.
        stage_losses: ``(first, last)`` loss of every stage on that stage's data.
        wall_seconds: time over every session of this run (resumed ones included).
        evaluations: gradients computed in this session (not read back from the store).
    """

    model: np.ndarray
    history: list[dict[str, Any]]
    first_gradient: np.ndarray
    stage_losses: list[tuple[float, float]]
    wall_seconds: float
    evaluations: int
