"""The process-wide arenas of the array engine: one growable Taichi vector field per precision."""

from __future__ import annotations

import numpy as np

from diffsim._fields import FieldTree
from diffsim._runtime import np_real
from diffsim.kernels.acoustic import (
    arena_kernels,
)


class _Arena:
    """One growable 1D vector field per process and precision for the array engine.

    Each :class:`AcousticStepper` takes one contiguous region of it for its vector
    arrays (wavefields, PML memory, their adjoints, coefficients). The kernels take the
    field as a template argument and each array's offset and extents as run-time values,
    so they compile once per arena, whatever the problem. When a new stepper does not
    fit, the arena grows (to a power of two, at least double), the regions are copied
    over at the same offsets, and the kernels compile once more for the new field.

    Args:
        precision: ``"f32"`` or ``"f64"``.
        lanes: cells per vector element.
    """

    #: Smallest arena, in vector elements (64 MiB: 64-byte vectors in both precisions).
    MIN_ELEMENTS = 1 << 20

    def __init__(self, precision: str, lanes: int) -> None:
        self.precision, self.lanes = precision, lanes
        self.capacity = 0
        self.field: object = None
        self._tree: FieldTree | None = None
        self._used: dict[int, int] = {}

    def allocate(self, size: int) -> int:
        """Offset of a new region of ``size`` vector elements (growing if needed)."""
        start = self._gap(size)
        if start is None:
            end = max((s + n for s, n in self._used.items()), default=0)
            self._grow(end + size)
            start = self._gap(size)
            assert start is not None
        self._used[start] = size
        return start

    def release(self, start: int) -> None:
        """Give region ``start`` back (a second release does nothing)."""
        self._used.pop(start, None)

    def _gap(self, size: int) -> int | None:
        at = 0
        for s in sorted(self._used):
            if s - at >= size:
                return at
            at = s + self._used[s]
        return at if self.capacity - at >= size else None

    def _grow(self, need: int) -> None:
        capacity = max(self.MIN_ELEMENTS, 2 * self.capacity)
        while capacity < need:
            capacity *= 2
        tree = FieldTree()
        field = tree.field((capacity,), vector=self.lanes)
        tree.finalize()
        if self.field is not None:
            assert self._tree is not None   # set together with the field
            kernels = arena_kernels(2, self.precision, self.lanes)
            real = np_real()
            for start, size in self._used.items():
                buf = np.empty((size, self.lanes), dtype=real)
                kernels["read"](self.field, start, buf)
                kernels["write"](field, start, buf)
            self._tree.destroy()
        self.field, self._tree, self.capacity = field, tree, capacity


_ARENAS: dict[tuple[str, int, str], _Arena] = {}


def _arena(precision: str, lanes: int, kind: str = "state") -> _Arena:
    """The process's arena for one precision: ``"state"`` or checkpoint ``"pools"``."""
    key = (precision, lanes, kind)
    if key not in _ARENAS:
        _ARENAS[key] = _Arena(precision, lanes)
    return _ARENAS[key]


