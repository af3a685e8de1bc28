"""Reverse-time migration (RTM) and least-squares RTM over the shots of an experiment.

The migration operator is the adjoint ``J^T`` of Born modelling ``J = d traces / d
velocity`` at a background velocity (:class:`diffsim.acoustic.Born`): ``J^T d`` is the
RTM image of the scattered data ``d`` (the cross-correlation of the source wavefield's
second time derivative with the receiver wavefield, scaled by ``2 / c^3``, exactly as the
discrete simulation defines it). Least-squares RTM solves ``min_m ||J m - d||^2`` for the
velocity perturbation ``m`` (m/s) by conjugate gradients on the normal equations (CGLS),
one ``J`` and one ``J^T`` per iteration; its state is written after every iteration so a
killed run resumes where it stopped and ends with the same bits.

Image processing (:func:`process`): source-illumination compensation ``I / (E + eps
max E)`` with ``E = sum_shots sum_t u_s^2`` (a diagonal approximation of the Hessian) and
a Laplacian filter ``-lap(I)``, which removes the low-wavenumber backscatter that
cross-correlation images carry above strong reflectors.
"""

from __future__ import annotations

import io
import json
import math
import pathlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from diffsim.acoustic import Born
from diffsim.checkpoint import Schedule
from diffsim.fwi.data import ShotData
from diffsim.io import atomic_write, write_json

__all__ = ["BornShots", "LeastSquaresMigration", "LsrtmResult", "agc", "correlation",
           "laplacian", "process", "reflectivity", "shot_groups"]


def shot_groups(shots: int, batch: int) -> list[list[int]]:
    """Shot indices in groups of ``batch`` (0: one group of all)."""
    size = shots if batch <= 0 else batch
    return [list(range(k, min(k + size, shots))) for k in range(0, shots, size)]


class BornShots:
    """Born modelling ``J m`` and migration ``J^T d`` of every shot of ``data`` at ``velocity``.

    Args:
        velocity: the background ``[z, x]`` in m/s (smooth: the migration velocity).
        data: the experiment (its ``observed`` traces are not used here).
        density: background density (kg/m^3) for the variable-density scheme, or ``None``.
        batch: shots per operator (0: all in one); each group has one :class:`Born`,
            built at first use and kept (least-squares RTM reuses it every iteration).
        checkpoint: the schedule of the migrations' reverse sweeps (``None``: the default
            memory budget).
    """

    def __init__(self, velocity: np.ndarray, data: ShotData, *, density: np.ndarray | None = None,
                 batch: int = 0, checkpoint: Schedule | None = None) -> None:
        self.velocity = np.asarray(velocity, dtype=np.float64)
        self.data = data
        self.groups = shot_groups(data.shots, batch)
        self.checkpoint = checkpoint
        self.density = density
        self._ops: dict[int, Born] = {}

    def _op(self, k: int) -> Born:
        if k not in self._ops:
            d, g = self.data, self.groups[k]
            self._ops[k] = Born(self.velocity, np.zeros_like(self.velocity), d.spacing, d.dt,
                                d.wavelet, d.sources[g], d.receivers, density=self.density,
                                **d.stepper_options())
        return self._ops[k]

    def modelled(self, scatter: np.ndarray) -> np.ndarray:
        """Born traces ``[shot, receiver, nt]`` (float64) of the perturbation ``scatter`` (m/s).

        The operator is linear, so it runs on ``scatter / max|scatter|`` and scales the
        result back: a CG direction far from unit size (``J^T r`` is tiny in m/s) stays
        clear of single-precision underflow inside the kernels.
        """
        peak = float(np.abs(scatter).max())
        parts = []
        for k, group in enumerate(self.groups):
            if peak == 0:
                parts.append(np.zeros((len(group), *self.data.observed.shape[1:])))
                continue
            op = self._op(k)
            op.update(scatter=np.asarray(scatter, dtype=np.float64) / peak)
            parts.append(op.simulate()["traces"].astype(np.float64) * peak)
        return np.concatenate(parts, axis=0)

    def migrate_group(self, k: int, traces: np.ndarray, *, keep: bool = True) -> np.ndarray:
        """``J^T`` of group ``k``'s traces ``[group shots, receiver, nt]``: its image ``[z, x]``.

        ``keep=False`` frees the group's operator afterwards (one pass over the shots, as
        RTM makes: the memory of one group at a time).
        """
        peak = float(np.abs(traces).max())     # linear: run on unit-size traces (see modelled)
        image = np.zeros_like(self.velocity)
        if peak > 0:
            cot = {"traces": np.asarray(traces, dtype=np.float64) / peak}
            image = self._op(k).vjp(cot, checkpoint=self.checkpoint)["scatter"] * peak
        if not keep:
            self._ops.pop(k).close()
        return image

    def migrate(self, traces: np.ndarray) -> np.ndarray:
        """``J^T d``: the RTM image ``[z, x]`` of traces ``[shot, receiver, nt]``, summed over shots."""
        image = np.zeros_like(self.velocity)
        for k, g in enumerate(self.groups):
            image += self.migrate_group(k, traces[g])
        return image

    def close(self) -> None:
        """Free the operators' memory."""
        for op in self._ops.values():
            op.close()
        self._ops.clear()


