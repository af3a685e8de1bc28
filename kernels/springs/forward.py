"""The forward step of a mass-spring system: forces gathered per particle, semi-implicit Euler.

The per-step kernel :func:`spring_step` (fields, parallel loops) and its building blocks
(the ``ti.func`` helpers shared with the fused CPU kernels and the adjoint), the scatter
formulation that Taichi autodiff differentiates for the tests (:func:`spring_zero_force`,
:func:`spring_scatter_force`, :func:`spring_integrate`) and the output record
(:func:`spring_record`). See :mod:`diffsim.kernels.springs` for the equations.
"""

import taichi as ti


@ti.func
def _rest_length(rest: ti.template(), act: ti.template(), channel: ti.template(), s: ti.i32,
                 step: ti.i32):
    """``L0_s (1 + act[step, ch_s])`` (``L0_s`` when passive) and the factor ``1 + act``."""
    ch = channel[s]
    factor = 1.0 + ti.select(ch >= 0, act[step, ti.max(ch, 0)], 0.0)
    return rest[s] * factor, factor


@ti.func
def _spring_force(x: ti.template(), v: ti.template(), stiffness: ti.template(),
                  rest: ti.template(), damping: ti.template(), act: ti.template(),
                  channel: ti.template(), sa: ti.template(), sb: ti.template(), src: ti.i32,
                  step: ti.i32, s: ti.i32):
    """Force of spring ``s`` on its end ``a`` at state slot ``src`` (``-F`` acts on ``b``)."""
    d = x[src, sb[s]] - x[src, sa[s]]
    r = v[src, sb[s]] - v[src, sa[s]]
    length = d.norm()
    u = d / length
    rest_s, _ = _rest_length(rest, act, channel, s, step)
    return (stiffness[s] * (length - rest_s) + damping[s] * r.dot(u)) * u


@ti.func
def _sum_force(fs: ti.template(), offsets: ti.template(), adj: ti.template(),
               sign: ti.template(), i: ti.i32):
    """Gather the spring forces on particle ``i`` (``sign`` is -1 at end a, +1 at end b)."""
    f = ti.zero(fs[0])
    for e in range(offsets[i], offsets[i + 1]):
        f -= sign[e] * fs[adj[e]]
    return f


@ti.func
def _contact(xi, p, h, ground, use_ground: ti.i32, mu):
    """Velocity after ground contact, and the branch taken (0 free, 1 sliding, 2 sticking).

    Written without branches on mutable locals (``ti.select`` and 0/1 weights), which
    Taichi's autodiff gets wrong; it computes the same values as the branches would.
    """
    up = ti.Vector.unit(p.n, 1)
    t = p - p[1] * up
    vn = -p[1]
    tn = t.norm()
    hit = (use_ground != 0) & (xi[1] + h * p[1] < ground) & (p[1] < 0)
    stick = tn <= mu * vn
    c = ti.select(hit, 1.0, 0.0)
    slide = ti.select(stick, 0.0, 1.0)
    factor = 1.0 - mu * vn / ti.max(tn, 1e-30)
    q = (1.0 - c) * p + c * slide * factor * t
    branch = ti.select(hit, ti.select(stick, 2, 1), 0)
    return q, branch


@ti.func
def _contact_branches(xi, p, h, ground, use_ground: ti.i32, mu):
    """:func:`_contact` with branches (the hand-written kernels; not differentiated).

    The same values, without the square root and division for particles off the ground.
    """
    q = p
    branch = 0
    if use_ground != 0 and xi[1] + h * p[1] < ground and p[1] < 0:
        up = ti.Vector.unit(p.n, 1)
        t = p - p[1] * up
        vn = -p[1]
        tn = t.norm()
        if tn <= mu * vn:
            q = ti.zero(p)
            branch = 2
        else:
            q = (1.0 - mu * vn / ti.max(tn, 1e-30)) * t
            branch = 1
    return q, branch


@ti.func
def _step_particle(x: ti.template(), v: ti.template(), mass: ti.template(),
                   fixed: ti.template(), gravity: ti.template(), f, src: ti.i32, dst: ti.i32,
                   h, ground, use_ground: ti.i32, mu, i: ti.i32, branches: ti.template()):
    """Semi-implicit Euler with contact for particle ``i`` under the spring force ``f``.

    ``branches`` (compile time): branch on contact and pinning (the hand-written kernels)
    or use 0/1 weights that Taichi's autodiff handles (see :func:`_contact`); the values
    are the same.
    """
    xi = x[src, i]
    p = v[src, i] + h * (f / mass[i] + gravity[0])
    if ti.static(branches):
        q, _ = _contact_branches(xi, p, h, ground, use_ground, mu)
        if fixed[i] != 0:
            v[dst, i] = ti.zero(q)
            x[dst, i] = xi
        else:
            v[dst, i] = q
            x[dst, i] = xi + h * q
    else:
        q, _ = _contact(xi, p, h, ground, use_ground, mu)
        free = ti.select(fixed[i] != 0, 0.0, 1.0)  # pinned: x' = x, v' = 0 (no branch)
        v[dst, i] = free * q
        x[dst, i] = xi + h * free * q


