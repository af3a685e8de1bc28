"""Kernels of a linear time-invariant system ``x[t+1] = A x[t] + B u[t]``."""

import taichi as ti


@ti.kernel
def linear_step(x: ti.template(), a: ti.template(), b: ti.template(), u: ti.template(),
                src: ti.i32, dst: ti.i32, step: ti.i32):
    """``x[dst] = A x[src] + B u[step]`` (a dense matrix-vector product per row)."""
    for i in range(x.shape[1]):
        acc = ti.cast(0.0, x.dtype)
        for j in range(x.shape[1]):
            acc += a[i, j] * x[src, j]
        for k in range(u.shape[1]):
            acc += b[i, k] * u[step, k]
        x[dst, i] = acc


@ti.kernel
def linear_record(x: ti.template(), y: ti.template(), slot: ti.i32, t: ti.i32):
    """``y[t] = x[slot]`` (the whole state is the output)."""
    for i in range(x.shape[1]):
        y[t, i] = x[slot, i]