def laplacian(image: np.ndarray, spacing: float) -> np.ndarray:
    """``-lap(image)`` (second-order differences, edges replicated), per m^2."""
    padded = np.pad(np.asarray(image, dtype=np.float64), 1, mode="edge")
    core = padded[1:-1, 1:-1]
    lap = (padded[2:, 1:-1] + padded[:-2, 1:-1] + padded[1:-1, 2:] + padded[1:-1, :-2]
           - 4.0 * core) / spacing**2
    return -lap


def process(image: np.ndarray, spacing: float, *, illumination: np.ndarray | None = None,
            epsilon: float = 1e-3, filter_laplacian: bool = True, mute_rows: int = 0
            ) -> np.ndarray:
    """The displayed RTM image: compensated, filtered, muted, scaled to peak 1.

    ``J^T d`` approximates ``J^T J dc``, a band-limited copy of the velocity perturbation
    that made the data: a thin layer faster than the background images positive at its
    depth (tested). A sharp interface images as the band-limited step, with lobes of
    both signs around it (in 2D the imaging condition also rotates the phase against
    the reflectivity series), so compare structure, not polarity, with a reflectivity.

    Args:
        image: the raw migrated image ``J^T d`` ``[z, x]``.
        spacing: m.
        illumination: source illumination ``E`` ``[z, x]``; divides the image by ``E + epsilon
            max E`` (``None``: no compensation).
        epsilon: stabilisation of the division, relative to the peak illumination.
        filter_laplacian: apply ``-lap`` (suppresses low-wavenumber backscatter).
        mute_rows: rows zeroed at the top (the water layer, the acquisition's near field).
    """
    out = np.asarray(image, dtype=np.float64).copy()
    if illumination is not None:
        light = np.asarray(illumination, dtype=np.float64)
        out = out / (light + epsilon * float(light.max()))
    if filter_laplacian:
        out = laplacian(out, spacing)
    out[:mute_rows] = 0.0
    peak = float(np.abs(out).max())
    return out / peak if peak > 0 else out


def agc(image: np.ndarray, window: int) -> np.ndarray:
    """Automatic gain control for display: ``image`` over its RMS in a ``window``-cell square.

    Deep reflectors, weak after spreading and transmission losses, show as clearly as
    shallow ones; amplitudes lose their meaning (use it for figures only).
    """
    from scipy import ndimage

    img = np.asarray(image, dtype=np.float64)
    if window <= 1:
        return img.copy()
    rms = np.sqrt(ndimage.uniform_filter(img * img, size=window, mode="nearest"))
    return img / (rms + 1e-3 * float(rms.max()) + 1e-300)


