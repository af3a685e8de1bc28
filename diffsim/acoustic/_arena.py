"""The process-wide arenas of the array engine: one growable Taichi vector field per precision."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

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
    fit, the arena grows (to a power of two, at least double; in quarter-octave steps
    above 1 GiB), the regions are copied
    over at the same offsets, and the kernels compile once more for the new field.

    Args:
        precision: ``"f32"`` or ``"f64"``.
        lanes: cells per vector element.
    """

    #: Smallest arena, in vector elements (64 MiB: 64-byte vectors in both precisions).
    MIN_ELEMENTS = 1 << 20
    #: Above this many vector elements (1 GiB) the arena grows in quarter-octave steps.
    FINE_ELEMENTS = 1 << 24

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

    def _capacity(self, need: int) -> int:
        """The size to grow to: doubling, or quarter-octave steps for large arenas.

        Up to :attr:`FINE_ELEMENTS` the arena doubles (powers of two: few distinct sizes,
        so the kernels' compiled forms are reused across problems). Beyond, it takes the
        smallest of ``2^k x (1, 1.25, 1.5, 1.75)`` that holds ``need``, so at most a fifth
        of a large arena is unused (every page of a field counts in resident memory).
        """
        if need > self.FINE_ELEMENTS:
            octave = 1 << (need.bit_length() - 1)
            return next(c for c in (octave, octave * 5 // 4, octave * 3 // 2, octave * 7 // 4,
                                    2 * octave) if c >= need)
        capacity = max(self.MIN_ELEMENTS, 2 * self.capacity)
        while capacity < need:
            capacity *= 2
        return capacity

    def _grow(self, need: int) -> None:
        capacity = self._capacity(need)
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




