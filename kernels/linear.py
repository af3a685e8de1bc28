"""Kernels of a linear time-invariant system ``x[t+1] = A x[t] + B u[t]``, and its adjoint."""

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
def linear_adjoint(x: ti.template(), a: ti.template(), b: ti.template(), u: ti.template(),
                   src: ti.i32, dst: ti.i32, step: ti.i32):
    """Reverse of :func:`linear_step` in gather form (no atomics: the same bits every run).

    With ``g = λ[t+1]`` in ``x.grad[dst]``: ``λ[t] = Aᵀ g`` into ``x.grad[src]``,
    ``dL/dA += g x[t]ᵀ``, ``dL/dB += g u[t]ᵀ``, ``dL/du[t] += Bᵀ g``.
    """
    n, m = x.shape[1], u.shape[1]
    for j in range(n):
        acc = ti.cast(0.0, x.dtype)
        for i in range(n):
            acc += a[i, j] * x.grad[dst, i]
        x.grad[src, j] = acc
    for i, j in ti.ndrange(n, n):
        a.grad[i, j] += x.grad[dst, i] * x[src, j]
    for i, k in ti.ndrange(n, m):
        b.grad[i, k] += x.grad[dst, i] * u[step, k]
    for k in range(m):
        acc = ti.cast(0.0, x.dtype)
        for i in range(n):
            acc += b[i, k] * x.grad[dst, i]
        u.grad[step, k] += acc


@ti.kernel
def linear_record(x: ti.template(), y: ti.template(), slot: ti.i32, t: ti.i32):
    """``y[t] = x[slot]`` (the whole state is the output)."""
    for i in range(x.shape[1]):
        y[t, i] = x[slot, i]
