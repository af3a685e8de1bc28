"""Mass-spring design problems: truss stiffness design, parameter identification, a walking robot.

Each scenario is data plus a builder of a :class:`diffsim.spring_design.DesignProblem`;
``run`` hands it to :func:`diffsim.spring_design.run_design`, which optimises with
bounded Adam, resumes from the last finished iteration, and writes ``summary.json``,
``history.json``, ``before.gif``/``after.gif`` (and ``.png`` filmstrips) and ``loss.png``.
"""

from __future__ import annotations

import pathlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from diffsim.io import RunOptions
from diffsim.scenarios._base import Scenario

if TYPE_CHECKING:
    from diffsim.checkpoint import Schedule
    from diffsim.spring_design import DesignProblem
    from diffsim.springs import SpringSystem

__all__ = ["BridgeDesign", "SoftRobotWalk", "SpringIdentification", "lattice"]


def lattice(nx: int, ny: int, spacing: float, *, origin: tuple[float, float] = (0.0, 0.0),
            diagonals: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """A rectangular grid of particles ``[nx*ny, 2]`` (row by row) and its springs ``[m, 2]``.

    Args:
        nx: particles per row.
        ny: rows.
        spacing: grid spacing in m.
        origin: position of particle 0 in m.
        diagonals: 0, 1 (one diagonal per cell) or 2 (both: a braced grid).
    """
    pts = np.array([[origin[0] + i * spacing, origin[1] + j * spacing]
                    for j in range(ny) for i in range(nx)])
    springs = []
    for j in range(ny):
        for i in range(nx):
            a = j * nx + i
            if i + 1 < nx:
                springs.append((a, a + 1))
            if j + 1 < ny:
                springs.append((a, a + nx))
            if i + 1 < nx and j + 1 < ny:
                if diagonals >= 1:
                    springs.append((a, a + nx + 1))
                if diagonals >= 2:
                    springs.append((a + 1, a + nx))
    return pts, np.array(springs)


def _checkpoint(options: RunOptions) -> Schedule | None:
    from diffsim.checkpoint import parse_schedule

    return None if options.checkpoint is None else parse_schedule(options.checkpoint)


def _positive(scenario: Scenario, *names: str) -> None:
    for name in names:
        if not getattr(scenario, name) > 0:
            raise ValueError(f"{name}={getattr(scenario, name)} must be positive")


def _run(scenario: BridgeDesign | SpringIdentification | SoftRobotWalk, options: RunOptions,
         default_iterations: int) -> dict[str, Any]:
    from diffsim.spring_design import run_design

    iterations = options.iterations if options.iterations is not None else default_iterations
    small = options.smoke
    summary = run_design(scenario.problem(), iterations=iterations, out=pathlib.Path(options.out),
                         resume=options.resume, checkpoint=_checkpoint(options), echo=options.echo,
                         frames=16 if small else 90, frame_size=(240, 180) if small else (480, 360))
    summary.pop("design", None)
    return summary


def design_diagnosis(problem: DesignProblem) -> tuple[Any, Any, tuple[str, ...]]:
    """``(simulation, loss, wrt)`` of a design problem at its starting design."""
    from diffsim.springs.api import SpringSimulation

    sim = SpringSimulation(problem.system, problem.steps, problem.dt,
                           velocities=problem.velocities, actuation=problem.actuation)
    sim.update(**problem.apply(problem.x0))
    return sim, problem.loss, tuple(problem.wrt)


@dataclass(frozen=True)
class BridgeDesign(Scenario):
    """Choose per-member stiffness of a loaded truss bridge so its deck settles flat.

    A Pratt-style truss (deck and top chord, verticals, cross-braced panels) is pinned at
    both deck ends and loaded by gravity on heavy deck nodes. Each member's stiffness
    is ``k_min + z (k_max - k_min)`` with ``z`` in [0, 1]; the loss is
    ``0.5 |deck(T) - flat deck|^2`` after a long damped rollout plus a material cost
    ``material_weight * sum(k L) / sum(k_max L)``.

    Attributes:
        panels: number of truss panels.
        span: bridge length in m.
        height: truss height in m.
        deck_mass: mass of each deck node in kg (the load).
        top_mass: mass of each top-chord node in kg.
        k_min, k_max: stiffness bounds in N/m.
        k_start: starting stiffness of every member in N/m.
        damping: dashpot per member in N s/m (lets the bridge settle).
        material_weight: weight of the material cost, in m^2.
        steps: rollout steps; dt: time step in s.
        lr: Adam step in units of ``z``.
    """

    panels: int = 8
    span: float = 2.0
    height: float = 0.3
    deck_mass: float = 1.0
    top_mass: float = 0.2
    k_min: float = 200.0
    k_max: float = 6000.0
    k_start: float = 1500.0
    damping: float = 4.0
    material_weight: float = 2e-4
    steps: int = 1500
    dt: float = 1e-3
    lr: float = 0.05

    kind = "springs"

    def check(self) -> None:
        """Value ranges."""
        if self.panels < 2:
            raise ValueError(f"panels={self.panels} must be at least 2")
        _positive(self, "span", "height", "deck_mass", "top_mass", "k_min", "dt", "lr", "steps")
        if not self.k_min <= self.k_start <= self.k_max:
            raise ValueError(f"k_start={self.k_start} must lie in [k_min, k_max] = "
                             f"[{self.k_min}, {self.k_max}]")
        if self.damping < 0 or self.material_weight < 0:
            raise ValueError("damping and material_weight must be >= 0")

    def smoke(self) -> BridgeDesign:
        """Four panels, 300 steps."""
        return self.with_(panels=4, steps=300)

    def geometry(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Positions ``[n, 2]``, springs ``[m, 2]`` and the deck node indices."""
        p, w = self.panels, self.span / self.panels
        deck = [(i * w, 0.0) for i in range(p + 1)]
        top = [(i * w, self.height) for i in range(1, p)]
        pos = np.array(deck + top)
        top_id = {i: p + i for i in range(1, p)}          # top node above deck node i
        springs = [(i, i + 1) for i in range(p)]                            # deck
        springs += [(top_id[i], top_id[i + 1]) for i in range(1, p - 1)]    # top chord
        springs += [(i, top_id[i]) for i in range(1, p)]                    # verticals
        springs += [(0, top_id[1]), (p, top_id[p - 1])]                     # end posts
        for i in range(1, p - 1):                                           # braced panels
            springs += [(i, top_id[i + 1]), (top_id[i], i + 1)]
        return pos, np.array(springs), np.arange(p + 1)

    def system(self) -> SpringSystem:
        """The truss with every member at ``k_start``."""
        from diffsim.springs import SpringSystem

        pos, springs, deck = self.geometry()
        mass = np.full(len(pos), self.top_mass)
        mass[deck] = self.deck_mass
        fixed = np.zeros(len(pos), dtype=bool)
        fixed[[0, self.panels]] = True
        return SpringSystem(pos, springs, stiffness=np.full(len(springs), self.k_start),
                            damping=self.damping, mass=mass, fixed=fixed, gravity=(0.0, -9.81))

    def problem(self) -> DesignProblem:
        """The design problem (see the class docstring)."""
        from diffsim.spring_design import DesignProblem
        from diffsim.springs import FinalPosition

        system = self.system()
        pos, springs, deck = self.geometry()
        lengths = system.lengths()
        span_k = self.k_max - self.k_min
        cost_scale = self.material_weight / float(np.sum(self.k_max * lengths))
        m = system.n_springs

        def penalty(z: np.ndarray) -> tuple[float, np.ndarray]:
            k = self.k_min + z * span_k
            return cost_scale * float(np.sum(k * lengths)), cost_scale * lengths * span_k

        def metrics(z: np.ndarray) -> dict:
            k = self.k_min + z * span_k
            return {"material": float(np.sum(k * lengths) / np.sum(self.k_max * lengths))}

        z0 = np.full(m, (self.k_start - self.k_min) / span_k)
        return DesignProblem(
            name="bridge", system=system, steps=self.steps, dt=self.dt,
            loss=FinalPosition(pos[deck], particles=deck.tolist()), wrt=("stiffness",),
            x0=z0, lower=np.zeros(m), upper=np.ones(m),
            apply=lambda z: {"stiffness": self.k_min + z * span_k},
            pullback=lambda z, g: g["stiffness"] * span_k,
            lr=self.lr, penalty=penalty, metrics=metrics)

    def diagnosis(self, data: object = None) -> tuple[Any, Any, tuple[str, ...]]:
        """The starting design's simulation and objective (see :meth:`problem`)."""
        return design_diagnosis(self.problem())

    def run(self, options: RunOptions) -> dict[str, object]:
        """Optimise the member stiffness (default 40 iterations)."""
        return _run(self, options, 40)


@dataclass(frozen=True)
class SpringIdentification(Scenario):
    """Recover per-spring stiffness and the damping of a hanging net from a noisy trajectory.

    A ``nx`` by ``ny`` braced net hangs from its pinned top row and is set swinging by
    random initial velocities. The observed trajectory comes from the true stiffness
    (``k0`` times a random factor in [0.7, 1.3] per spring) and damping ``damping_true``,
    plus Gaussian noise. Starting from ``k0`` and ``damping_start``, Adam fits
    ``log(k / k0)`` and ``log(c / damping_start)`` to the tracking loss.

    Attributes:
        nx, ny: net size in particles.
        spacing: grid spacing in m.
        mass: particle mass in kg.
        k0: nominal stiffness in N/m.
        damping_true, damping_start: true and starting damping in N s/m.
        noise: standard deviation of the position noise in m.
        kick: standard deviation of the initial velocities in m/s.
        steps, dt: rollout.
        lr: Adam step in log units.
        seed: random seed (truth, kick and noise).
    """

    nx: int = 5
    ny: int = 4
    spacing: float = 0.1
    mass: float = 0.05
    k0: float = 300.0
    damping_true: float = 0.05
    damping_start: float = 0.15
    noise: float = 1e-4
    kick: float = 0.3
    steps: int = 400
    dt: float = 1e-3
    lr: float = 0.05
    seed: int = 0

    kind = "springs"

    def check(self) -> None:
        """Value ranges."""
        if self.nx < 2 or self.ny < 2:
            raise ValueError(f"nx={self.nx}, ny={self.ny}: the net needs at least 2 x 2 particles")
        _positive(self, "spacing", "mass", "k0", "damping_true", "damping_start", "steps", "dt",
                  "lr")
        if self.noise < 0 or self.kick < 0:
            raise ValueError("noise and kick must be >= 0")

    def smoke(self) -> SpringIdentification:
        """A 3 x 3 net, 100 steps."""
        return self.with_(nx=3, ny=3, steps=100)

    def system(self, stiffness: np.ndarray | float | None = None, damping: float | None = None
               ) -> SpringSystem:
        """The net (stiffness ``k0`` and ``damping_start`` unless given)."""
        from diffsim.springs import SpringSystem

        pos, springs = lattice(self.nx, self.ny, self.spacing, diagonals=2)
        fixed = np.zeros(len(pos), dtype=bool)
        fixed[-self.nx:] = True
        k = self.k0 if stiffness is None else stiffness
        c = self.damping_start if damping is None else damping
        return SpringSystem(pos, springs, stiffness=np.broadcast_to(k, (len(springs),)).copy(),
                            damping=c, mass=self.mass, fixed=fixed, gravity=(0.0, -9.81))

    def truth(self) -> tuple[np.ndarray, float]:
        """The true per-spring stiffness ``[m]`` in N/m and damping in N s/m."""
        m = self.system().n_springs
        rng = np.random.default_rng(self.seed)
        return self.k0 * rng.uniform(0.7, 1.3, m), self.damping_true

    def velocities(self) -> np.ndarray:
        """The initial kick ``[n, 2]`` in m/s."""
        rng = np.random.default_rng(self.seed + 1)
        return self.kick * rng.normal(size=(self.nx * self.ny, 2))

    def observed(self) -> np.ndarray:
        """Noisy observed positions ``[steps + 1, n, 2]`` in m."""
        from diffsim.springs import simulate

        k, c = self.truth()
        traj = simulate(self.system(k, c), self.steps, self.dt, self.velocities())
        rng = np.random.default_rng(self.seed + 2)
        return traj.positions + self.noise * rng.normal(size=traj.positions.shape)

    def problem(self) -> DesignProblem:
        """The identification problem (see the class docstring)."""
        from diffsim.spring_design import DesignProblem
        from diffsim.springs import Tracking

        system = self.system()
        k_true, c_true = self.truth()
        m = system.n_springs
        k0, c0 = self.k0, self.damping_start

        def unpack(x: np.ndarray) -> tuple[np.ndarray, float]:
            return k0 * np.exp(x[:m]), c0 * float(np.exp(x[m]))

        def apply(x: np.ndarray) -> dict:
            k, c = unpack(x)
            return {"stiffness": k, "damping": c}

        def pullback(x: np.ndarray, g: dict) -> np.ndarray:
            k, c = unpack(x)
            return np.concatenate([g["stiffness"] * k, [float(g["damping"]) * c]])

        def metrics(x: np.ndarray) -> dict:
            k, c = unpack(x)
            return {"stiffness_error": float(np.linalg.norm(k - k_true) / np.linalg.norm(k_true)),
                    "damping_error": abs(c - c_true) / c_true, "damping": c}

        bound = np.log(5.0)
        return DesignProblem(
            name="identify", system=system, steps=self.steps, dt=self.dt,
            loss=Tracking(self.observed()), wrt=("stiffness", "damping"),
            x0=np.zeros(m + 1), lower=np.full(m + 1, -bound), upper=np.full(m + 1, bound),
            apply=apply, pullback=pullback, lr=self.lr, velocities=self.velocities(),
            metrics=metrics, extra={"damping_true": c_true})

    def diagnosis(self, data: object = None) -> tuple[Any, Any, tuple[str, ...]]:
        """The starting design's simulation and objective (see :meth:`problem`)."""
        return design_diagnosis(self.problem())

    def run(self, options: RunOptions) -> dict[str, object]:
        """Fit stiffness and damping (default 60 iterations)."""
        return _run(self, options, 60)


@dataclass(frozen=True)
class SoftRobotWalk(Scenario):
    """Learn open-loop sinusoidal actuation that makes a soft lattice robot walk (DiffTaichi style).

    The robot is a braced ``nx`` by ``ny`` lattice standing on rough ground. Its springs
    are grouped into ``channels`` vertical bands; band ``c`` has rest length
    ``L0 (1 + a[t, c])`` with ``a[t, c] = amplitude * tanh(sum_j W_cj sin(2 pi j f t) +
    V_cj cos(2 pi j f t) + b_c)``, ``j = 1 … harmonics``. Adam maximises the distance the
    centre of mass moves right (loss ``-displacement``) over ``W, V, b``.

    Attributes:
        nx, ny: lattice size in particles.
        spacing: grid spacing in m.
        mass: particle mass in kg.
        stiffness: spring stiffness in N/m; damping: dashpots in N s/m.
        friction: ground friction coefficient.
        channels: actuation bands; harmonics: sinusoids per band.
        frequency: base gait frequency f in Hz; amplitude: largest ``|a|``.
        steps, dt: rollout; lr: Adam step; seed: the random starting weights.
    """

    nx: int = 6
    ny: int = 3
    spacing: float = 0.05
    mass: float = 0.02
    stiffness: float = 1500.0
    damping: float = 0.05
    friction: float = 1.0
    channels: int = 4
    harmonics: int = 2
    frequency: float = 3.0
    amplitude: float = 0.25
    steps: int = 1000
    dt: float = 1e-3
    lr: float = 0.1
    seed: int = 0

    kind = "springs"

    def check(self) -> None:
        """Value ranges."""
        if self.nx < 2 or self.ny < 2:
            raise ValueError(f"nx={self.nx}, ny={self.ny}: the robot needs at least 2 x 2 particles")
        _positive(self, "spacing", "mass", "stiffness", "channels", "harmonics", "frequency",
                  "steps", "dt", "lr")
        if not 0 < self.amplitude < 1:
            raise ValueError(f"amplitude={self.amplitude} must lie in (0, 1)")
        if self.damping < 0 or self.friction < 0:
            raise ValueError("damping and friction must be >= 0")

    def smoke(self) -> SoftRobotWalk:
        """A 4 x 2 robot, 200 steps."""
        return self.with_(nx=4, ny=2, steps=200, channels=2)

    def system(self) -> SpringSystem:
        """The robot standing on the ground, springs grouped into bands."""
        from diffsim.springs import SpringSystem

        pos, springs = lattice(self.nx, self.ny, self.spacing, diagonals=2)
        mid = 0.5 * (pos[springs[:, 0], 0] + pos[springs[:, 1], 0])
        width = pos[:, 0].max() + 1e-9
        bands = np.minimum((mid / width * self.channels).astype(int), self.channels - 1)
        return SpringSystem(pos, springs, stiffness=self.stiffness, damping=self.damping,
                            mass=self.mass, gravity=(0.0, -9.81), ground=0.0,
                            friction=self.friction, actuators=bands)

    def basis(self) -> np.ndarray:
        """Sines then cosines of the harmonics at every step, ``[steps, 2 * harmonics]``."""
        t = self.dt * np.arange(self.steps)[:, None]
        j = np.arange(1, self.harmonics + 1)[None, :]
        phase = 2 * np.pi * self.frequency * j * t
        return np.concatenate([np.sin(phase), np.cos(phase)], axis=1)

    def actuation(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``a [steps, channels]`` and ``da/dz`` from the weights ``x``."""
        c, h2 = self.channels, 2 * self.harmonics
        w = x[: c * h2].reshape(c, h2)
        b = x[c * h2:]
        z = self.basis() @ w.T + b[None, :]
        a = self.amplitude * np.tanh(z)
        return a, self.amplitude * (1.0 - np.tanh(z) ** 2)

    def problem(self) -> DesignProblem:
        """The locomotion problem (see the class docstring)."""
        from diffsim.spring_design import DesignProblem
        from diffsim.springs import CenterOfMass

        c, h2 = self.channels, 2 * self.harmonics
        size = c * h2 + c
        rng = np.random.default_rng(self.seed)
        x0 = 0.3 * rng.normal(size=size)
        basis = self.basis()

        def pullback(x: np.ndarray, g: dict) -> np.ndarray:
            _, slope = self.actuation(x)
            gz = g["actuation"] * slope                              # [steps, channels]
            return np.concatenate([(gz.T @ basis).reshape(-1), gz.sum(axis=0)])

        def metrics(x: np.ndarray) -> dict:
            return {"max_actuation": float(np.abs(self.actuation(x)[0]).max())}

        return DesignProblem(
            name="robot", system=self.system(), steps=self.steps, dt=self.dt,
            loss=CenterOfMass((1.0, 0.0)), wrt=("actuation",), x0=x0,
            lower=np.full(size, -3.0), upper=np.full(size, 3.0),
            apply=lambda x: {"actuation": self.actuation(x)[0]}, pullback=pullback, lr=self.lr,
            metrics=metrics)

    def diagnosis(self, data: object = None) -> tuple[Any, Any, tuple[str, ...]]:
        """The starting design's simulation and objective (see :meth:`problem`)."""
        return design_diagnosis(self.problem())

    def run(self, options: RunOptions) -> dict[str, object]:
        """Learn the gait (default 40 iterations); the summary's ``final_loss`` is ``-distance``."""
        from diffsim.io import write_json

        summary = _run(self, options, 40)
        summary["initial_distance"] = -float(summary["initial_loss"])
        summary["final_distance"] = -float(summary["final_loss"])
        write_json(pathlib.Path(options.out) / "summary.json", summary)
        return summary
