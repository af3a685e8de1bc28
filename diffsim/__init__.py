"""diffsim: differentiable physics simulation on Taichi.

Import cost only: importing diffsim calls no ``ti.init`` and allocates no field. Call
:func:`init` once to choose the backend and precision, or let the first simulation
initialise with the defaults.

Units are SI everywhere: m, s, m/s, kg, N/m, Hz (see :mod:`diffsim.units`).
"""

import os as _os

_os.environ.setdefault("ENABLE_TAICHI_HEADER_PRINT", "0")  # before anything imports taichi

__version__ = "0.1.0"

from diffsim import checkpoint as checkpoint  # noqa: E402
from diffsim import gradcheck as gradcheck  # noqa: E402
from diffsim import losses as losses  # noqa: E402
from diffsim._runtime import RuntimeInfo as RuntimeInfo  # noqa: E402
from diffsim._runtime import info as info  # noqa: E402
from diffsim._runtime import init as init  # noqa: E402
from diffsim._simulation import Simulation as Simulation  # noqa: E402
from diffsim._tape import DEFAULT_BUDGET as DEFAULT_BUDGET  # noqa: E402
from diffsim._tape import DataAccessError as DataAccessError  # noqa: E402
from diffsim._tape import Stepper as Stepper  # noqa: E402
from diffsim._tape import TaichiStepper as TaichiStepper  # noqa: E402
from diffsim._tape import Tape as Tape  # noqa: E402
from diffsim._tape import TapeReport as TapeReport  # noqa: E402
from diffsim._tape import ValueAndGrad as ValueAndGrad  # noqa: E402
from diffsim._tape import rollout as rollout  # noqa: E402
from diffsim.checkpoint import Binomial as Binomial  # noqa: E402
from diffsim.checkpoint import Budget as Budget  # noqa: E402
from diffsim.checkpoint import StoreAll as StoreAll  # noqa: E402
from diffsim.checkpoint import TwoLevel as TwoLevel  # noqa: E402
from diffsim.checkpoint import Uniform as Uniform  # noqa: E402
from diffsim.diagnostics import diagnose as diagnose  # noqa: E402
