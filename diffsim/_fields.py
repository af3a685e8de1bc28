"""Field ownership: every simulation allocates its fields in its own destroyable tree."""

from __future__ import annotations

from typing import Any, TypeAlias

import taichi as ti

from diffsim._runtime import DType, ensure_init, real

__all__ = ["Field", "FieldTree", "field_nbytes"]

#: A Taichi field (``ti.ScalarField`` or ``ti.MatrixField``). Taichi ships no type hints, so
#: to a type checker this is ``Any``; the name says what is meant.
Field: TypeAlias = Any


def field_nbytes(f: Field) -> int:
    """Bytes held by a Taichi field (vector fields count every component)."""
    count = 1
    for extent in f.shape:
        count *= extent
    components = getattr(f, "n", 1) * getattr(f, "m", 1)
    return count * components * _itemsize(f.dtype)


def _itemsize(dtype: DType) -> int:
    return {ti.f64: 8, ti.f32: 4, ti.i32: 4, ti.i64: 8, ti.u8: 1, ti.f16: 2}.get(dtype, 8)


class FieldTree:
    """A ``ti.FieldsBuilder`` tree: declare fields, finalize once, destroy to free memory.

    In Taichi debug mode the tree also gets the adjoint check bits that
    ``Tape(validate=True)`` uses to catch overwritten inputs.
    """

    def __init__(self) -> None:
        ensure_init()
        self._builder = ti.FieldsBuilder()
        self._tree: Any | None = None  # the finalized Taichi SNode tree (a ti.SNodeTree)
        self._destroyed = False
        self._vector_grads: list[Field] = []
        self.nbytes = 0

    def field(
        self,
        shape: tuple[int, ...],
        *,
        vector: int | None = None,
        dtype: DType | None = None,
        needs_grad: bool = False,
    ) -> Field:
        """Declare a dense field.

        Args:
            shape: field shape, every extent >= 1.
            vector: number of components for a vector field; ``None`` for scalars.
            dtype: element type; the runtime precision by default.
            needs_grad: also place its ``.grad`` field.

        Returns:
            The Taichi field (usable after :meth:`finalize`).
        """
        if self._tree is not None:
            raise RuntimeError("FieldTree is finalized: declare every field before finalize()")
        shape = tuple(int(s) for s in shape)
        if not shape or min(shape) < 1:
            raise ValueError(f"field shape {shape} must have at least one axis, each >= 1")
        dtype = real() if dtype is None else dtype
        f = ti.field(dtype) if vector is None else ti.Vector.field(vector, dtype)
        axes = ti.axes(*range(len(shape)))
        self._builder.dense(axes, shape).place(f)
        per = _itemsize(dtype) * (vector or 1)
        size = per
        for extent in shape:
            size *= extent
        self.nbytes += size
        if needs_grad:
            self._builder.dense(axes, shape).place(f.grad)
            self.nbytes += size
            if vector is not None:
                self._vector_grads.append(f.grad)
        return f

    def finalize(self) -> None:
        """Allocate the declared fields."""
        if ensure_init().debug:
            self._builder._allocate_adjoint_checkbit()
        self._tree = self._builder.finalize()
        # Taichi computes the lane stride that dynamic indexing (v[i] with a run-time i)
        # needs for primal vector fields only; do it for their adjoints too.
        for g in self._vector_grads:
            g._calc_dynamic_index_stride()

    def destroy(self) -> None:
        """Free the memory of every field of the tree; the fields become unusable."""
        if self._tree is not None and not self._destroyed:
            self._tree.destroy()
            self._destroyed = True
