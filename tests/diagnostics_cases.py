"""Problem factories for the precision advice (module level: they travel to fresh processes)."""

from __future__ import annotations

import numpy as np


def chaotic_chain(steps: int = 3000, n: int = 8, amplitude: float = 0.5):
    """A strongly nonlinear FPU chain released from a random displacement: chaotic."""
    from diffsim import chain
    from diffsim.losses import L2

    q0 = amplitude * np.random.default_rng(0).normal(size=n)
    sim = chain.Simulation(stiffness=1.0, mass=1.0, beta=10.0, forcing=np.zeros((steps, n)),
                           dt=0.05, observed=list(range(n)), q0=q0)
    return sim, L2(np.zeros((steps + 1, n)), output="positions"), ("stiffness",)


def rotation(steps: int = 60):
    """A norm-preserving linear system driven by a control: benign in float32."""
    from diffsim import linear
    from diffsim.losses import L2

    sim = linear.Simulation(a=linear.rotation(4, 1.0), b=np.ones((4, 1)),
                            controls=np.sin(0.1 * np.arange(steps))[:, None], x0=np.ones(4))
    return sim, L2(np.zeros((steps + 1, 4)), output="states"), ("controls",)
