"""Kernels of a 1D chain of nonlinear (FPU-beta) oscillators between two walls.

Masses ``i = 0 … N-1`` with displacement ``q`` and velocity ``v``; spring ``j = 0 … N``
joins mass ``j-1`` and mass ``j`` (the walls are masses ``-1`` and ``N``, fixed at 0).
Spring tension ``T_j = k_j (d_j + beta_j d_j^3)`` with extension ``d_j = q_j - q_{j-1}``;
the force on mass ``i`` is ``T_{i+1} - T_i``. Semi-implicit (symplectic) Euler.
"""

import taichi as ti


@ti.func
def _extension(q: ti.template(), s: ti.i32, j: ti.i32):
    n = q.shape[1]
    right = ti.cast(0.0, q.dtype)
    left = ti.cast(0.0, q.dtype)
    if j < n:
        right = q[s, j]
    if j > 0:
        left = q[s, j - 1]
    return right - left


@ti.kernel
def chain_forces(q: ti.template(), k: ti.template(), beta: ti.template(), f: ti.template(),
                 src: ti.i32):
    """``f[i] = T_{i+1} - T_i`` from the displacements in state slot ``src``."""
    for i in range(f.shape[0]):
        d0 = _extension(q, src, i)
        d1 = _extension(q, src, i + 1)
        t0 = k[i] * (d0 + beta[i] * d0 * d0 * d0)
        t1 = k[i + 1] * (d1 + beta[i + 1] * d1 * d1 * d1)
        f[i] = t1 - t0


@ti.kernel
def chain_integrate(q: ti.template(), v: ti.template(), f: ti.template(), mass: ti.template(),
                    forcing: ti.template(), src: ti.i32, dst: ti.i32, step: ti.i32, dt: ti.f64):
    """Semi-implicit Euler: ``v' = v + dt (f + s[step]) / m``, ``q' = q + dt v'``."""
    for i in range(f.shape[0]):
        h = ti.cast(dt, q.dtype)
        vn = v[src, i] + h * (f[i] + forcing[step, i]) / mass[i]
        v[dst, i] = vn
        q[dst, i] = q[src, i] + h * vn


@ti.kernel
def chain_record(q: ti.template(), v: ti.template(), observed: ti.template(), yq: ti.template(),
                 yv: ti.template(), slot: ti.i32, t: ti.i32):
    """``yq[t, r] = q[slot, observed[r]]``, ``yv[t, r] = v[slot, observed[r]]``."""
    for r in range(observed.shape[0]):
        yq[t, r] = q[slot, observed[r]]
        yv[t, r] = v[slot, observed[r]]


@ti.kernel
def chain_adjoint(q: ti.template(), v: ti.template(), k: ti.template(), beta: ti.template(),
                  mass: ti.template(), forcing: ti.template(), src: ti.i32, dst: ti.i32,
                  step: ti.i32, dt: ti.f64):
    """Hand-written adjoint of one step, in gather form (no contended atomics).

    Reads ``λ[t+1]`` from ``q.grad[dst], v.grad[dst]`` and the state from slot ``src``;
    writes ``λ[t]`` into ``q.grad[src], v.grad[src]`` and accumulates the gradients of
    ``k``, ``beta``, ``mass`` and ``forcing[step]``.
    """
    n = mass.shape[0]
    h = ti.cast(dt, q.dtype)
    for i in range(n):
        # Adjoint of the mass-i update, and of its neighbours' (for the spring terms).
        mu = v.grad[dst, i] + h * q.grad[dst, i]
        phi = h * mu / mass[i]
        phi_l = ti.cast(0.0, q.dtype)
        phi_r = ti.cast(0.0, q.dtype)
        if i > 0:
            phi_l = h * (v.grad[dst, i - 1] + h * q.grad[dst, i - 1]) / mass[i - 1]
        if i < n - 1:
            phi_r = h * (v.grad[dst, i + 1] + h * q.grad[dst, i + 1]) / mass[i + 1]
        d0 = _extension(q, src, i)
        d1 = _extension(q, src, i + 1)
        tau0 = phi_l - phi
        tau1 = phi - phi_r
        delta0 = tau0 * k[i] * (1.0 + 3.0 * beta[i] * d0 * d0)
        delta1 = tau1 * k[i + 1] * (1.0 + 3.0 * beta[i + 1] * d1 * d1)
        force = k[i + 1] * (d1 + beta[i + 1] * d1 * d1 * d1) - k[i] * (d0 + beta[i] * d0 * d0 * d0)
        v.grad[src, i] = mu
        q.grad[src, i] = q.grad[dst, i] + delta0 - delta1
        mass.grad[i] += -phi * (force + forcing[step, i]) / mass[i]
        forcing.grad[step, i] += phi
    for j in range(n + 1):
        phi_l = ti.cast(0.0, q.dtype)
        phi_r = ti.cast(0.0, q.dtype)
        if j > 0:
            phi_l = h * (v.grad[dst, j - 1] + h * q.grad[dst, j - 1]) / mass[j - 1]
        if j < n:
            phi_r = h * (v.grad[dst, j] + h * q.grad[dst, j]) / mass[j]
        tau = phi_l - phi_r
        d = _extension(q, src, j)
        k.grad[j] += tau * (d + beta[j] * d * d * d)
        beta.grad[j] += tau * k[j] * d * d * d
