"""See the computation: gradient health, finite-difference V-curves, checkpoint pictures.

* :func:`diagnose` (also ``diffsim.diagnose`` and ``diffsim diagnose SCENARIO``): all of
  the below for one simulation and loss, in one self-contained HTML report.
* :func:`precision_advice`: the problem in float32 and float64 (fresh processes),
  compared over the horizon, with a recommendation.
* ``Simulation.graph()`` (:class:`StepGraph`): the step-level computational graph.

* :func:`gradient_health`: a verdict (``stable``, ``vanishing``, ``exploding``) from the
  costate trace ``‖λ[t]‖`` the tape records, with the step range and what to try.
* :func:`fd_vcurve`: finite differences over a sweep of steps: truncation, round-off,
  and kinks (branch switches) closer than the step.
* :func:`plot_schedule` (also ``Schedule.plot``) and :func:`tradeoff` (also
  ``diffsim.checkpoint.tradeoff``): a schedule's actions, and forward steps against
  checkpoint memory for every schedule, with measured runs overlaid.
"""

from diffsim.diagnostics.graph import (
    StepGraph as StepGraph,
)
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
from diffsim.diagnostics.precision import (
    PrecisionAdvice as PrecisionAdvice,
)
from diffsim.diagnostics.precision import (
    precision_advice as precision_advice,
)
from diffsim.diagnostics.report import (
    Diagnosis as Diagnosis,
)
from diffsim.diagnostics.report import (
    diagnose as diagnose,
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

__all__ = ["Diagnosis", "GradientHealth", "PrecisionAdvice", "StepGraph", "Tradeoff", "VCurve",
           "diagnose", "fd_vcurve", "gradient_health", "plot_schedule", "precision_advice",
           "tradeoff"]
