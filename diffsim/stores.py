"""Checkpoint stores: where a :class:`~diffsim.Tape` keeps the states its schedule saves.

The tape owns its store; a stepper never holds one. A stepper declares a complete state
(:meth:`Stepper.state_spec`) and can export it to, and import it from, plain arrays
(:meth:`Stepper.export_state`, :meth:`Stepper.import_state`). A store either keeps those
arrays itself (:class:`HostStore`: NumPy arrays in host RAM, any stepper, no stepper
code of its own), or addresses the stepper's device pool, which its fused kernels read
and write in place during runs of steps (:class:`DeviceStore`, the default and the
fastest). Further tiers (disk, a mix of tiers) are new stores, not stepper changes.

Example::

    tape = Tape(stepper, checkpoint=Binomial(slots=64), store=HostStore())
"""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from diffsim._tape import Stepper

__all__ = ["CheckpointStore", "DeviceStore", "HostStore"]


class CheckpointStore(abc.ABC):
    """Slots that each hold one complete state ``x[t]`` of one stepper.

    Attributes:
        name: a short name for reports (``"device"``, ``"host"``).
        in_place: whether the stepper's kernels read and write the slots themselves (the
            tape then hands slot numbers to ``advance_range``/``reverse_range``); else
            the tape moves states through :meth:`save` and :meth:`load` around the runs.
    """

    name: str = "store"
    in_place: bool = False

    @abc.abstractmethod
    def bind(self, stepper: Stepper, slots: int) -> None:
        """Make room for ``slots`` states of ``stepper`` (a tape calls this once)."""

    @abc.abstractmethod
    def save(self, step: int, slot: int) -> None:
        """Copy the live ``x[step]`` into ``slot``."""

    @abc.abstractmethod
    def load(self, step: int, slot: int) -> None:
        """Make ``x[step]``, held in ``slot``, the live state."""

    @property
    def nbytes(self) -> int:
        """Bytes this store holds for states (0 where the stepper holds them)."""
        return 0


class DeviceStore(CheckpointStore):
    """The stepper's own device pool (Taichi fields or an arena region), addressed by slot.

    The fused kernels read a checkpoint in place during a reverse run and write the
    checkpoints of a forward run inside the launch, so nothing is copied twice.
    """

    name = "device"
    in_place = True

    def __init__(self) -> None:
        self._stepper: Stepper | None = None

    def bind(self, stepper: Stepper, slots: int) -> None:
        """Have the stepper make room for ``slots`` states on its device."""
        self._stepper = stepper
        stepper.allocate_checkpoints(slots)

    def _bound(self) -> Stepper:
        if self._stepper is None:
            raise RuntimeError("the store is not bound to a stepper: a Tape binds it")
        return self._stepper

    def save(self, step: int, slot: int) -> None:
        """The stepper's own copy into its pool."""
        self._bound().save(step, slot)

    def load(self, step: int, slot: int) -> None:
        """The stepper's own copy out of its pool."""
        self._bound().restore(step, slot)


class HostStore(CheckpointStore):
    """States as NumPy arrays in host RAM, through the stepper's export and import.

    Slower than :class:`DeviceStore` (each save and load copies between device and host),
    but it works for any stepper that declares its state and keeps device memory for the
    live state only.
    """

    name = "host"
    in_place = False

    def __init__(self) -> None:
        self._stepper: Stepper | None = None
        self._slots: list[dict[str, np.ndarray]] = []

    def bind(self, stepper: Stepper, slots: int) -> None:
        """Allocate ``slots`` host copies of the stepper's state."""
        spec = stepper.state_spec()
        self._stepper = stepper
        stepper.allocate_checkpoints(0)  # scratch for reverses from live buffers only
        self._slots = [{name: np.empty(shape, dtype=dtype) for name, (shape, dtype) in spec.items()}
                       for _ in range(slots)]

    def _bound(self) -> Stepper:
        if self._stepper is None:
            raise RuntimeError("the store is not bound to a stepper: a Tape binds it")
        return self._stepper

    def save(self, step: int, slot: int) -> None:
        """Export the live state into the arrays of ``slot``."""
        self._bound().export_state(step, self._slots[slot])

    def load(self, step: int, slot: int) -> None:
        """Import the arrays of ``slot`` as the live state."""
        self._bound().import_state(step, self._slots[slot])

    @property
    def nbytes(self) -> int:
        """Bytes of every slot's arrays."""
        return sum(a.nbytes for s in self._slots for a in s.values())
