"""Optimisation: one resumable driver (L-BFGS-B or Adam) for FWI, spring design and the chain demo.

- :func:`minimize` runs the loop and records a :class:`History` (JSON + progress lines).
- :class:`EvaluationStore` keeps every evaluation keyed by its input, on disk or in
  memory; a deterministic optimiser restarted from the same start replays the stored
  ones, so a killed run resumes with the uninterrupted result.
- :class:`LBFGSB` and :class:`Adam` are the methods.
"""

from diffsim.optim.driver import History as History
from diffsim.optim.driver import MinimizeResult as MinimizeResult
from diffsim.optim.driver import minimize as minimize
from diffsim.optim.methods import LBFGSB as LBFGSB
from diffsim.optim.methods import Adam as Adam
from diffsim.optim.methods import AdamState as AdamState
from diffsim.optim.methods import adam_step as adam_step
from diffsim.optim.methods import stop_reason as stop_reason
from diffsim.optim.store import EvaluationStore as EvaluationStore

__all__ = ["LBFGSB", "Adam", "AdamState", "EvaluationStore", "History", "MinimizeResult",
           "adam_step", "minimize", "stop_reason"]
