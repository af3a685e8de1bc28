"""Full-waveform inversion: acquisition, data, shot evaluators and a resumable L-BFGS-B driver.

The driver minimises the L2 waveform misfit over the velocity model, stage by stage from
low to high frequency (observed data and wavelet low-passed per stage). The optimiser
works on a scaled variable ``δ`` with ``v = clip(v_start + P δ, vmin, vmax)``, where ``P``
is the preconditioner (a depth weight, optionally followed by Gaussian smoothing); its
gradient ``Pᵀ (dL/dv)`` is exact, so the line search sees a consistent function.

Every evaluation (``δ``, loss, gradient) is stored atomically in the output folder. A
resumed run replays SciPy's deterministic L-BFGS-B from the start and answers the
evaluations it has already done from that store, so it reproduces the uninterrupted run
bit for bit and only recomputes the evaluation that was cut off.
"""

from __future__ import annotations

import functools
import hashlib
import pathlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from scipy import ndimage, signal
from scipy.optimize import minimize

from diffsim.io import atomic_write, read_json, write_json, write_npy

#: Added to the normalised illumination before the inverse square root (caps the boost
#: of dark cells at about 1 / sqrt(floor)).
ILLUMINATION_FLOOR = 1e-2

__all__ = ["Inversion", "InversionResult", "SerialShots", "ShotData", "Stage", "dask_evaluator",
           "illumination", "lowpass", "run_scenario", "serial_evaluator", "surface_acquisition"]


# -- acquisition and data ------------------------------------------------------------------

