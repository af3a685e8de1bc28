"""The hand-written adjoint of a mass-spring step, in gather form (no float atomics).

:func:`spring_adjoint` recomputes the spring forces from the state ``x[t]``, then runs one
pass per particle, one per spring, one per particle (gather) and one per actuation channel.
The ``ti.func`` passes are shared with the fused CPU kernels (:mod:`.fused`).
"""

import taichi as ti

from diffsim.kernels.springs.forward import (
    _contact_branches,
    _rest_length,
    _spring_force,
    _sum_force,
)


@ti.kernel
def spring_adjoint(x: ti.template(), v: ti.template(), xg: ti.template(), vg: ti.template(),
                   stiffness: ti.template(), rest: ti.template(), damping: ti.template(),
                   mass: ti.template(), act: ti.template(), channel: ti.template(),
                   sa: ti.template(), sb: ti.template(), offsets: ti.template(),
                   adj: ti.template(), sign: ti.template(), fixed: ti.template(),
                   gravity: ti.template(), chan_offsets: ti.template(),
                   chan_springs: ti.template(), fs: ti.template(), pbar: ti.template(),
                   fbar: ti.template(), ebar: ti.template(), rbar: ti.template(),
                   lbar: ti.template(), norms: ti.template(), src: ti.i32, lam: ti.i32,
                   dst: ti.i32, step: ti.i32, dt: ti.f64, ground: ti.f64, use_ground: ti.i32,
                   friction: ti.f64, measure: ti.i32, serial: ti.template()):
    """Adjoint of :func:`spring_step`, in gather form (no contended atomics).

    Reads the state ``x[t], v[t]`` from ``x, v[src]`` (a ring level or a checkpoint slot)
    and ``λ[t+1]`` from ``xg, vg[dst]`` (the adjoint ring); writes ``λ[t]`` into
    ``xg, vg[lam]`` and accumulates the gradients of stiffness, rest length, damping,
    mass and ``act[step]``. ``pbar, fbar`` ``[n]`` and
    ``fs, ebar, rbar, lbar`` ``[m]`` are scratch. With ``measure``, ``|λ[t+1]|^2`` is
    added to ``norms[step + 1]`` (float64; the tape's costate trace without a launch).
    """
    h = ti.cast(dt, x.dtype)
    gnd = ti.cast(ground, x.dtype)
    mu = ti.cast(friction, x.dtype)
    # 0. Recompute the spring forces of the step.
    ti.loop_config(serialize=serial)
    for s in range(sa.shape[0]):
        fs[s] = _spring_force(x, v, stiffness, rest, damping, act, channel, sa, sb, src, step, s)
    # 1. Per particle: adjoint of the contact and of p = v + h (f / m + g).
    ti.loop_config(serialize=serial)
    for i in range(x.shape[1]):
        _adjoint_particle(x, v, xg, vg, mass, mass.grad, fixed, gravity, fs, offsets, adj, sign,
                          pbar, fbar, norms, step + 1, src, dst, step, h, gnd, use_ground, mu,
                          measure, i)
    # 2. Per spring: parameter gradients and the spring Jacobian applied to its force adjoint.
    ti.loop_config(serialize=serial)
    for s in range(sa.shape[0]):
        _adjoint_spring(x, v, stiffness, rest, damping, act, channel, sa, sb, fbar,
                        stiffness.grad, rest.grad, damping.grad, lbar, ebar, rbar, src, step, s)
    # 3. Per particle: gather the spring terms into λ[t].
    ti.loop_config(serialize=serial)
    for i in range(x.shape[1]):
        _adjoint_gather(xg, vg, fixed, offsets, adj, sign, ebar, rbar, pbar, dst, lam, i)
    # 4. Per actuation channel: gather the rest-length adjoints of its springs.
    ti.loop_config(serialize=serial)
    for c in range(chan_offsets.shape[0] - 1):
        _adjoint_channel(lbar, chan_offsets, chan_springs, act.grad, step, c,
                         ti.cast(0.0, x.dtype))


