"""Small mass-spring systems shared by the spring tests (float64, a few particles)."""

from __future__ import annotations

import numpy as np

from diffsim.scenarios.springs import lattice as scenario_lattice
from diffsim.springs import SpringSystem


def lattice(nx: int, ny: int, spacing: float = 0.1, *, dim: int = 2, seed: int = 0,
            lift: float = 0.02, jitter: float = 0.004) -> tuple[np.ndarray, np.ndarray]:
    """Positions ``[nx*ny, dim]`` of a jittered grid and its springs (edges + one diagonal)."""
    pts, springs = scenario_lattice(nx, ny, spacing, origin=(0.0, lift), diagonals=1)
    if dim == 3:
        i, j = np.arange(nx * ny) % nx, np.arange(nx * ny) // nx
        pts = np.column_stack([pts, 0.3 * spacing * ((i + j) % 2)])
    rng = np.random.default_rng(seed)
    return pts + rng.normal(0.0, jitter, pts.shape), springs


def contact_system(dim: int = 2, *, seed: int = 0, fixed: bool = True) -> SpringSystem:
    """A 3x3 lattice just above the ground, with gravity, friction, damping, two actuators
    and (optionally) one pinned particle. Random per-spring and per-particle values."""
    rng = np.random.default_rng(seed)
    pos, springs = lattice(3, 3, dim=dim, seed=seed)
    m = len(springs)
    act = -np.ones(m, dtype=int)
    act[0], act[3], act[5] = 0, 1, 1
    pinned = np.zeros(len(pos), dtype=bool)
    if fixed:
        pinned[-1] = True
    gravity = np.zeros(dim)
    gravity[1] = -9.81
    return SpringSystem(pos, springs, stiffness=rng.uniform(50.0, 100.0, m),
                        rest_length=np.linalg.norm(pos[springs[:, 1]] - pos[springs[:, 0]], axis=1)
                        * rng.uniform(0.9, 1.1, m),
                        damping=rng.uniform(0.01, 0.1, m), mass=rng.uniform(0.05, 0.1, len(pos)),
                        fixed=pinned, gravity=gravity, ground=0.0, friction=0.4, actuators=act)


def contact_inputs(system: SpringSystem, steps: int, *, seed: int = 0
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Initial velocities ``[n, d]`` (downwards, sideways) and an actuation ``[steps, 2]``."""
    rng = np.random.default_rng(seed + 100)
    v0 = rng.normal(0.0, 0.3, system.positions.shape)
    v0[:, 1] -= 0.3
    t = np.arange(steps)[:, None]
    actuation = 0.08 * np.sin(0.2 * t + np.array([[0.0, 1.5]]))
    return v0, actuation