def surface_acquisition(shape: tuple[int, int], spacing: float, shots: int, receivers: int, *,
                        source_depth: float, receiver_depth: float
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Sources and receivers spread evenly along the surface of a ``[z, x]`` grid.

    Args:
        shape: the model's ``(nz, nx)``.
        spacing: grid spacing in m.
        shots: number of shots (one source each), at least 1.
        receivers: receivers shared by every shot, at least 1.
        source_depth: depth of the sources in m.
        receiver_depth: depth of the receivers in m.

    Returns:
        ``sources [shot, 2]`` and ``receivers [receiver, 2]`` in m as ``(z, x)``.
    """
    nz, nx = shape
    width, depth = (nx - 1) * spacing, (nz - 1) * spacing
    for name, count in (("shots", shots), ("receivers", receivers)):
        if not isinstance(count, (int, np.integer)) or count < 1:
            raise ValueError(f"{name}={count!r} must be a positive integer")
    for name, z in (("source_depth", source_depth), ("receiver_depth", receiver_depth)):
        if not 0 <= z <= depth:
            raise ValueError(f"{name}={z} m must lie in [0, {depth:g}] m (the model's depth)")
    margin = min(2 * spacing, 0.05 * width)
    xs = np.linspace(margin, width - margin, shots) if shots > 1 else np.array([0.5 * width])
    xr = np.linspace(0.0, width, receivers) if receivers > 1 else np.array([0.5 * width])
    src = np.stack([np.full(shots, float(source_depth)), xs], axis=1)
    rec = np.stack([np.full(receivers, float(receiver_depth)), xr], axis=1)
    return src, rec


def lowpass(data: np.ndarray, dt: float, cutoff: float | None, *, order: int = 8) -> np.ndarray:
    """Causal Butterworth low-pass along the last (time) axis, from rest.

    Causal and linear, so low-passing the observed data equals simulating with the
    low-passed wavelet (the filter commutes with the wave equation), and nothing leaks
    before the first sample.

    Args:
        data: ``[..., nt]``.
        dt: sample interval in s.
        cutoff: corner frequency in Hz; ``None`` or 0 returns ``data`` unchanged.
        order: filter order.
    """
    if not cutoff:
        return np.asarray(data, dtype=np.float64)
    nyquist = 0.5 / dt
    if not 0 < cutoff < nyquist:
        raise ValueError(f"cutoff={cutoff} Hz must lie in (0, {nyquist:g}) Hz (the Nyquist "
                         f"frequency of dt={dt:g} s)")
    sos = signal.butter(order, cutoff, btype="low", fs=1.0 / dt, output="sos")
    return signal.sosfilt(sos, np.asarray(data, dtype=np.float64), axis=-1)


@dataclass(frozen=True)
class ShotData:
    """Everything about the experiment except the velocity.

    Attributes:
        spacing: grid spacing in m.
        dt: time step and sample interval in s.
        wavelet: ``[nt]`` source time function shared by every shot.
        sources: ``[shot, 2]`` in m.
        receivers: ``[receiver, 2]`` in m (shared by every shot).
        observed: ``[shot, receiver, nt]``.
        order: spatial order of the stencil.
        pml_width: PML cells.
        free_surface: free surface on top.
        pml_velocity: m/s the PML is scaled to (``None``: each stepper's maximum velocity).
        pml_frequency: Hz the PML is tuned to (``None``: each wavelet's dominant frequency).
            Fix both so every stepper of a run has the same PML, whatever model or stage
            it was built for (needed for bitwise resumption).
    """

    spacing: float
    dt: float
    wavelet: np.ndarray
    sources: np.ndarray
    receivers: np.ndarray
    observed: np.ndarray
    order: int = 4
    pml_width: int = 20
    free_surface: bool = False
    pml_velocity: float | None = None
    pml_frequency: float | None = None

    @property
    def shots(self) -> int:
        """Number of shots."""
        return int(self.sources.shape[0])

    def stage(self, cutoff: float | None) -> ShotData:
        """The data and wavelet low-passed at ``cutoff`` Hz."""
        return replace(self, wavelet=lowpass(self.wavelet, self.dt, cutoff),
                       observed=lowpass(self.observed, self.dt, cutoff))

    def subset(self, shots: Sequence[int]) -> ShotData:
        """Only the given shots."""
        idx = np.asarray(shots, dtype=int)
        return replace(self, sources=self.sources[idx], observed=self.observed[idx])

    def geometry_key(self, shape: tuple[int, ...]) -> str:
        """A digest of everything a compiled stepper for these shots depends on."""
        return hashlib.sha1(repr((tuple(shape), self.spacing, self.dt, self.wavelet.size,
                                  self.stepper_options(), self.sources.tobytes(),
                                  self.receivers.tobytes())).encode()).hexdigest()

    def stepper_options(self) -> dict[str, object]:
        """Keyword arguments of :class:`diffsim.acoustic.AcousticStepper` for this experiment."""
        return dict(order=self.order, pml_width=self.pml_width, free_surface=self.free_surface,
                    pml_velocity=self.pml_velocity, pml_frequency=self.pml_frequency)


# -- evaluators: velocity -> (loss, dloss/dvelocity) over all shots ----------------------------

Evaluator = Callable[[np.ndarray, ShotData], tuple[float, np.ndarray]]


class _ShotGroup:
    """One compiled stepper for a fixed set of shots, reused across velocities and stages."""

    def __init__(self, velocity: np.ndarray, data: ShotData, checkpoint: str | None) -> None:
        from diffsim.acoustic import AcousticStepper
        from diffsim.checkpoint import parse_schedule

        self.checkpoint = parse_schedule(checkpoint) if checkpoint else None
        # Kept for the whole inversion: the field engine's faster kernels pay for its
        # one compilation.
        self.stepper = AcousticStepper(velocity, data.spacing, data.dt, data.wavelet, data.sources,
                                       data.receivers, engine="fields", **data.stepper_options())

    def prepare(self, velocity: np.ndarray, data: ShotData) -> object:
        """The stepper, set to ``velocity`` and ``data``'s wavelet."""
        s = self.stepper
        s.set_velocity(velocity)
        s.set_param("wavelet", np.broadcast_to(data.wavelet, (data.shots, 1, data.wavelet.size)))
        return s

    def __call__(self, velocity: np.ndarray, data: ShotData) -> tuple[float, np.ndarray]:
        from diffsim.acoustic import stepper_misfit_gradient

        result = stepper_misfit_gradient(self.prepare(velocity, data), data.observed,
                                         checkpoint=self.checkpoint)
        self.report = result.report
        return result.loss, result.gradient

    def close(self) -> None:
        self.stepper.destroy()


class SerialShots:
    """Shots in this process, ``batch`` at a time in one batched stepper (0: all at once).

    Each group of shots compiles its stepper once, at first use; every later call (new
    velocity, new stage wavelet, forward modelling, snapshots) reuses it.

    Args:
        batch: shots per stepper; smaller bounds memory, larger amortises launches.
        checkpoint: schedule text for every gradient (``None``: the default memory budget).
    """

    def __init__(self, *, batch: int = 0, checkpoint: str | None = None) -> None:
        self.batch = batch
        self.checkpoint = checkpoint
        self._groups: dict[str, _ShotGroup] = {}

    def _parts(self, velocity: np.ndarray, data: ShotData
               ) -> list[tuple[_ShotGroup, ShotData]]:
        size = self.batch if self.batch > 0 else data.shots
        parts = []
        for lo in range(0, data.shots, size):
            part = data.subset(range(lo, min(lo + size, data.shots)))
            key = part.geometry_key(velocity.shape)
            if key not in self._groups:
                self._groups[key] = _ShotGroup(velocity, part, self.checkpoint)
            parts.append((self._groups[key], part))
        return parts

    def __call__(self, velocity: np.ndarray, data: ShotData) -> tuple[float, np.ndarray]:
        """Misfit and its gradient with respect to velocity, summed over every shot."""
        loss, grad = 0.0, np.zeros(velocity.shape)
        for group, part in self._parts(velocity, data):
            value, g = group(velocity, part)
            loss += value
            grad += g
        return loss, grad

    def forward(self, velocity: np.ndarray, data: ShotData, *,
                every: int | None = None,
                snapshot: Callable[[int, int, np.ndarray], None] | None = None) -> np.ndarray:
        """Traces ``[shot, receiver, nt]`` at ``velocity``.

        With ``snapshot``, ``snapshot(t, first, u)`` receives every ``every`` steps the
        wavefield ``u [shot, z, x]`` of each batch, whose first shot is number ``first``.
        """
        from diffsim._tape import rollout

        traces = []
        size = self.batch if self.batch > 0 else data.shots
        for k, (group, part) in enumerate(self._parts(velocity, data)):
            part_first = k * size
            stepper = group.prepare(velocity, part)
            if snapshot is None:
                rollout(stepper)
            else:
                stepper.reset()
                gap = every or 1
                for start in range(0, stepper.steps, gap):
                    stop = min(start + gap, stepper.steps)
                    stepper.advance_range(start, stop, {})
                    if stop % gap == 0:
                        snapshot(stop, part_first, stepper.wavefield(stop))
            traces.append(stepper.traces_array().astype(np.float64))
        return np.concatenate(traces, axis=0)

    def close(self) -> None:
        """Free every compiled stepper."""
        for group in self._groups.values():
            group.close()
        self._groups.clear()


def serial_evaluator(*, batch: int = 0, checkpoint: str | None = None) -> SerialShots:
    """Shots in this process (see :class:`SerialShots`)."""
    return SerialShots(batch=batch, checkpoint=checkpoint)


_WORKER_GROUPS: dict[str, _ShotGroup] = {}


def _worker_evaluate(key: str, runtime: tuple[str, str, int], velocity: np.ndarray,
                     data: ShotData, checkpoint: str | None) -> tuple[float, np.ndarray]:
    """Run in a Dask worker: initialise Taichi once, keep one stepper per shot group."""
    import diffsim
    from diffsim import _runtime

    arch, precision, threads = runtime
    if not _runtime.is_initialized():
        diffsim.init(arch, precision, threads=threads)
    if key not in _WORKER_GROUPS:
        _WORKER_GROUPS[key] = _ShotGroup(velocity, data, checkpoint)
    return _WORKER_GROUPS[key](velocity, data)


def dask_evaluator(*, workers: int = 2, scheduler: str | None = None,
                   checkpoint: str | None = None, retries: int = 3
                   ) -> tuple[Evaluator, Callable[[], None]]:
    """Shots spread over Dask workers (a local cluster, or the one at ``scheduler``).

    A local cluster has ``workers`` single-threaded processes. Each worker compiles one
    stepper for its group of shots and keeps it; a task whose worker dies is rerun
    elsewhere (``retries``), so a lost worker costs a recomputation.

    Returns:
        The evaluator and a function that shuts the cluster down.
    """
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError as exc:  # pragma: no cover - distributed is a dependency
        raise ImportError("shots on a Dask cluster need 'distributed' (pip install distributed)"
                          ) from exc
    from diffsim._runtime import ensure_init

    info = ensure_init()
    if scheduler:
        cluster = None
        client = Client(scheduler)
        groups = max(1, len(client.scheduler_info()["workers"]))
    else:
        if workers < 1:
            raise ValueError(f"workers={workers} must be at least 1")
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               dashboard_address=None)
        client = Client(cluster)
        groups = workers
    runtime = (info.arch if info.arch in ("cpu", "cuda", "vulkan") else "cpu", info.precision, 1)

    def evaluate(velocity: np.ndarray, data: ShotData) -> tuple[float, np.ndarray]:
        parts = [p for p in np.array_split(np.arange(data.shots), min(groups, data.shots)) if p.size]
        futures = []
        for part in parts:
            group = data.subset(part)
            key = f"{group.geometry_key(velocity.shape)}-{checkpoint}"
            futures.append(client.submit(_worker_evaluate, key, runtime, velocity, group,
                                         checkpoint, pure=False, retries=retries))
        loss, grad = 0.0, np.zeros(velocity.shape)
        for value, g in client.gather(futures):
            loss += value
            grad += g
        return loss, grad

    def close() -> None:
        client.close()
        if cluster is not None:
            cluster.close()

    evaluate.client = client  # type: ignore[attr-defined]
    return evaluate, close


def illumination(velocity: np.ndarray, data: ShotData, *, samples: int = 100,
                 shots: SerialShots | None = None) -> np.ndarray:
    """Source illumination ``E(x) = Σ_shots Σ_t u(x, t)²``, ``[z, x]``.

    Summed over about ``samples`` evenly spaced time levels of a forward run of every shot
    (on ``shots``' compiled steppers when given).
    """
    runner = shots or SerialShots()
    energy = np.zeros(velocity.shape)

    def add(_: int, __: int, u: np.ndarray) -> None:
        energy[...] += np.sum(np.square(u, dtype=np.float64), axis=0)

    runner.forward(velocity, data, every=max(1, (data.wavelet.size - 1) // samples), snapshot=add)
    if shots is None:
        runner.close()
    return energy


# -- the driver ---------------------------------------------------------------------------------

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
        initial: starting velocity ``[z, x]`` in m/s.
        stages: frequency stages, low to high.
        bounds: ``(vmin, vmax)`` in m/s.
        evaluator: velocity -> (loss, gradient) over all shots.
        out: output folder (models, history, evaluation store).
        truth: the true model, when known (for the model error).
        fixed_rows: top rows kept at their initial values (e.g. a known water layer).
        depth_power: the preconditioner weights cells by ``(z / z_max) ** depth_power``
            (0 for none).
        smoothing: Gaussian smoothing of the update in cells (0 for none).
        illumination: source illumination ``[z, x]`` (see :func:`illumination`); when given,
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
    _evaluations: int = field(default=0, init=False)
    _last: tuple[str, tuple] | None = field(default=None, init=False, repr=False)

    # -- helpers ---------------------------------------------------------------------------
    def model_error(self, v: np.ndarray) -> float | None:
        """Relative L2 error against the truth (``None`` when unknown)."""
        if self.truth is None:
            return None
        return float(np.linalg.norm(v - self.truth) / np.linalg.norm(self.truth))

    @functools.cached_property
    def _weights(self) -> np.ndarray:
        """The diagonal of the preconditioner (largest entry 1).

        A depth weight, zero on fixed rows, and on the model's edge cells divided by one
        plus the padding cells they stand for (an edge cell's gradient sums the whole
        padded strip outside it, which would otherwise make edges update first).
        """
        nz, nx = self.initial.shape
        z = np.arange(nz, dtype=np.float64)
        wz = ((z + 1) / nz) ** self.depth_power if self.depth_power else np.ones(nz)
        wz[: self.fixed_rows] = 0.0
        wz /= max(wz.max(), 1e-30)
        wx = np.ones(nx)
        halo = self.data.order // 2
        top = halo + (0 if self.data.free_surface else self.data.pml_width)
        side = halo + self.data.pml_width
        wz[0] /= 1 + top
        wz[-1] /= 1 + side
        wx[0] /= 1 + side
        wx[-1] /= 1 + side
        w = wz[:, None] * wx[None, :]
        if self.illumination is not None:
            e = np.asarray(self.illumination, dtype=np.float64)
            w = w / np.sqrt(e / max(float(e.max()), 1e-300) + ILLUMINATION_FLOOR)
            w /= max(float(w.max()), 1e-300)
        return w

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
    def _store(self) -> pathlib.Path:
        return self.out / "evaluations"

    def _evaluate(self, stage: int, start: np.ndarray, data: ShotData, delta: np.ndarray
                  ) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
        """(loss, dL/dδ, velocity, dL/dv) at ``δ``, from the store when already computed."""
        key = hashlib.sha1(np.float64(stage).tobytes() + np.ascontiguousarray(start).tobytes()
                           + np.ascontiguousarray(delta).tobytes()).hexdigest()[:24]
        if self._last is not None and self._last[0] == key:   # L-BFGS-B's callback repeats fun
            return self._last[1]
        path = self._store() / f"s{stage}-{key}.npz"
        v = np.clip(start + self._apply(delta), *self.bounds)
        if path.is_file():
            with np.load(path) as saved:
                result = float(saved["loss"]), saved["grad"], v, saved["grad_v"]
        else:
            self._evaluations += 1
            loss, grad_v = self.evaluator(v, data)
            inside = (v > self.bounds[0]) & (v < self.bounds[1])
            grad = self._apply_t(np.where(inside, grad_v, 0.0))
            atomic_write(path, lambda h: np.savez(h, loss=loss, grad=grad, grad_v=grad_v),
                         binary=True)
            result = loss, grad, v, grad_v
        self._last = (key, result)
        return result

    # -- run ---------------------------------------------------------------------------------
    def run(self) -> InversionResult:
        """Run every stage; returns the final model and what happened.

        Writes ``model_NNNN.npy`` (``0000``: the start) and ``history.json`` after every
        iteration.
        """
        self._store().mkdir(parents=True, exist_ok=True)
        clock = time.perf_counter()
        history_path = self.out / "history.json"
        previous = read_json(history_path) if history_path.is_file() else []
        offset = previous[-1]["seconds"] if previous else 0.0   # time of earlier sessions
        history: list[dict[str, object]] = []
        model = np.asarray(self.initial, dtype=np.float64).copy()
        write_npy(self.out / "model_0000.npy", model)
        stage_losses: list[tuple[float, float]] = []
        lo, hi = self.bounds
        total = sum(st.iterations for st in self.stages)
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

            def fun(delta: np.ndarray, s: int = s, start: np.ndarray = start,
                    data: ShotData = data, scale: float = scale) -> tuple[float, np.ndarray]:
                loss, grad, _, _ = self._evaluate(s, start, data, delta)
                return loss / scale, grad / scale

            def callback(xk: np.ndarray, s: int = s, start: np.ndarray = start,
                         data: ShotData = data, stage: Stage = stage) -> None:
                loss, grad, v, _ = self._evaluate(s, start, data, xk)
                n = len(history) + 1
                seconds = (previous[n - 1]["seconds"] if len(previous) >= n
                           else offset + time.perf_counter() - clock)
                entry = {"iteration": n, "stage": s, "cutoff_hz": stage.cutoff or 0.0,
                         "loss": loss, "gradient_norm": float(np.linalg.norm(grad)),
                         "model_error": self.model_error(v), "seconds": seconds}
                history.append(entry)
                write_npy(self.out / f"model_{n:04d}.npy", v)
                write_json(history_path, history)
                err = "" if entry["model_error"] is None else f"  model error {entry['model_error']:.4f}"
                bar = "#" * round(20 * n / total) if total else ""
                self._say(f"[{bar:<20s}] {n:3d}/{total}  stage {s + 1}/{len(self.stages)} "
                          f"({stage.cutoff or 'full band'} Hz)  loss {loss:.5e}  "
                          f"|g| {entry['gradient_norm']:.3e}{err}  {seconds:.1f} s")

            options = {"maxiter": stage.iterations, "maxls": self.max_line_search, "gtol": 0.0,
                       "maxfun": stage.iterations * (self.max_line_search + 2)}
            bounds = None
            if self.smoothing == 0:   # v = start + w δ: velocity bounds are bounds on δ
                w = self._weights.ravel()
                safe = np.where(w > 0, w, 1.0)
                bounds = list(zip(np.where(w > 0, (lo - start.ravel()) / safe, 0.0),
                                  np.where(w > 0, (hi - start.ravel()) / safe, 0.0), strict=True))
            last = f0
            if stage.iterations > 0:
                result = minimize(fun, np.zeros(model.size), jac=True, method="L-BFGS-B",
                                  bounds=bounds, callback=callback, options=options)
                model = np.clip(start + self._apply(result.x), lo, hi)
                self._say(f"stage {s + 1} ended after {result.nit} iterations: {result.message}")
                last = self._evaluate(s, start, data, result.x)[0]
            stage_losses.append((f0, last))
        return InversionResult(model=model, history=history, first_gradient=first_gradient,
                               stage_losses=stage_losses,
                               wall_seconds=offset + time.perf_counter() - clock,
                               evaluations=self._evaluations)


@dataclass
class InversionResult:
    """What :meth:`Inversion.run` returns.

    Attributes:
        model: the final velocity ``[z, x]``.
        history: one entry per iteration (stage, loss, gradient norm, model error, seconds).
        first_gradient: ``dL/dv`` at the starting model on the first stage's data.
        stage_losses: ``(first, last)`` loss of every stage on that stage's data.
        wall_seconds: time over every session of this run (resumed ones included).
        evaluations: gradients computed in this session (not read back from the store).
    """

    model: np.ndarray
    history: list[dict[str, object]]
    first_gradient: np.ndarray
    stage_losses: list[tuple[float, float]]
    wall_seconds: float
    evaluations: int


# -- the job behind `diffsim run <fwi scenario>` -------------------------------------------------

def _auto_dt(vmax: float, spacing: float, order: int) -> float:
    from diffsim.acoustic import max_stable_dt

    return float(np.floor(0.8 * max_stable_dt(vmax, (spacing, spacing), order) * 1e6) / 1e6)


def _check_out(scenario: object, out: pathlib.Path, resume: bool) -> None:
    """Refuse to mix runs: a folder holding a run needs --resume, with the same scenario."""
    saved = out / "scenario.toml"
    has_run = saved.is_file() or (out / "evaluations").is_dir()
    if has_run and not resume:
        raise ValueError(f"{out} already holds a run; pass --resume to continue it, or choose "
                         "another --out (or delete the folder) to start afresh")
    if resume and saved.is_file():
        import tomllib

        before = tomllib.loads(saved.read_text(encoding="utf-8"))
        now = tomllib.loads(scenario.to_toml())
        differ = sorted(k for k in set(before) | set(now)
                        if k != "iterations" and before.get(k) != now.get(k))
        if differ:
            raise ValueError(f"--resume: the scenario differs from the one in {saved} in "
                             f"{', '.join(differ)}; resume with the same settings or choose "
                             "another --out")


def run_scenario(scenario: object, options: object) -> dict[str, object]:
    """Run an FWI scenario (a ``diffsim.scenarios.FwiScenario``) into ``options.out``.

    Writes ``scenario.toml``, ``observed.npy`` and ``observed.sgy``, ``model_NNNN.npy`` per
    iteration, ``history.json``, ``summary.json`` and the figures. With ``options.resume``
    the finished iterations are read back, not recomputed.
    """
    from diffsim.acoustic import ricker
    from diffsim.models import smooth
    from diffsim.segy import read_segy, write_segy

    out = pathlib.Path(options.out)
    if options.iterations is not None:
        scenario = scenario.with_(iterations=options.iterations)
    _check_out(scenario, out, options.resume)
    say = options.echo
    truth, h = scenario.true_model(options.data)
    fixed = int(np.ceil(scenario.water_depth / h - 1e-9))
    if scenario.start_model == "background":
        initial = np.full(truth.shape, float(truth[0].mean()))
        initial[:fixed] = truth[:fixed]
    else:
        initial = smooth(truth, scenario.start_smoothing / h, fixed_rows=fixed)
    initial = np.clip(initial, scenario.vmin, scenario.vmax)
    dt = scenario.dt or _auto_dt(scenario.vmax, h, scenario.order)
    nt = int(round(scenario.duration / dt)) + 1
    src, rec = surface_acquisition(truth.shape, h, scenario.shots, scenario.receivers,
                                   source_depth=scenario.source_depth,
                                   receiver_depth=scenario.receiver_depth)
    if float(truth.max()) > scenario.vmax or float(truth.min()) < scenario.vmin:
        say(f"note: the true model spans {truth.min():.0f}-{truth.max():.0f} m/s, outside the "
            f"bounds [{scenario.vmin:g}, {scenario.vmax:g}]")
    # one experiment description; the PML is fixed so every stepper behaves the same
    data = ShotData(h, dt, ricker(scenario.peak_frequency, dt, nt), src, rec,
                    np.zeros((scenario.shots, scenario.receivers, nt)), order=scenario.order,
                    pml_width=scenario.pml_width, free_surface=scenario.free_surface,
                    pml_velocity=scenario.vmax, pml_frequency=scenario.peak_frequency)
    start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    scenario.save(out / "scenario.toml")
    shots = SerialShots(batch=scenario.batch, checkpoint=options.checkpoint)
    observed_path = out / "observed.npy"
    if observed_path.is_file():
        observed = np.load(observed_path)
    elif scenario.observed_file:
        path = pathlib.Path(scenario.observed_file)
        observed = read_segy(path)[0] if path.suffix.lower() in (".sgy", ".segy") else np.load(path)
        if observed.shape != data.observed.shape:
            raise ValueError(f"observed_file {path} holds traces of shape {observed.shape}; this "
                             f"scenario expects [shot, receiver, nt] = {list(data.observed.shape)}")
        write_npy(observed_path, observed)
    else:
        say(f"synthesising {scenario.shots} shots on {truth.shape[0]} x {truth.shape[1]} cells, "
            f"{nt} samples at dt {dt * 1e3:.3f} ms")
        observed = shots.forward(truth, data)
        if scenario.noise > 0:
            rng = np.random.default_rng(scenario.seed)
            rms = float(np.sqrt(np.mean(observed ** 2)))
            observed = observed + scenario.noise * rms * rng.normal(size=observed.shape)
        write_npy(observed_path, observed)
    if not (out / "observed.sgy").is_file():
        write_segy(out / "observed.sgy", observed, dt, src, rec)
    data = replace(data, observed=np.asarray(observed, dtype=np.float64))
    close = None
    evaluator: Evaluator = shots
    if options.workers > 1 or options.scheduler:
        evaluator, close = dask_evaluator(workers=options.workers, scheduler=options.scheduler,
                                          checkpoint=options.checkpoint)
    light = illumination(initial, data, shots=shots) if scenario.illumination else None
    stages = [Stage(f or None, scenario.iterations) for f in scenario.stages]
    inversion = Inversion(data=data, initial=initial, stages=stages,
                          bounds=(scenario.vmin, scenario.vmax), evaluator=evaluator, out=out,
                          truth=truth, fixed_rows=fixed, depth_power=scenario.depth_power,
                          illumination=light, smoothing=scenario.update_smoothing / h,
                          echo=None if options.quiet else say)
    try:
        result = inversion.run()
    finally:
        if close is not None:
            close()
    final = result.model
    syn0 = shots.forward(initial, data)
    mid = scenario.shots // 2
    frames: list[np.ndarray] = []
    times: list[float] = []

    def grab(t: int, first: int, u: np.ndarray) -> None:
        if 0 <= mid - first < u.shape[0]:
            frames.append(u[mid - first])
            times.append(t * dt)

    syn1 = shots.forward(final, data)
    norm = float(np.linalg.norm(observed))
    summary = {
        "scenario": scenario.as_dict(),
        "grid": list(truth.shape), "spacing_m": h, "dt_s": dt, "nt": nt,
        "initial_misfit": float(np.linalg.norm(syn0 - observed) / norm),
        "final_misfit": float(np.linalg.norm(syn1 - observed) / norm),
        "initial_model_error": inversion.model_error(initial),
        "final_model_error": inversion.model_error(final),
        "iterations": len(result.history),
        "stage_losses": [list(x) for x in result.stage_losses],
        "wall_seconds": result.wall_seconds,
        "gradients_this_session": result.evaluations,
        "resumed": bool(options.resume),
    }
    write_npy(out / "model_final.npy", final)
    from diffsim import figures

    figures.model_figure(out / "models.png", [("true", truth), ("initial", initial),
                                              ("inverted", final)], h, sources=src, receivers=rec)
    figures.shot_figure(out / "shot_gather.png", observed[mid], syn1[mid], dt, rec,
                        f"shot {mid} at the inverted model")
    figures.gradient_figure(out / "gradient.png", result.first_gradient, h)
    group, part = shots._parts(initial, data)[0]   # one more gradient, for its costate trace
    group(initial, part)
    figures.costate_figure(out / "costate.png", group.report.costate, dt=dt,
                           title=f"Adjoint state, shots 0-{part.shots - 1}, starting model")
    if result.history:
        figures.loss_figure(out / "loss.png", result.history)
    shots.forward(truth, data, every=max(1, (nt - 1) // 24), snapshot=grab)
    figures.wavefield_gif(out / "wavefield.gif", np.asarray(frames), truth, h, times)
    shots.close()
    summary["session_seconds"] = time.perf_counter() - start
    write_json(out / "summary.json", summary)
    say(f"misfit {summary['initial_misfit']:.4f} -> {summary['final_misfit']:.4f} (relative L2), "
        f"model error {summary['initial_model_error']:.4f} -> {summary['final_model_error']:.4f}; "
        f"{summary['iterations']} iterations, {summary['wall_seconds']:.1f} s; wrote {out}")
    return summary
