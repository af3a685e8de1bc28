"""Acoustic waves in 2D and 3D with adjoint-state gradients; Born modelling and migration.

Equation: ``u_tt = c(x)^2 lap(u) + sum_sources s(t) delta(x - x_s)`` (constant density,
the fast default) or, with ``density=``, ``p_tt = rho c^2 div(1/rho grad p) + s``
(:class:`DensityStepper`), leapfrog in time,
central differences of order 2, 4, 6 or 8 in space, absorbing faces (``CPML(width=20)``
by default, or ``Sponge(width=...)``) and optionally a free surface on the top face.
Arrays are ``[z, x]`` or ``[z, y, x]`` (slowest first), SI units: velocity m/s, spacing
m, dt s, positions m from the first grid point, frequencies Hz.

Time convention: wavelet sample ``n`` is the source term at ``t_n = n dt``; trace
sample ``n`` is the wavefield at ``t_n`` (so sample 0 is zero). ``nt`` samples take
``nt - 1`` steps.
"""

from diffsim.acoustic._arena import _arena as _arena
from diffsim.acoustic._setup import FD_COEFFICIENTS as FD_COEFFICIENTS
from diffsim.acoustic._setup import LANES as LANES
from diffsim.acoustic._setup import STAGGERED as STAGGERED
from diffsim.acoustic._setup import dominant_frequency as dominant_frequency
from diffsim.acoustic._setup import max_stable_dt as max_stable_dt
from diffsim.acoustic._setup import ricker as ricker
from diffsim.acoustic.api import PARAMETRISATIONS as PARAMETRISATIONS
from diffsim.acoustic.api import MisfitGradient as MisfitGradient
from diffsim.acoustic.api import Simulation as Simulation
from diffsim.acoustic.api import misfit_gradient as misfit_gradient
from diffsim.acoustic.api import simulate as simulate
from diffsim.acoustic.api import stepper_misfit_gradient as stepper_misfit_gradient
from diffsim.acoustic.boundaries import CPML as CPML
from diffsim.acoustic.boundaries import SPONGE_EDGE as SPONGE_EDGE
from diffsim.acoustic.boundaries import Sponge as Sponge
from diffsim.acoustic.density import DensityStepper as DensityStepper
from diffsim.acoustic.fields import FieldAcousticStepper as FieldAcousticStepper
from diffsim.acoustic.scattering import Born as Born
from diffsim.acoustic.scattering import born as born
from diffsim.acoustic.stepper import ENGINES as ENGINES
from diffsim.acoustic.stepper import AcousticStepper as AcousticStepper

__all__ = [
    "CPML",
    "AcousticStepper",
    "Born",
    "DensityStepper",
    "FieldAcousticStepper",
    "MisfitGradient",
    "Simulation",
    "Sponge",
    "born",
    "dominant_frequency",
    "max_stable_dt",
    "misfit_gradient",
    "ricker",
    "simulate",
    "stepper_misfit_gradient",
]
