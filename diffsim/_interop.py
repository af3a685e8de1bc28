"""What the PyTorch and JAX wrappers share: simulations kept between calls, by geometry."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from diffsim._simulation import Simulation

__all__ = ["KEPT", "MAX_KEPT", "geometry_key", "kept", "signature", "spring_defaults",
           "springs_key"]

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


def signature(simulation: Simulation, inputs: Sequence[str] | None,
              outputs: Sequence[str] | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The input and output names of a wrapped simulation, checked against it.

    ``inputs`` defaults to the simulation's ``default_wrt``, ``outputs`` to every output.

    Raises:
        ValueError: a name the simulation does not have, or no name at all.
    """
    names = tuple(inputs) if inputs is not None else tuple(simulation.default_wrt)
    if not names or set(names) - set(simulation.parameter_names):
        raise ValueError(f"inputs={list(names)}: choose from {list(simulation.parameter_names)}")
    shapes = simulation.output_shapes()
    outs = tuple(outputs) if outputs is not None else tuple(shapes)
    if not outs or set(outs) - set(shapes):
        raise ValueError(f"outputs={list(outs)}: choose from {list(shapes)}")
    return names, outs


def springs_key(system: Any, steps: int, dt: float, backend: str) -> str:
    """The kept-simulation key of a spring system's rollout (its topology, not its values)."""
    return geometry_key("springs", system.springs, system.positions, system.fixed,
                        system.actuators, np.asarray(system.gravity), system.ground,
                        system.friction, steps, dt, backend)


def spring_defaults(system: Any, steps: int, given: Sequence[str]) -> dict[str, np.ndarray]:
    """The system's own values (zero velocities and actuation) of the parameters not ``given``.

    A kept simulation may hold an earlier call's values; these reset what a call leaves out.
    """
    values: dict[str, np.ndarray] = {
        name: np.asarray(getattr(system, name))
        for name in ("stiffness", "rest_length", "damping", "mass", "positions")}
    values["velocities"] = np.zeros_like(system.positions)
    if system.channels > 0:
        values["actuation"] = np.zeros((steps, system.channels))
    return {name: value for name, value in values.items() if name not in given}
