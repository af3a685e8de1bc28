"""Shot evaluators: ``velocity -> (misfit, d misfit / d velocity)`` summed over the shots.

In this process (:class:`SerialShots`) or on Dask workers (:func:`dask_evaluator`). Each
group of shots is one kept :class:`diffsim.Simulation` built by a factory
(:func:`acoustic_simulation` by default), so any wave physics with the same front-end
can be inverted: the evaluators only call ``update(velocity=, wavelet=)``,
``value_and_grad(L2(observed))`` and ``simulate()``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from diffsim._runtime import Arch, Precision
from diffsim._simulation import Simulation
from diffsim._tape import TapeReport
from diffsim.checkpoint import Schedule
from diffsim.fwi.data import ShotData
from diffsim.losses import L2

#: Added to the normalised illumination before the inverse square root (caps the boost
#: of dark cells at about 1 / sqrt(floor)).
ILLUMINATION_FLOOR = 1e-2

Evaluator = Callable[[np.ndarray, ShotData], tuple[float, np.ndarray]]
#: ``factory(velocity, data) -> Simulation`` for one group of shots: outputs ``"traces"``
#: ``[shot, receiver, nt]``, parameters ``"velocity"`` and ``"wavelet"`` (``[nt]``).
SimulationFactory = Callable[[np.ndarray, ShotData], Simulation]


def acoustic_simulation(velocity: np.ndarray, data: ShotData, *, engine: str = "fields",
                        density: np.ndarray | None = None) -> Simulation:
    """The default factory: constant-density acoustics, on the field engine by default.

    Kept for the whole inversion, the field engine's faster kernels pay for its one
    compilation per group of shots. ``functools.partial(acoustic_simulation,
    engine="arrays")`` chooses the array engine, whose kernels compile once per process
    and come from Taichi's disk cache after that: the quicker start for short runs.
    ``functools.partial(acoustic_simulation, density=rho)`` builds variable-density
    simulations (the cell engine; ``engine`` does not apply), for inverting velocity and
    density together (:meth:`SerialShots.evaluate`).
    """
    from diffsim.acoustic import Simulation as AcousticSimulation

    if density is not None:
        return AcousticSimulation(velocity, data.spacing, data.dt, data.wavelet, data.sources,
                                  data.receivers, density=density, **data.stepper_options())
    return AcousticSimulation(velocity, data.spacing, data.dt, data.wavelet, data.sources,
                              data.receivers, engine=engine, **data.stepper_options())


def elastic_simulation(vp: np.ndarray, data: ShotData, *, vs: np.ndarray, rho: np.ndarray,
                       source: str = "explosive") -> Simulation:
    """A factory of 2D elastic simulations (:class:`diffsim.elastic.Simulation`) for FWI.

    Bind the other two models with ``functools.partial(elastic_simulation, vs=vs,
    rho=rho)``; the evaluators then update ``vp``, ``vs`` and ``rho`` together, and
    compare the data with one recorded component (``SerialShots(output="vz")``). Every
    shot has one ``source`` (``"explosive"``, ``"vertical"`` or ``"horizontal"``) and
    records at every receiver of ``data``.

    Args:
        vp: P velocity ``[z, x]`` in m/s.
        data: the experiment (sources ``[shot, 2]``, receivers ``[receiver, 2]``, in m).
        vs: S velocity ``[z, x]`` in m/s (0 in water).
        rho: density ``[z, x]`` in kg/m^3.
        source: the source kind.
    """
    from diffsim import elastic

    return elastic.Simulation(vp, vs, rho, data.spacing, data.dt, data.wavelet,
                              data.sources[:, None, :], data.receivers[None], source=source,
                              **data.stepper_options())


class _ShotGroup:
    """One kept simulation for a fixed set of shots, reused across models and stages."""

    #: The tape's report of the last gradient (set by :meth:`evaluate`).
    report: TapeReport

    def __init__(self, velocity: np.ndarray, data: ShotData, checkpoint: str | None,
                 factory: SimulationFactory | None = None, output: str = "traces") -> None:
        from diffsim.checkpoint import parse_schedule

        self.checkpoint = parse_schedule(checkpoint) if checkpoint else None
        self.simulation = (factory or acoustic_simulation)(velocity, data)
        self.output = output
        # the shape the simulation keeps its wavelet in ([nt] acoustic, [shot, source, nt]
        # elastic): each stage's [nt] wavelet is broadcast to it
        self._wavelet_shape = np.shape(self.simulation.parameters()["wavelet"])

    def prepare(self, models: Mapping[str, np.ndarray], data: ShotData) -> Simulation:
        """The simulation, set to ``models`` (parameter name -> model) and ``data``'s wavelet."""
        self.simulation.update(wavelet=np.broadcast_to(data.wavelet, self._wavelet_shape),
                               **models)
        return self.simulation

    def __call__(self, velocity: np.ndarray, data: ShotData) -> tuple[float, np.ndarray]:
        loss, grads = self.evaluate({"velocity": velocity}, data)
        return loss, grads["velocity"]

    def evaluate(self, models: Mapping[str, np.ndarray], data: ShotData
                 ) -> tuple[float, dict[str, np.ndarray]]:
        """Misfit and its gradients with respect to every parameter in ``models``."""
        result = self.prepare(models, data).value_and_grad(
            L2(data.observed, output=self.output), wrt=tuple(models), checkpoint=self.checkpoint)
        self.report = result.report
        return result.loss, result.grads

    def close(self) -> None:
        self.simulation.close()


