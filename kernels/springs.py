"""Kernels of a mass-spring system: spring forces gathered per particle, semi-implicit Euler.

Particles ``i = 0 … n-1`` with position ``x`` and velocity ``v`` (``d``-vectors, the
second component is height); springs ``s = 0 … m-1`` join particles ``a[s]`` and
``b[s]``. With ``e = x_b - x_a``, ``l = |e|``, ``u = e / l`` and ``r = v_b - v_a`` the
force of spring ``s`` on particle ``a`` is

    F_s = k_s (l - L_s(t)) u + c_s (r · u) u,        L_s(t) = L0_s (1 + act[t, ch_s]),

and ``-F_s`` acts on ``b`` (``F`` is odd in ``(e, r)``, so the force on either end is
``F(x_other - x_self, v_other - v_self)``). Springs with ``ch_s < 0`` are passive.

Forces are *gathered*: each spring's force is computed once into ``fs[s]``, then each
particle sums the forces of its own springs through a CSR adjacency (``offsets``,
``adj``, ``sign``), so no two threads write the same value and the result does not
depend on thread timing (no float atomics). Integration is semi-implicit Euler with a
ground branch and Coulomb friction::

    p  = v + dt (f / m + g)                       (velocity before contact)
    q  = contact(p)   if x_y + dt p_y < ground and p_y < 0, else p
    v' = q,  x' = x + dt q,   pinned particles: x' = x, v' = 0.

``contact`` removes the normal velocity ``v_n = -p_y`` and shrinks the tangential
velocity ``p_t`` by ``mu v_n`` (to zero when ``|p_t| <= mu v_n``: sticking).

The hand-written adjoint :func:`spring_adjoint` is in gather form too: it recomputes
the spring forces, then runs one pass per particle (contact Jacobian, mass gradient),
one per spring (parameter gradients and the spring's Jacobian applied to its force
adjoint), one per particle (gather of the spring terms) and one per actuation channel.
Taichi's autodiff of the gather kernel gave wrong gradients here (an if/else storing to
the same output in both branches doubled adjoints; without it, errors of about 1e-4
relative remained, cause not isolated, the dynamic per-particle loop being the suspect),
so the autodiff cross-check differentiates a scatter formulation
(:func:`spring_scatter_force`, :func:`spring_integrate`) instead.

Two drivers share these functions: per-step kernels on fields (:func:`spring_step`,
:func:`spring_adjoint`, parallel loops, for GPUs) and, on the CPU, two kernels that run
a whole range of steps in one launch on NumPy arrays (:func:`spring_fused`), compiled
once per process for every system. They give identical results bit for bit.
"""

from typing import Any, TypeAlias

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


def spring_fused(dim: int, dtype: Any) -> tuple[Any, Any]:
    """The whole-range forward and reverse kernels for ``dim``-vectors of ``dtype``.

    Built once per pair and shared by every system: all arguments are arrays (NumPy
    arrays on the CPU, used in place), so a new topology, size or checkpoint pool needs
    no recompilation. Each kernel runs many steps in one launch with a serial time loop
    (one thread; a second gave no gain at 4,000 particles), so the per-launch cost of
    passing some thirty arrays is paid once per run of steps, not once per step. The
    arithmetic is that of :func:`spring_step` and :func:`spring_adjoint` (the same
    functions), so results are identical to the per-step kernels bit for bit.

    ``forward(x, v, px, pv, out, <system>, fs, saves, rows, start, stop, period, dt,
    ground, use_ground, friction, outv, record_v)`` runs steps ``start … stop-1`` on the states ``x, v``
    (time ``t`` at level ``t % period``: ``period = 2`` for the tape's ring, more than the
    step count for a whole trajectory): before step ``t`` (and after the last, for
    ``t = stop``) it stores ``x[t], v[t]`` in checkpoint ``px, pv[saves[t - start]]`` when
    that is ``>= 0``; after step ``t`` it writes ``x[t+1]`` into ``out[rows[t+1]]`` when
    that is ``>= 0`` (and ``v[t+1]`` into ``outv[rows[t+1]]`` when ``record_v``).

    ``reverse(x, v, px, pv, xg, vg, cot, <system>, chan_offsets, chan_springs, <scratch>,
    <gradients>, norms, slots, rows, top, count, spare, measure, dt, …, cotv, seed_v)``
    reverses steps ``top, top-1, … top-count+1``: step ``top - j`` reads its state from
    checkpoint ``slots[j]`` (``< 0``: from the ring, copied to slot ``spare`` first), adds
    the output cotangent ``cot[rows[t+1]]`` into ``λ_x[t+1]`` (and ``cotv[rows[t+1]]``
    into ``λ_v[t+1]`` when ``seed_v``), then runs the adjoint.
    """
    key = (dim, dtype)
    if key not in _FUSED_KERNELS:
        _FUSED_KERNELS[key] = _build_fused(ti.types.vector(dim, dtype), dtype)
    return _FUSED_KERNELS[key]