@ti.func
def _adjoint_particle(x: ti.template(), v: ti.template(), xg: ti.template(), vg: ti.template(),
                      mass: ti.template(), mass_grad: ti.template(), fixed: ti.template(),
                      gravity: ti.template(), fs: ti.template(), offsets: ti.template(),
                      adj: ti.template(), sign: ti.template(), pbar: ti.template(),
                      fbar: ti.template(), norms: ti.template(), k: ti.i32, src: ti.i32,
                      dst: ti.i32, step: ti.i32, h, gnd, use_ground: ti.i32, mu, measure: ti.i32,
                      i: ti.i32):
    """Particle ``i``: adjoint of its contact and of ``p = v + h (f / m + g)``.

    With ``measure`` it adds its part of ``|λ[t+1]|^2`` to ``norms[k]``.
    """
    if measure != 0:
        norms[k] += ti.cast(xg[dst, i].dot(xg[dst, i]) + vg[dst, i].dot(vg[dst, i]),
                                   ti.f64)
    pb = ti.zero(x[src, i])
    fb = ti.zero(x[src, i])
    if fixed[i] == 0:
        xi = x[src, i]
        f = _sum_force(fs, offsets, adj, sign, i)
        p = v[src, i] + h * (f / mass[i] + gravity[0])
        q, branch = _contact_branches(xi, p, h, gnd, use_ground, mu)
        qb = vg[dst, i] + h * xg[dst, i]
        if branch == 0:
            pb = qb
        elif branch == 1:
            up = ti.Vector.unit(p.n, 1)
            t = p - p[1] * up
            tn = t.norm()
            that = t / tn
            qt = qb - qb[1] * up
            alpha = mu * (-p[1]) / tn
            pb = qt - alpha * (qt - that * that.dot(qt)) + mu * that.dot(qt) * up
        fb = h * pb / mass[i]
        mass_grad[i] += -fb.dot(f) / mass[i]
    pbar[i] = pb
    fbar[i] = fb


@ti.func
def _adjoint_spring(x: ti.template(), v: ti.template(), stiffness: ti.template(),
                    rest: ti.template(), damping: ti.template(), act: ti.template(),
                    channel: ti.template(), sa: ti.template(), sb: ti.template(),
                    fbar: ti.template(), k_grad: ti.template(), rest_grad: ti.template(),
                    damping_grad: ti.template(), lbar: ti.template(), ebar: ti.template(),
                    rbar: ti.template(), src: ti.i32, step: ti.i32, s: ti.i32):
    """Spring ``s``: parameter gradients and its Jacobian applied to its force adjoint."""
    a = sa[s]
    b = sb[s]
    w = fbar[a] - fbar[b]
    d = x[src, b] - x[src, a]
    r = v[src, b] - v[src, a]
    length = d.norm()
    u = d / length
    rest_s, factor = _rest_length(rest, act, channel, s, step)
    wu = w.dot(u)
    ru = r.dot(u)
    stretch = length - rest_s
    k_grad[s] += stretch * wu
    lb = -stiffness[s] * wu
    rest_grad[s] += lb * factor
    lbar[s] = lb * rest[s]
    damping_grad[s] += ru * wu
    wperp = w - wu * u
    rperp = r - ru * u
    ebar[s] = (stiffness[s] * (wu * u + stretch / length * wperp)
               + damping[s] / length * (ru * wperp + wu * rperp))
    rbar[s] = damping[s] * wu * u


@ti.func
def _adjoint_gather(xg: ti.template(), vg: ti.template(), fixed: ti.template(),
                    offsets: ti.template(), adj: ti.template(), sign: ti.template(),
                    ebar: ti.template(), rbar: ti.template(), pbar: ti.template(), dst: ti.i32,
                    lam: ti.i32, i: ti.i32):
    """Particle ``i``: ``λ[t]`` from ``λ[t+1]`` and the spring terms of its springs."""
    xb = xg[dst, i]
    vb = pbar[i]
    if fixed[i] != 0:
        vb = ti.zero(vb)
    for e in range(offsets[i], offsets[i + 1]):
        s = adj[e]
        xb += sign[e] * ebar[s]
        vb += sign[e] * rbar[s]
    xg[lam, i] = xb
    vg[lam, i] = vb


@ti.func
def _adjoint_channel(lbar: ti.template(), chan_offsets: ti.template(),
                     chan_springs: ti.template(), act_grad: ti.template(), step: ti.i32,
                     c: ti.i32, zero):
    """Actuation channel ``c``: the rest-length adjoints of its springs (``zero`` typed 0)."""
    acc = zero
    for e in range(chan_offsets[c], chan_offsets[c + 1]):
        acc += lbar[chan_springs[e]]
    act_grad[step, c] += acc
