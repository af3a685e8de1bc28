"""See the computation: gradient health, finite-difference V-curves, checkpoint pictures.

* :func:`gradient_health`: a verdict (``stable``, ``vanishing``, ``exploding``) from the
  costate trace ``‖λ[t]‖`` the tape records, with the step range and what to try.
* :func:`fd_vcurve`: finite differences over a sweep of steps: truncation, round-off,
  and kinks (branch switches) closer than the step.
* :func:`plot_schedule` (also ``Schedule.plot``) and :func:`tradeoff` (also
  ``diffsim.checkpoint.tradeoff``): a schedule's actions, and forward steps against
  checkpoint memory for every schedule, with measured runs overlaid.
"""

from diffsim.diagnostics.health import (
    GradientHealth as GradientHealth,
)
from diffsim.diagnostics.health import (
    VCurve as VCurve,
)
from diffsim.diagnostics.health import (
    fd_vcurve as fd_vcurve,
)
from diffsim.diagnostics.health import (
    gradient_health as gradient_health,
)
from diffsim.diagnostics.schedules import (
    Tradeoff as Tradeoff,
)
from diffsim.diagnostics.schedules import (
    plot_schedule as plot_schedule,
)
from diffsim.diagnostics.schedules import (
    tradeoff as tradeoff,
)

__all__ = ["GradientHealth", "Tradeoff", "VCurve", "fd_vcurve", "gradient_health", "plot_schedule",
           "tradeoff"]