class SerialShots:
    """Shots in this process, ``batch`` at a time in one batched simulation (0: all at once).

    Each group of shots builds its simulation once, at first use; every later call (new
    velocity, new stage wavelet, forward modelling, snapshots) reuses it.

    Args:
        batch: shots per simulation; smaller bounds memory, larger amortises launches.
        checkpoint: schedule text for every gradient (``None``: the default memory budget).
        simulation: ``factory(model, data) -> Simulation`` for a group of shots
            (default :func:`acoustic_simulation`); ``model`` is the first parameter's
            (the velocity, or ``vp`` of :func:`elastic_simulation`).
        output: the simulation output the data are compared with (``"traces"`` for
            acoustics; ``"vz"``, ``"vx"`` or ``"pressure"`` for elastic waves).
    """

    def __init__(self, *, batch: int = 0, checkpoint: str | None = None,
                 simulation: SimulationFactory | None = None, output: str = "traces") -> None:
        self.batch = batch
        self.checkpoint = checkpoint
        self.factory = simulation
        self.output = output
        self._groups: dict[str, _ShotGroup] = {}

    def _parts(self, velocity: np.ndarray, data: ShotData
               ) -> list[tuple[_ShotGroup, ShotData]]:
        size = self.batch if self.batch > 0 else data.shots
        parts = []
        for lo in range(0, data.shots, size):
            part = data.subset(range(lo, min(lo + size, data.shots)))
            key = part.geometry_key(velocity.shape)
            if key not in self._groups:
                self._groups[key] = _ShotGroup(velocity, part, self.checkpoint, self.factory,
                                                self.output)
            parts.append((self._groups[key], part))
        return parts

    def check(self, velocity: np.ndarray, data: ShotData) -> Schedule:
        """Build the simulations and return the schedule their gradients will run under.

        Raises:
            ValueError: the checkpoint budget cannot hold one state (before any work).
        """
        group, _ = self._parts(velocity, data)[0]
        return group.simulation.schedule(group.checkpoint)

    def __call__(self, velocity: np.ndarray, data: ShotData) -> tuple[float, np.ndarray]:
        """Misfit and its gradient with respect to velocity, summed over every shot."""
        loss, grads = self.evaluate({"velocity": velocity}, data)
        return loss, grads["velocity"]

    def evaluate(self, models: Mapping[str, np.ndarray], data: ShotData
                 ) -> tuple[float, dict[str, np.ndarray]]:
        """Misfit and its gradients with respect to each of ``models``, summed over the shots.

        ``models`` maps the simulation's parameter names to models ``[z, x]``, the first
        one the factory's (``"velocity"`` and, with a variable-density factory,
        ``"density"``; ``"vp"``, ``"vs"``, ``"rho"`` with :func:`elastic_simulation`).
        """
        first = next(iter(models.values()))
        loss = 0.0
        grads = {name: np.zeros(first.shape) for name in models}
        for group, part in self._parts(first, data):
            value, g = group.evaluate(models, part)
            loss += value
            for name in models:
                grads[name] += g[name]
        return loss, grads

    def reports(self) -> list[TapeReport]:
        """The tape report of each group's last gradient (schedule, tiers, disk traffic).

        One per group of shots that has computed a gradient; after :meth:`evaluate` (or a
        call), those of that evaluation, in shot order.
        """
        return [g.report for g in self._groups.values() if hasattr(g, "report")]

    def forward(self, models: np.ndarray | Mapping[str, np.ndarray], data: ShotData, *,
                every: int | None = None,
                snapshot: Callable[[int, int, np.ndarray], None] | None = None) -> np.ndarray:
        """Traces ``[shot, receiver, nt]`` (the ``output``) at ``models``.

        ``models``: the velocity ``[z, x]``, or a mapping of parameter names to models as
        :meth:`evaluate` takes (e.g. ``{"velocity": v, "density": rho}``). With
        ``snapshot``, ``snapshot(t, first, u)`` receives every ``every`` steps the
        wavefield ``u [shot, z, x]`` of each batch, whose first shot is number ``first``
        (through :meth:`Simulation.snapshots`; the simulation must show a ``"wavefield"``,
        as the acoustic one does).
        """
        named = {"velocity": models} if isinstance(models, np.ndarray) else dict(models)
        first = next(iter(named.values()))
        traces = []
        size = self.batch if self.batch > 0 else data.shots
        for k, (group, part) in enumerate(self._parts(first, data)):
            part_first = k * size
            sim = group.prepare(named, part)
            if snapshot is None:
                traces.append(sim.simulate()[self.output].astype(np.float64))
            else:
                def show(t: int, state: dict[str, np.ndarray], first: int = part_first) -> None:
                    snapshot(t, first, state["wavefield"])

                traces.append(sim.snapshots(every or 1, show)[self.output].astype(np.float64))
        return np.concatenate(traces, axis=0)

    def close(self) -> None:
        """Free every kept simulation."""
        for group in self._groups.values():
            group.close()
        self._groups.clear()