def _build_fused(vec: Any, dtype: Any) -> tuple[Any, Any]:
    # Taichi types of the kernels' arguments; as TypeAliases they are Any to a type checker
    v1: TypeAlias = ti.types.ndarray(dtype=vec, ndim=1)
    v2: TypeAlias = ti.types.ndarray(dtype=vec, ndim=2)
    s1: TypeAlias = ti.types.ndarray(dtype=dtype, ndim=1)
    s2: TypeAlias = ti.types.ndarray(dtype=dtype, ndim=2)
    i1: TypeAlias = ti.types.ndarray(dtype=ti.i32, ndim=1)
    f1: TypeAlias = ti.types.ndarray(dtype=ti.f64, ndim=1)

    @ti.kernel
    def forward(x: v2, v: v2, px: v2, pv: v2, out: v2, stiffness: s1, rest: s1, damping: s1,
                mass: s1, act: s2, channel: i1, sa: i1, sb: i1, offsets: i1, adj: i1, sign: s1,
                fixed: i1, gravity: v1, fs: v1, saves: i1, rows: i1, start: ti.i32,
                stop: ti.i32, period: ti.i32, dt: ti.f64, ground: ti.f64, use_ground: ti.i32,
                friction: ti.f64, outv: v2, record_v: ti.i32):
        h = ti.cast(dt, dtype)
        gnd = ti.cast(ground, dtype)
        mu = ti.cast(friction, dtype)
        ti.loop_config(serialize=True)
        for t in range(start, stop + 1):
            src = t % period
            slot = saves[t - start]
            if t < stop:
                dst = (t + 1) % period
                for s in range(sa.shape[0]):
                    fs[s] = _spring_force(x, v, stiffness, rest, damping, act, channel, sa, sb,
                                          src, t, s)
                for i in range(x.shape[1]):
                    if slot >= 0:  # the checkpoint, in the pass that reads the state anyway
                        px[slot, i] = x[src, i]
                        pv[slot, i] = v[src, i]
                    f = _sum_force(fs, offsets, adj, sign, i)
                    _step_particle(x, v, mass, fixed, gravity, f, src, dst, h, gnd, use_ground,
                                   mu, i, True)
                row = rows[t + 1]
                if row >= 0:
                    for i in range(x.shape[1]):
                        out[row, i] = x[dst, i]
                    if record_v:
                        for i in range(x.shape[1]):
                            outv[row, i] = v[dst, i]
            elif slot >= 0:
                for i in range(x.shape[1]):
                    px[slot, i] = x[src, i]
                    pv[slot, i] = v[src, i]

    @ti.kernel
    def reverse(x: v2, v: v2, px: v2, pv: v2, xg: v2, vg: v2, cot: v2, stiffness: s1,
                rest: s1, damping: s1, mass: s1, act: s2, channel: i1, sa: i1, sb: i1,
                offsets: i1, adj: i1, sign: s1, fixed: i1, gravity: v1, chan_offsets: i1,
                chan_springs: i1, fs: v1, pbar: v1, fbar: v1, ebar: v1, rbar: v1, lbar: s1,
                k_grad: s1, rest_grad: s1, damping_grad: s1, mass_grad: s1, act_grad: s2,
                norms: f1, slots: i1, rows: i1, top: ti.i32, count: ti.i32, spare: ti.i32,
                measure: ti.i32, dt: ti.f64, ground: ti.f64, use_ground: ti.i32,
                friction: ti.f64, cotv: v2, seed_v: ti.i32):
        h = ti.cast(dt, dtype)
        gnd = ti.cast(ground, dtype)
        mu = ti.cast(friction, dtype)
        ti.loop_config(serialize=True)
        for j in range(count):
            step = top - j
            slot = slots[j]
            if slot < 0:
                for i in range(x.shape[1]):
                    px[spare, i] = x[step % 2, i]
                    pv[spare, i] = v[step % 2, i]
                slot = spare
            dst = (step + 1) % 2
            row = rows[step + 1]
            if row >= 0:
                for i in range(x.shape[1]):
                    xg[dst, i] += cot[row, i]
                if seed_v:
                    for i in range(x.shape[1]):
                        vg[dst, i] += cotv[row, i]
            for s in range(sa.shape[0]):
                fs[s] = _spring_force(px, pv, stiffness, rest, damping, act, channel, sa, sb,
                                      slot, step, s)
            for i in range(x.shape[1]):
                _adjoint_particle(px, pv, xg, vg, mass, mass_grad, fixed, gravity, fs, offsets,
                                  adj, sign, pbar, fbar, norms, slot, dst, step, h, gnd,
                                  use_ground, mu, measure, i)
            for s in range(sa.shape[0]):
                _adjoint_spring(px, pv, stiffness, rest, damping, act, channel, sa, sb, fbar,
                                k_grad, rest_grad, damping_grad, lbar, ebar, rbar, slot, step, s)
            for i in range(x.shape[1]):
                _adjoint_gather(xg, vg, fixed, offsets, adj, sign, ebar, rbar, pbar, dst,
                                step % 2, i)
            for c in range(chan_offsets.shape[0] - 1):
                _adjoint_channel(lbar, chan_offsets, chan_springs, act_grad, step, c,
                                 ti.cast(0.0, dtype))

    return forward, reverse


