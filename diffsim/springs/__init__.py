"""Mass-spring systems: differentiable simulation of particles joined by springs.

Particles (2D or 3D) with mass, springs with stiffness, rest length and damping,
gravity, pinned particles, a ground plane with Coulomb friction, and actuated springs
whose rest length follows a per-step signal. Semi-implicit Euler (see
:mod:`diffsim.kernels.springs` for the equations). Gradients of a loss with respect to
stiffness, rest length, damping, mass, initial positions and velocities and the
actuation signal come from the tape (:class:`diffsim.Tape`) under any checkpoint
schedule; they are the exact gradients of the discrete simulation, contact branches
included (the gradient follows the executed branch).

The second position component is height: the ground is the line (2D) or plane (3D)
``x[:, 1] == ground``. Units: m, s, kg, N/m (stiffness), N s/m (damping), m/s^2.

Example::

    system = SpringSystem(positions, springs, stiffness=100.0, mass=0.1,
                          gravity=(0.0, -9.81), ground=0.0, friction=0.5)
    traj = simulate(system, steps=500, dt=1e-3)          # traj.positions [501, n, 2]
    res = value_and_grad(system, 500, 1e-3, target=goal, wrt=("stiffness", "mass"))
    res.loss, res.grads["stiffness"]                     # float, shaped like stiffness

Results are deterministic: forces and adjoints are gathered per particle (no float
atomics), so the same inputs give bit-identical trajectories and gradients.
"""

from diffsim.losses import CenterOfMass as CenterOfMass
from diffsim.losses import FinalPosition as FinalPosition
from diffsim.losses import Loss as Loss
from diffsim.losses import Tracking as Tracking
from diffsim.springs.api import Simulation as Simulation
from diffsim.springs.api import SpringSimulation as SpringSimulation
from diffsim.springs.api import simulate as simulate
from diffsim.springs.api import value_and_grad as value_and_grad
from diffsim.springs.system import PARAMETERS as PARAMETERS
from diffsim.springs.system import Gradient as Gradient
from diffsim.springs.system import SpringSystem as SpringSystem
from diffsim.springs.system import Trajectory as Trajectory

__all__ = [
    "PARAMETERS",
    "CenterOfMass",
    "FinalPosition",
    "Gradient",
    "Loss",
    "SpringSimulation",
    "Simulation",
    "SpringSystem",
    "Tracking",
    "Trajectory",
    "simulate",
    "value_and_grad",
]
