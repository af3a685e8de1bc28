"""Stiffness identification on a nonlinear oscillator chain (the foundation's demo problem)."""

from __future__ import annotations

import pathlib
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from diffsim.chain import OscillatorChain
from diffsim.io import RunOptions
from diffsim.scenarios._base import Scenario

__all__ = ["ChainScenario", "synthesize"]


@dataclass(frozen=True)
class ChainScenario(Scenario):
    """A driven FPU-beta chain whose spring stiffnesses are to be recovered from data.

    Attributes:
        masses: number of masses ``N``.
        steps: time steps.
        dt: time step in s.
        mass: every mass, kg.
        stiffness_mean: mean true stiffness in N/m (the truth varies by ±30 % per spring).
        beta: cubic coefficient in 1/m^2, every spring.
        drive_amplitude: amplitude of the force on mass 0, N.
        drive_frequency: its frequency, Hz.
        observed_every: every this many masses is observed (mass 0 and the last always).
        noise: standard deviation of Gaussian noise added to the observed positions, m.
        seed: random seed for the true stiffness and the noise.
    """

    masses: int = 16
    steps: int = 400
    dt: float = 0.01
    mass: float = 1.0
    stiffness_mean: float = 100.0
    beta: float = 50.0
    drive_amplitude: float = 5.0
    drive_frequency: float = 1.0
    observed_every: int = 3
    noise: float = 0.0
    seed: int = 0

    kind = "chain"

    def check(self) -> None:
        """Value ranges."""
        for name in ("masses", "steps"):
            if getattr(self, name) < 2:
                raise ValueError(f"{name}={getattr(self, name)} must be at least 2")
        for name in ("dt", "mass", "stiffness_mean"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}={getattr(self, name)} must be positive")
        if self.observed_every < 1:
            raise ValueError(f"observed_every={self.observed_every} must be at least 1")

    def smoke(self) -> ChainScenario:
        """Five masses, 40 steps."""
        return self.with_(masses=5, steps=40)

    def run(self, options: RunOptions) -> dict[str, object]:
        """Stiffness identification with L-BFGS-B (see ``scenarios._chain_job.run_chain_demo``)."""
        from diffsim.checkpoint import parse_schedule
        from diffsim.scenarios._chain_job import run_chain_demo

        iterations = options.iterations if options.iterations is not None else 30
        return run_chain_demo(self, checkpoint=parse_schedule(options.checkpoint or "binomial:8"),
                              iterations=iterations, out=pathlib.Path(options.out),
                              echo=options.echo)

    def diagnosis(self, data: object = None) -> tuple[Any, Any, tuple[str, ...]]:
        """The chain at the starting stiffness, the misfit to the observed positions."""
        from diffsim.chain import Simulation
        from diffsim.losses import L2

        sim = Simulation(stiffness=self.initial_stiffness(), mass=self.mass, beta=self.beta,
                         forcing=self.forcing(), dt=self.dt, observed=self.observed_indices())
        observed = self.synthesize(sim.chain)
        return sim, L2(observed, output="positions"), ("stiffness",)

    def true_stiffness(self) -> np.ndarray:
        """The true stiffness, ``[N + 1]`` in N/m."""
        rng = np.random.default_rng(self.seed)
        return self.stiffness_mean * rng.uniform(0.7, 1.3, self.masses + 1)

    def initial_stiffness(self) -> np.ndarray:
        """The starting guess: the mean stiffness everywhere, ``[N + 1]`` in N/m."""
        return np.full(self.masses + 1, self.stiffness_mean)

    def forcing(self) -> np.ndarray:
        """Sinusoidal drive on mass 0, ``[steps, N]`` in N."""
        t = self.dt * np.arange(self.steps)
        f = np.zeros((self.steps, self.masses))
        f[:, 0] = self.drive_amplitude * np.sin(2 * np.pi * self.drive_frequency * t)
        return f

    def observed_indices(self) -> list[int]:
        """Observed masses."""
        idx = set(range(0, self.masses, self.observed_every)) | {self.masses - 1}
        return sorted(idx)

    def build(self, stiffness: np.ndarray | None = None, *,
              adjoint: Literal["autodiff", "hand"] = "autodiff") -> OscillatorChain:
        """The stepper, with the given stiffness (the initial guess by default)."""
        return OscillatorChain(
            stiffness=self.initial_stiffness() if stiffness is None else stiffness,
            mass=self.mass,
            beta=self.beta,
            forcing=self.forcing(),
            dt=self.dt,
            observed=self.observed_indices(),
            adjoint=adjoint,
        )

    def synthesize(self, chain: OscillatorChain) -> np.ndarray:
        """Observed positions from the true stiffness (plus noise), ``[steps + 1, R]`` in m.

        Runs ``chain`` with the true stiffness and then restores the stiffness it had.
        """
        from diffsim import rollout

        before = chain.parameters()["stiffness"]
        chain.set_param("stiffness", self.true_stiffness())
        observed = rollout(chain)["positions"]
        chain.set_param("stiffness", before)
        rng = np.random.default_rng(self.seed + 1)
        return observed + self.noise * rng.normal(size=observed.shape)


def synthesize(scenario: ChainScenario, chain: OscillatorChain) -> np.ndarray:
    """Observed positions (see :meth:`ChainScenario.synthesize`)."""
    return scenario.synthesize(chain)