@ti.kernel
def spring_step(x: ti.template(), v: ti.template(), stiffness: ti.template(),
                rest: ti.template(), damping: ti.template(), mass: ti.template(),
                act: ti.template(), channel: ti.template(), sa: ti.template(),
                sb: ti.template(), offsets: ti.template(), adj: ti.template(),
                sign: ti.template(), fixed: ti.template(), gravity: ti.template(),
                fs: ti.template(), px: ti.template(), pv: ti.template(), save: ti.i32,
                src: ti.i32, dst: ti.i32, step: ti.i32, dt: ti.f64, ground: ti.f64,
                use_ground: ti.i32, friction: ti.f64, serial: ti.template()):
    """One step ``x[src], v[src] -> x[dst], v[dst]`` (forward only; ``fs`` ``[m]`` is scratch).

    Two loops, no atomics: each spring's force into ``fs[s]``, then each particle
    gathers its springs' forces and integrates. Its adjoint is :func:`spring_adjoint`.
    With ``save >= 0`` the input state is also stored in checkpoint ``px, pv[save]``
    (a checkpoint without a launch of its own). ``serial`` (compile time) runs the loops
    in the launching thread: on CPU that avoids the thread pool's dispatch, measured 146
    vs 241 µs CPU time per step at 4,000 particles and 11,741 springs (a second thread
    gave no gain at that size).
    """
    ti.loop_config(serialize=serial)
    for s in range(sa.shape[0]):
        fs[s] = _spring_force(x, v, stiffness, rest, damping, act, channel, sa, sb, src, step, s)
    ti.loop_config(serialize=serial)
    for i in range(x.shape[1]):
        if save >= 0:
            px[save, i] = x[src, i]
            pv[save, i] = v[src, i]
        f = _sum_force(fs, offsets, adj, sign, i)
        _step_particle(x, v, mass, fixed, gravity, f, src, dst, ti.cast(dt, x.dtype),
                       ti.cast(ground, x.dtype), use_ground, ti.cast(friction, x.dtype), i, True)


@ti.kernel
def spring_zero_force(force: ti.template()):
    """``force[i] = 0`` (scratch of the autodiff formulation)."""
    for i in range(force.shape[0]):
        force[i] = ti.zero(force[i])


@ti.kernel
def spring_scatter_force(x: ti.template(), v: ti.template(), stiffness: ti.template(),
                         rest: ti.template(), damping: ti.template(), act: ti.template(),
                         channel: ti.template(), sa: ti.template(), sb: ti.template(),
                         force: ti.template(), src: ti.i32, step: ti.i32):
    """Spring forces scattered with atomic adds into ``force`` (the autodiff formulation).

    Taichi's autodiff of this per-spring loop is correct; its reverse of the per-particle
    gather loop (:func:`spring_step`) is not, so the ``"autodiff"`` provider differentiates
    this formulation. Float atomics make it order-dependent with several threads.
    """
    for s in range(sa.shape[0]):
        a = sa[s]
        b = sb[s]
        f = _spring_force(x, v, stiffness, rest, damping, act, channel, sa, sb, src, step, s)
        force[a] += f
        force[b] -= f


@ti.kernel
def spring_integrate(x: ti.template(), v: ti.template(), mass: ti.template(),
                     fixed: ti.template(), gravity: ti.template(), force: ti.template(),
                     src: ti.i32, dst: ti.i32, dt: ti.f64, ground: ti.f64, use_ground: ti.i32,
                     friction: ti.f64):
    """Semi-implicit Euler with contact from a force buffer (the autodiff formulation)."""
    for i in range(x.shape[1]):
        _step_particle(x, v, mass, fixed, gravity, force[i], src, dst, ti.cast(dt, x.dtype),
                       ti.cast(ground, x.dtype), use_ground, ti.cast(friction, x.dtype), i, False)


@ti.kernel
def spring_record(x: ti.template(), out: ti.template(), level: ti.i32, row: ti.i32):
    """``out[row, i] = x[level, i]`` for every particle."""
    for i in range(x.shape[1]):
        out[row, i] = x[level, i]