class ArenaArrays:
    """Named arrays of one stepper inside the process arenas, and their layout vector.

    The host class sets ``_arena`` and ``_pools`` (:func:`_arena`), ``_kernels`` (a dict
    with the ``read``, ``write``, ``fill`` and ``copy`` kernels of
    :func:`~diffsim.kernels.acoustic.arena_kernels`), ``lanes``, ``_real``, empty
    ``_offset`` and ``_shapes`` dicts, ``_pool_region = None`` and ``_pool_bases = []``,
    and lists its kernels' arrays in :meth:`_layout_arrays`. Checkpoint pools are named
    ``pool_<array>`` with shape ``(slots, levels, *one level of the array)``.
    """

    _arena: _Arena
    _pools: _Arena
    _kernels: dict[str, Any]
    _offset: dict[str, int]
    _shapes: dict[str, tuple[int, ...]]
    _pool_region: int | None
    _pool_bases: list[int]
    lanes: int
    _real: Any

    def _layout_arrays(self) -> tuple[tuple[str, int], ...]:
        """``(name, axes)`` of every array the kernels address, in layout order."""
        raise NotImplementedError

    def _set_layout(self) -> None:
        """The layout vector of the kernels: offset and extents of every arena array.

        Arrays this stepper does not hold get offset 0 and unit extents.
        """
        layout = []
        for name, axes in self._layout_arrays():
            shape = self._shapes.get(name, (1,) * axes)
            assert len(shape) == axes, (name, shape, axes)
            layout += [self._offset.get(name, 0), *shape]
        self._layout = np.array(layout, dtype=np.int32)

    def _place(self, arena: _Arena, shapes: dict[str, tuple[int, ...]]) -> int:
        """Take one region of ``arena`` for ``shapes`` (in order); return its start."""
        sizes = {name: int(np.prod(shape)) for name, shape in shapes.items()}
        at = base = arena.allocate(sum(sizes.values()))
        for name, size in sizes.items():
            self._offset[name] = at
            at += size
        self._shapes.update(shapes)
        return base

    def _place_pools(self, shapes: dict[str, tuple[int, ...]]) -> None:
        """Replace the checkpoint region by one for ``shapes`` (names ``pool_*``)."""
        if self._pool_region is not None:
            self._pools.release(self._pool_region)
            self._pool_bases.remove(self._pool_region)
        self._pool_region = self._place(self._pools, shapes)
        self._pool_bases.append(self._pool_region)
        self._set_layout()

    def _pool_field(self) -> object:
        """The checkpoint arena (the main arena stands in before any checkpoint exists)."""
        return self._pools.field if self._pool_region is not None else self._arena.field

    @staticmethod
    def _release_pools(pools: _Arena, bases: list[int]) -> None:
        for base in bases:
            pools.release(base)

    def _span(self, name: str, level: int | None) -> tuple[int, tuple[int, ...]]:
        shape = self._shapes[name]
        if level is None:
            return self._offset[name], shape
        per = int(np.prod(shape[1:]))
        return self._offset[name] + level * per, shape[1:]

    def _read(self, name: str, level: int | None = None, out: np.ndarray | None = None
              ) -> np.ndarray:
        """Array ``name`` (or one level of it) as NumPy ``[*shape, lanes]``."""
        offset, shape = self._span(name, level)
        if out is None:
            out = np.empty((*shape, self.lanes), dtype=self._real)
        self._kernels["read"](self._arena.field, offset, out.reshape(-1, self.lanes))
        return out

    def _write(self, name: str, value: np.ndarray, level: int | None = None) -> None:
        offset, shape = self._span(name, level)
        arr = np.ascontiguousarray(value, dtype=self._real).reshape(-1, self.lanes)
        if arr.shape[0] != int(np.prod(shape)):
            raise ValueError(f"internal: {name} expects {shape}, got {np.shape(value)}")
        self._kernels["write"](self._arena.field, offset, arr)

    def _fill(self, *names: str) -> None:
        for name in names:
            self._kernels["fill"](self._arena.field, self._offset[name],
                                  int(np.prod(self._shapes[name])))

    def _launch_range(self, start: int, stop: int, marks: np.ndarray) -> None:
        """Forward steps ``start … stop-1`` in one launch (the host defines it).

        ``x[t]`` goes to checkpoint slot ``marks[t - start]`` (``-1``: none) when
        checkpoints exist.
        """
        raise NotImplementedError

    def advance_range(self, start: int, stop: int, saves: Mapping[int, int]) -> None:
        """Steps ``start … stop-1`` in one launch, storing ``x[t]`` in slot ``saves[t]``."""
        marks = np.full(stop - start + 1, -1, dtype=np.int32)
        for t, slot in saves.items():
            marks[t - start] = slot
        self._launch_range(start, stop, marks)

    norms: np.ndarray
    _no_saves: np.ndarray
    #: Entries of :attr:`norms` per reversed step, summed (one per shot and band).
    _norm_parts: int = 1

    def _launch_reverse(self, top: int, count: int, slots: np.ndarray) -> None:
        """Reverse steps ``top, top-1, …`` (``count`` of them) in one launch (the host defines it).

        ``x[t]`` comes from checkpoint ``slots[i]`` first (``-1``: live); the squared
        costate norms go into :attr:`norms`, :attr:`_norm_parts` entries a step.
        """
        raise NotImplementedError

    def reverse(self, step: int, slot: int | None, *, measure: bool) -> float:
        """Reverse step ``step`` (the receivers at ``step + 1`` included)."""
        return self.reverse_range([step], [slot], measure=measure)[0]

    def reverse_range(self, steps: Sequence[int], slots: Sequence[int | None], *,
                      measure: bool) -> list[float]:
        """Reverse ``steps`` (descending) in one launch; their costate norms."""
        marks = np.array([-1 if s is None else s for s in slots], dtype=np.int32)
        n, per = len(steps), self._norm_parts
        if self.norms.size < n * per:
            self.norms = np.zeros(n * per, dtype=np.float64)
        self.norms[:n * per] = 0.0
        self._launch_reverse(steps[0], n, marks)
        if not measure:
            return [math.nan] * n
        sq = self.norms[:n * per].reshape(n, per).sum(axis=1)
        return [math.sqrt(v) for v in sq]

    def _copy_level(self, name: str, level: int, slot: int, j: int, save: bool) -> None:
        """Copy level ``level`` of ``name`` to or from level ``j`` of checkpoint ``slot``."""
        per = int(np.prod(self._shapes[name][1:]))
        pool = f"pool_{name}"
        live = self._offset[name] + level * per
        stored = self._offset[pool] + (slot * self._shapes[pool][1] + j) * per
        copy = self._kernels["copy"]
        if save:
            copy(self._arena.field, live, self._pools.field, stored, per)
        else:
            copy(self._pools.field, stored, self._arena.field, live, per)