def serial_evaluator(*, batch: int = 0, checkpoint: str | None = None,
                     simulation: SimulationFactory | None = None) -> SerialShots:
    """Shots in this process (see :class:`SerialShots`)."""
    return SerialShots(batch=batch, checkpoint=checkpoint, simulation=simulation)


_WORKER_GROUPS: dict[str, _ShotGroup] = {}


def _worker_evaluate(key: str, runtime: tuple[Arch, Precision, int], velocity: np.ndarray,
                     data: ShotData, checkpoint: str | None,
                     factory: SimulationFactory | None = None) -> tuple[float, np.ndarray]:
    """Run in a Dask worker: initialise Taichi once, keep one simulation per shot group."""
    import diffsim
    from diffsim import _runtime

    arch, precision, threads = runtime
    if not _runtime.is_initialized():
        diffsim.init(arch, precision, threads=threads)
    if key not in _WORKER_GROUPS:
        _WORKER_GROUPS[key] = _ShotGroup(velocity, data, checkpoint, factory)
    return _WORKER_GROUPS[key](velocity, data)


def dask_evaluator(*, workers: int = 2, scheduler: str | None = None,
                   checkpoint: str | None = None, retries: int = 3,
                   simulation: SimulationFactory | None = None, connect_timeout: float = 10.0
                   ) -> tuple[Evaluator, Callable[[], None]]:
    """Shots spread over Dask workers (a local cluster, or the one at ``scheduler``).

    A local cluster has ``workers`` single-threaded processes. Each worker builds one
    simulation for its group of shots (``simulation``: a picklable factory, default
    :func:`acoustic_simulation`) and keeps it; a task whose worker dies is rerun
    elsewhere (``retries``), so a lost worker costs a recomputation.

    Returns:
        The evaluator and a function that shuts the cluster down.

    Raises:
        ValueError: no scheduler answered at ``scheduler`` within ``connect_timeout`` s
            (one line saying how to start one), or ``workers`` < 1.
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
        try:
            client = Client(scheduler, timeout=connect_timeout)
        except (OSError, ValueError) as exc:
            raise ValueError(
                f"scheduler={scheduler!r}: no Dask scheduler answered ({exc}); start one "
                f"(`dask scheduler`, then `dask worker <its address>`), check the address, "
                "or leave the scheduler out to run the shots in this process") from None
        groups = max(1, len(client.scheduler_info()["workers"]))
    else:
        if workers < 1:
            raise ValueError(f"workers={workers} must be at least 1")
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               dashboard_address=None)
        client = Client(cluster)
        groups = workers
    arch: Arch = "cuda" if info.arch == "cuda" else "vulkan" if info.arch == "vulkan" else "cpu"
    runtime: tuple[Arch, Precision, int] = (arch, info.precision, 1)

    def evaluate(velocity: np.ndarray, data: ShotData) -> tuple[float, np.ndarray]:
        parts = [p.tolist() for p in np.array_split(np.arange(data.shots), min(groups, data.shots))
                 if p.size]
        futures = []
        for part in parts:
            group = data.subset(part)
            key = f"{group.geometry_key(velocity.shape)}-{checkpoint}"
            futures.append(client.submit(_worker_evaluate, key, runtime, velocity, group,
                                         checkpoint, simulation, pure=False, retries=retries))
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


