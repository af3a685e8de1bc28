"""Small checks used at the public boundary: the message names the value and the fix."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["as_array", "check_positions"]


def as_array(name: str, value: ArrayLike, shape: tuple[int, ...], *, positive: bool = False,
             minimum: float | None = None, strict: bool = False, keep_scalar: bool = False,
             what: str = "") -> np.ndarray:
    """``value`` as a float64 array of ``shape`` (or a scalar), finite, optionally bounded.

    Args:
        name: how messages name the value.
        value: a number or an array of numbers.
        shape: the expected shape.
        positive: every value > 0 (shorthand for ``minimum=0, strict=True``).
        minimum: every value >= ``minimum`` (> with ``strict``).
        strict: the bound is strict.
        keep_scalar: return a scalar as a 0-d array instead of filling ``shape`` with it.
        what: appended to the shape message, e.g. ``" (one per spring)"``.

    Raises:
        TypeError: not numbers.
        ValueError: wrong shape, NaN/Inf, or a value out of bounds (with its index).
    """
    if positive:
        minimum, strict = 0.0, True
    try:
        arr = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number or an array of numbers, got {value!r}") from None
    if arr.shape not in ((), shape):
        expected = f"a scalar or {shape}{what}" if keep_scalar else f"{shape}{what} (or a scalar)"
        raise ValueError(f"{name} has shape {arr.shape}; expected {expected}")
    bad = ~np.isfinite(arr)
    if np.any(bad):
        where = np.argwhere(bad)[0].tolist() if arr.ndim else []
        raise ValueError(f"{name} contains NaN or Inf (first at index {where}); every value "
                         "must be finite")
    if minimum is not None:
        low = arr <= minimum if strict else arr < minimum
        if np.any(low):
            idx = int(np.argmax(low.reshape(-1)))
            raise ValueError(f"{name} must be {'>' if strict else '>='} {minimum:g} everywhere; "
                             f"value {float(arr.reshape(-1)[idx])!r} at index {idx}")
    if arr.ndim == 0 and not keep_scalar:
        arr = np.full(shape, float(arr))
    return arr


def check_positions(name: str, value: ArrayLike) -> np.ndarray:
    """``value`` as float64 ``[n, d]`` points (n >= 1, d = 2 or 3), every coordinate finite."""
    try:
        x = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be an array of numbers [n, d]") from None
    if x.ndim != 2 or x.shape[1] not in (2, 3) or x.shape[0] < 1:
        raise ValueError(f"{name} must be [n, d] with n >= 1 and d = 2 or 3; got shape {x.shape}")
    bad = ~np.isfinite(x)
    if np.any(bad):
        i = int(np.argwhere(bad)[0][0])
        raise ValueError(f"{name} of particle {i} is {x[i].tolist()}: NaN or Inf; every "
                         "coordinate must be finite")
    return x
