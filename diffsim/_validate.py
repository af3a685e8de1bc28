"""Small checks used at the public boundary: the message names the value and the fix."""

from __future__ import annotations

import numpy as np

__all__ = ["as_array"]


def as_array(name: str, value: object, shape: tuple[int, ...], *, positive: bool = False
             ) -> np.ndarray:
    """``value`` as a float64 array of ``shape`` (a scalar fills it), finite, optionally > 0.

    Raises:
        ValueError: wrong shape, NaN/Inf, or a non-positive value where ``positive``.
    """
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        arr = np.full(shape, float(arr))
    if arr.shape != shape:
        raise ValueError(f"{name} has shape {arr.shape}; expected {shape} (or a scalar)")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or Inf; every value must be finite")
    if positive and np.any(arr <= 0):
        raise ValueError(f"{name} must be > 0 everywhere; smallest value is {float(arr.min())!r}")
    return arr