#: Compiled (forward, reverse) kernels by (dimension, dtype); see :func:`spring_fused`.
_FUSED_KERNELS: dict[tuple[int, Any], tuple[Any, Any]] = {}


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
                          pbar, fbar, norms, src, dst, step, h, gnd, use_ground, mu, measure, i)
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
                      fbar: ti.template(), norms: ti.template(), src: ti.i32, dst: ti.i32,
                      step: ti.i32, h, gnd, use_ground: ti.i32, mu, measure: ti.i32, i: ti.i32):
    """Particle ``i``: adjoint of its contact and of ``p = v + h (f / m + g)``."""
    if measure != 0:
        norms[step + 1] += ti.cast(xg[dst, i].dot(xg[dst, i]) + vg[dst, i].dot(vg[dst, i]),
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


@ti.kernel
def spring_record(x: ti.template(), out: ti.template(), level: ti.i32, row: ti.i32):
    """``out[row, i] = x[level, i]`` for every particle."""
    for i in range(x.shape[1]):
        out[row, i] = x[level, i]


@ti.kernel
def spring_save(x: ti.template(), v: ti.template(), px: ti.template(), pv: ti.template(),
                level: ti.i32, slot: ti.i32):
    """Store ``x[level], v[level]`` in checkpoint ``px, pv[slot]`` (one launch for both)."""
    for i in range(x.shape[1]):
        px[slot, i] = x[level, i]
        pv[slot, i] = v[level, i]


@ti.kernel
def spring_load(px: ti.template(), pv: ti.template(), x: ti.template(), v: ti.template(),
                slot: ti.i32, level: ti.i32):
    """Make checkpoint ``px, pv[slot]`` the live ``x[level], v[level]``."""
    for i in range(x.shape[1]):
        x[level, i] = px[slot, i]
        v[level, i] = pv[slot, i]


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


# -- bulk transfers: one compiled kernel instead of one Taichi helper per field -------------
@ti.kernel
def spring_upload_topology(sa: ti.template(), sb: ti.template(), channel: ti.template(),
                           offsets: ti.template(), adj: ti.template(), sign: ti.template(),
                           fixed: ti.template(), gravity: ti.template(),
                           chan_offsets: ti.template(), chan_springs: ti.template(),
                           a_sa: ti.types.ndarray(), a_sb: ti.types.ndarray(),
                           a_channel: ti.types.ndarray(), a_offsets: ti.types.ndarray(),
                           a_adj: ti.types.ndarray(), a_sign: ti.types.ndarray(),
                           a_fixed: ti.types.ndarray(), a_gravity: ti.types.ndarray(),
                           a_chan_offsets: ti.types.ndarray(), a_chan_springs: ti.types.ndarray()):
    """Copy the topology arrays (int32, the signs and gravity in the runtime precision) in."""
    for s in range(sa.shape[0]):
        sa[s] = a_sa[s]
        sb[s] = a_sb[s]
        channel[s] = a_channel[s]
    for i in range(offsets.shape[0]):
        offsets[i] = a_offsets[i]
    for e in range(adj.shape[0]):
        adj[e] = a_adj[e]
        sign[e] = a_sign[e]
    for i in range(fixed.shape[0]):
        fixed[i] = a_fixed[i]
    for _ in range(1):
        for c in ti.static(range(gravity.n)):
            gravity[0][c] = a_gravity[c]
    for c in range(chan_offsets.shape[0]):
        chan_offsets[c] = a_chan_offsets[c]
    for e in range(chan_springs.shape[0]):
        chan_springs[e] = a_chan_springs[e]


@ti.kernel
def spring_upload_params(stiffness: ti.template(), rest: ti.template(), damping: ti.template(),
                         mass: ti.template(), a_stiffness: ti.types.ndarray(),
                         a_rest: ti.types.ndarray(), a_damping: ti.types.ndarray(),
                         a_mass: ti.types.ndarray()):
    """Copy per-spring stiffness, rest length, damping and per-particle mass in."""
    for s in range(stiffness.shape[0]):
        stiffness[s] = a_stiffness[s]
        rest[s] = a_rest[s]
        damping[s] = a_damping[s]
    for i in range(mass.shape[0]):
        mass[i] = a_mass[i]


@ti.kernel
def spring_set_initial(x: ti.template(), v: ti.template(), a_x: ti.types.ndarray(),
                       a_v: ti.types.ndarray(), level: ti.i32):
    """``x[level, i] = a_x[i, :]``, ``v[level, i] = a_v[i, :]``."""
    for i in range(x.shape[1]):
        for c in ti.static(range(x.n)):
            x[level, i][c] = a_x[i, c]
            v[level, i][c] = a_v[i, c]


@ti.kernel
def spring_zero_adjoints(xg: ti.template(), vg: ti.template(), kg: ti.template(),
                         rg: ti.template(), cg: ti.template(), mg: ti.template(),
                         ag: ti.template(), og: ti.template(), norms: ti.template()):
    """Zero every adjoint the reverse sweep accumulates into, and the costate norms."""
    for j, i in xg:
        xg[j, i] = ti.zero(xg[j, i])
        vg[j, i] = ti.zero(vg[j, i])
    for s in kg:
        kg[s] = 0.0
        rg[s] = 0.0
        cg[s] = 0.0
    for i in mg:
        mg[i] = 0.0
    for t, c in ag:
        ag[t, c] = 0.0
    for r, i in og:
        og[r, i] = ti.zero(og[r, i])
    for t in norms:
        norms[t] = 0.0


@ti.kernel
def spring_download_gradients(kg: ti.template(), rg: ti.template(), cg: ti.template(),
                              mg: ti.template(), xg: ti.template(), vg: ti.template(),
                              level: ti.i32, a_k: ti.types.ndarray(), a_rest: ti.types.ndarray(),
                              a_damping: ti.types.ndarray(), a_mass: ti.types.ndarray(),
                              a_x: ti.types.ndarray(), a_v: ti.types.ndarray()):
    """Copy the parameter gradients and ``λ[0]`` (ring level ``level``) out."""
    for s in range(kg.shape[0]):
        a_k[s] = kg[s]
        a_rest[s] = rg[s]
        a_damping[s] = cg[s]
    for i in range(mg.shape[0]):
        a_mass[i] = mg[i]
        for c in ti.static(range(xg.n)):
            a_x[i, c] = xg[level, i][c]
            a_v[i, c] = vg[level, i][c]