def reflectivity(velocity: np.ndarray, density: np.ndarray | None = None) -> np.ndarray:
    """Normal-incidence reflectivity ``(Z[i+1] - Z[i]) / (Z[i+1] + Z[i])`` down each column.

    ``Z = rho c`` (``rho = 1`` without a density); the last row is zero. ``[z, x]``.
    """
    z = np.asarray(velocity, dtype=np.float64)
    if density is not None:
        z = z * np.asarray(density, dtype=np.float64)
    out = np.zeros_like(z)
    out[:-1] = (z[1:] - z[:-1]) / (z[1:] + z[:-1])
    return out


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Normalised zero-lag correlation ``<a, b> / (|a| |b|)`` (0 when either is zero)."""
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    return float(np.vdot(a, b)) / (na * nb) if na > 0 and nb > 0 else 0.0


@dataclass
class LsrtmResult:
    """Result of :meth:`LeastSquaresMigration.run`.

    Attributes:
        image: the velocity perturbation ``m`` (m/s) ``[z, x]``.
        history: one entry per iteration (iteration 0: the start), each with
            ``residual`` (``|d - J m| / |d|``), ``seconds`` and the caller's metrics.
        wall_seconds: time spent in this session.
        iterations_this_session: CG iterations computed (not read back) in this session.
        stop_reason: why it stopped (the iteration count, or convergence).
    """

    image: np.ndarray
    history: list[dict[str, float]] = field(default_factory=list)
    wall_seconds: float = 0.0
    iterations_this_session: int = 0
    stop_reason: str = ""


class LeastSquaresMigration:
    """CGLS for ``min_m ||J m - d||^2``; resumable from its state file.

    Args:
        shots: the Born operators (:class:`BornShots`).
        observed: the scattered data ``d`` ``[shot, receiver, nt]``.
        folder: where ``lsrtm_state.npz`` and ``lsrtm_history.json`` live (``None``: not
            saved). A folder holding them resumes at their last iteration.
        metrics: ``m -> {name: value}`` evaluated after each iteration (e.g. the error
            against a true model).
    """

    STATE = "lsrtm_state.npz"
    HISTORY = "lsrtm_history.json"

    def __init__(self, shots: BornShots, observed: np.ndarray, *,
                 folder: pathlib.Path | None = None,
                 metrics: Callable[[np.ndarray], dict[str, float]] | None = None) -> None:
        self.shots = shots
        self.observed = np.asarray(observed, dtype=np.float64)
        self.folder = None if folder is None else pathlib.Path(folder)
        self.metrics = metrics

    def _save(self, state: dict[str, np.ndarray], history: list[dict[str, float]]) -> None:
        """The CG state and its history in one atomic file (a kill leaves the old or the new).

        ``lsrtm_history.json`` is a readable copy written after it.
        """
        if self.folder is None:
            return
        buffer = io.BytesIO()
        np.savez(buffer, allow_pickle=False, history=np.array(json.dumps(history)), **state)
        atomic_write(self.folder / self.STATE, lambda h: h.write(buffer.getvalue()), binary=True)
        write_json(self.folder / self.HISTORY, history)

    def _load(self) -> tuple[dict[str, np.ndarray], list[dict[str, float]]] | None:
        """The saved state and history, or ``None`` when there are none."""
        if self.folder is None or not (self.folder / self.STATE).is_file():
            return None
        with np.load(self.folder / self.STATE) as f:
            state: dict[str, np.ndarray] = {k: f[k] for k in f.files}
        return state, json.loads(str(state.pop("history")))

    def run(self, iterations: int, *, echo: Callable[[str], None] | None = None) -> LsrtmResult:
        """Run (or continue) CGLS up to ``iterations`` iterations in total."""
        start = time.perf_counter()
        d = self.observed
        norm_d = float(np.linalg.norm(d)) or 1.0
        loaded = self._load()
        done = 0
        if loaded is None:
            m = np.zeros_like(self.shots.velocity)
            r = d.astype(np.float64)
            p = self.shots.migrate(r)
            gamma = float(np.vdot(p, p))
            entry = {"iteration": 0, "residual": 1.0, "seconds": time.perf_counter() - start}
            entry.update(self.metrics(m) if self.metrics else {})
            history = [entry]
            self._save(dict(m=m, r=r, p=p, gamma=np.array(gamma)), history)
        else:
            state, history = loaded
            m, r, p = state["m"], state["r"], state["p"]
            gamma = float(state["gamma"])
        it = len(history) - 1
        stop = f"{iterations} iterations"
        while it < iterations:
            if gamma == 0:
                stop = "the migrated residual is zero (converged)"
                break
            t0 = time.perf_counter()
            q = self.shots.modelled(p)
            qq = float(np.vdot(q, q))
            if not math.isfinite(qq):
                raise FloatingPointError(f"LSRTM iteration {it + 1}: the Born traces of the CG "
                                         "direction are not finite")
            if qq == 0:
                stop = "the Born traces of the CG direction are zero (nothing left to fit)"
                break
            alpha = gamma / qq
            m = m + alpha * p
            r = r - alpha * q
            s = self.shots.migrate(r)
            gamma_new = float(np.vdot(s, s))
            p = s + (gamma_new / gamma) * p
            gamma = gamma_new
            it += 1
            done += 1
            entry = {"iteration": it, "residual": float(np.linalg.norm(r)) / norm_d,
                     "seconds": time.perf_counter() - t0}
            entry.update(self.metrics(m) if self.metrics else {})
            history.append(entry)
            self._save(dict(m=m, r=r, p=p, gamma=np.array(gamma)), history)
            if echo is not None:
                extra = "".join(f", {k} {v:.4f}" for k, v in entry.items()
                                if k not in ("iteration", "residual", "seconds"))
                echo(f"LSRTM iteration {it}/{iterations}: residual {entry['residual']:.4f}{extra} "
                     f"({entry['seconds']:.1f} s)")
        if echo is not None and stop != f"{iterations} iterations":
            echo(f"LSRTM stopped after {it} iterations: {stop}")
        return LsrtmResult(m, history, time.perf_counter() - start, done, stop)
