"""What the PyTorch and JAX wrappers share: simulations kept between calls, by geometry."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import numpy as np

from diffsim._simulation import Simulation

__all__ = ["KEPT", "MAX_KEPT", "geometry_key", "kept"]

#: Simulations kept between calls, most recently used last.
KEPT: dict[str, Simulation] = {}
#: At most this many are kept; the least recently used is closed first.
MAX_KEPT = 4


def geometry_key(*parts: object) -> str:
    """A digest of what fixes a simulation's compiled shape (arrays by shape and bytes)."""
    h = hashlib.sha1()
    for part in parts:
        if isinstance(part, np.ndarray):
            h.update(str(part.shape).encode())
            h.update(np.ascontiguousarray(part).tobytes())
        else:
            h.update(repr(part).encode())
    return h.hexdigest()


def kept(key: str, build: Callable[[], Simulation]) -> Simulation:
    """The simulation kept under ``key``, built by ``build()`` the first time.

    A call with new parameter values then updates it, so nothing recompiles.
    """
    sim = KEPT.pop(key, None)
    if sim is None:
        sim = build()
        while len(KEPT) >= MAX_KEPT:
            KEPT.pop(next(iter(KEPT))).close()
    KEPT[key] = sim
    return sim
