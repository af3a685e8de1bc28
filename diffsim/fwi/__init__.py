"""Full-waveform inversion: acquisition and data, shot evaluators, a resumable L-BFGS-B driver.

The driver minimises the L2 waveform misfit over the velocity model, stage by stage from
low to high frequency (observed data and wavelet low-passed per stage). The optimiser
works on a scaled variable ``δ`` with ``v = clip(v_start + P δ, vmin, vmax)``, where ``P``
is the preconditioner (a depth weight, optionally followed by Gaussian smoothing); its
gradient ``Pᵀ (dL/dv)`` is exact, so the line search sees a consistent function.

Every evaluation (``δ``, loss, gradient) is stored atomically in the output folder. A
resumed run replays SciPy's deterministic L-BFGS-B from the start and answers the
evaluations it has already done from that store, so it reproduces the uninterrupted run
bit for bit and only recomputes the evaluation that was cut off.

Also here: :class:`JointInversion` (velocity and density together, per-parameter scaling
and bounds; :mod:`diffsim.fwi.joint`) and reverse-time migration, least-squares RTM and
image processing (:mod:`diffsim.fwi.imaging`).
"""

from diffsim.fwi.data import ShotData as ShotData
from diffsim.fwi.data import lowpass as lowpass
from diffsim.fwi.data import surface_acquisition as surface_acquisition
from diffsim.fwi.driver import Inversion as Inversion
from diffsim.fwi.driver import InversionResult as InversionResult
from diffsim.fwi.driver import Stage as Stage
from diffsim.fwi.evaluators import SerialShots as SerialShots
from diffsim.fwi.evaluators import SimulationFactory as SimulationFactory
from diffsim.fwi.evaluators import acoustic_simulation as acoustic_simulation
from diffsim.fwi.evaluators import dask_evaluator as dask_evaluator
from diffsim.fwi.evaluators import elastic_simulation as elastic_simulation
from diffsim.fwi.evaluators import illumination as illumination
from diffsim.fwi.evaluators import serial_evaluator as serial_evaluator
from diffsim.fwi.imaging import BornShots as BornShots
from diffsim.fwi.imaging import LeastSquaresMigration as LeastSquaresMigration
from diffsim.fwi.joint import JointInversion as JointInversion
from diffsim.fwi.joint import Parameter as Parameter

__all__ = ["BornShots", "Inversion", "InversionResult", "JointInversion", "LeastSquaresMigration",
           "Parameter", "SerialShots", "ShotData", "SimulationFactory", "Stage",
           "acoustic_simulation", "dask_evaluator", "elastic_simulation", "illumination",
           "lowpass", "serial_evaluator", "surface_acquisition"]
