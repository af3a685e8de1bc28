"""Kernels of 2D isotropic elastic waves (P-SV), velocity-stress on a staggered grid.

Virieux (1986) staggering, indices ``(z, x)``: ``sxx, szz`` at cells ``(i, j)``, ``vx`` at
``(i, j + 1/2)``, ``vz`` at ``(i + 1/2, j)``, ``sxz`` at ``(i + 1/2, j + 1/2)``, each
stored at ``[shot, i, j]``. Staggered differences of the order's coefficients ``s``::

    D+ a[j] = sum_k s_k (a[j + k + 1] - a[j - k]) / h     (cells -> half points)
    D- a[j] = sum_k s_k (a[j + k] - a[j - k - 1]) / h     (half points -> cells)

Leapfrog in time, velocities at half steps::

    vx += dt b_x (D+x sxx + D-z sxz)        vz += dt b_z (D-x sxz + D+z szz)
    sxx += dt ((l + 2m) D-x vx + l D-z vz)  szz += dt (l D-x vx + (l + 2m) D-z vz)
    sxz += dt m_xz (D+z vx + D+x vz)

with ``l = rho (vp^2 - 2 vs^2)``, ``m = rho vs^2`` at cells, the buoyancies ``b = 1/rho``
averaged onto the velocity points and ``m`` harmonically onto the ``sxz`` points; all
computed inside the kernels from ``vp, vs, rho``, so Taichi autodiff gives their
gradients. C-PML (convolutional, ``kappa = 1``): every derivative ``D`` along an axis
gets ``D + psi'`` with ``psi' = b psi + a D`` (``a, b`` the profile at the derivative's
position, zero outside the layer). The update runs on every cell but a frame of
``halo`` cells, which stays zero.
"""

import taichi as ti


@ti.func
def _dp(a: ti.template(), lvl: ti.i32, s: ti.i32, i: ti.i32, j: ti.i32, axis: ti.template(),
        c: ti.template()):
    """``D+`` (no 1/h) of ``a[lvl, s]`` at ``(i, j)`` along ``axis`` (0: z, 1: x)."""
    acc = ti.cast(0.0, a.dtype)
    for k in ti.static(range(len(c))):
        if ti.static(axis == 0):
            acc += c[k] * (a[lvl, s, i + k + 1, j] - a[lvl, s, i - k, j])
        else:
            acc += c[k] * (a[lvl, s, i, j + k + 1] - a[lvl, s, i, j - k])
    return acc


@ti.func
def _dm(a: ti.template(), lvl: ti.i32, s: ti.i32, i: ti.i32, j: ti.i32, axis: ti.template(),
        c: ti.template()):
    """``D-`` (no 1/h) of ``a[lvl, s]`` at ``(i, j)`` along ``axis`` (0: z, 1: x)."""
    acc = ti.cast(0.0, a.dtype)
    for k in ti.static(range(len(c))):
        if ti.static(axis == 0):
            acc += c[k] * (a[lvl, s, i + k, j] - a[lvl, s, i - k - 1, j])
        else:
            acc += c[k] * (a[lvl, s, i, j + k] - a[lvl, s, i, j - k - 1])
    return acc


@ti.func
def _pml(psi: ti.template(), src: ti.i32, dst: ti.i32, s: ti.i32, i: ti.i32, j: ti.i32,
         prof: ti.template(), row: ti.template(), axis: ti.template(), d):
    """``d + psi'`` with ``psi' = b psi + a d`` stored in ``psi[dst]`` (branch-free)."""
    a = ti.cast(0.0, psi.dtype)
    b = ti.cast(0.0, psi.dtype)
    if ti.static(axis == 0):
        a, b = prof[row, axis, i], prof[row + 1, axis, i]
    else:
        a, b = prof[row, axis, j], prof[row + 1, axis, j]
    m = b * psi[src, s, i, j] + a * d
    psi[dst, s, i, j] = m
    return d + m


@ti.kernel
def elastic_velocity(vx: ti.template(), vz: ti.template(), sxx: ti.template(),
                     szz: ti.template(), sxz: ti.template(), px: ti.template(),
                     pz: ti.template(), qx: ti.template(), qz: ti.template(),
                     rho: ti.template(), prof: ti.template(), src: ti.i32, dst: ti.i32,
                     dt: ti.f64, ihz: ti.f64, ihx: ti.f64, halo: ti.i32, c: ti.template()):
    """``vx, vz`` at ``dst`` from ``src`` and the stresses at ``src``.

    PML memory: ``px`` (D+x sxx), ``pz`` (D-z sxz) of ``vx``; ``qx`` (D-x sxz), ``qz``
    (D+z szz) of ``vz``. ``prof [4, 2, n]``: cell ``a, b`` then half-point ``a, b``, per
    axis (0: z, 1: x).
    """
    for s, i, j in ti.ndrange(vx.shape[1], (halo, vx.shape[2] - halo), (halo, vx.shape[3] - halo)):
        h = ti.cast(dt, vx.dtype)
        dxx = _pml(px, src, dst, s, i, j, prof, 2, 1, _dp(sxx, src, s, i, j, 1, c) * ihx)
        dxz = _pml(pz, src, dst, s, i, j, prof, 0, 0, _dm(sxz, src, s, i, j, 0, c) * ihz)
        bx = 0.5 * (1.0 / rho[i, j] + 1.0 / rho[i, j + 1])
        vx[dst, s, i, j] = vx[src, s, i, j] + h * bx * (dxx + dxz)
        dzx = _pml(qx, src, dst, s, i, j, prof, 0, 1, _dm(sxz, src, s, i, j, 1, c) * ihx)
        dzz = _pml(qz, src, dst, s, i, j, prof, 2, 0, _dp(szz, src, s, i, j, 0, c) * ihz)
        bz = 0.5 * (1.0 / rho[i, j] + 1.0 / rho[i + 1, j])
        vz[dst, s, i, j] = vz[src, s, i, j] + h * bz * (dzx + dzz)


@ti.kernel
def elastic_stress(vx: ti.template(), vz: ti.template(), sxx: ti.template(),
                   szz: ti.template(), sxz: ti.template(), rx: ti.template(),
                   rz: ti.template(), tx: ti.template(), tz: ti.template(), vp: ti.template(),
                   vs: ti.template(), rho: ti.template(), prof: ti.template(), src: ti.i32,
                   dst: ti.i32, dt: ti.f64, ihz: ti.f64, ihx: ti.f64, halo: ti.i32,
                   c: ti.template()):
    """Stresses at ``dst`` from ``src`` and the velocities at ``dst``.

    PML memory: ``rx`` (D-x vx), ``rz`` (D-z vz) of the normal stresses; ``tx`` (D+x vz),
    ``tz`` (D+z vx) of ``sxz``.
    """
    for s, i, j in ti.ndrange(vx.shape[1], (halo, vx.shape[2] - halo), (halo, vx.shape[3] - halo)):
        h = ti.cast(dt, vx.dtype)
        m = rho[i, j] * vs[i, j] * vs[i, j]
        lam = rho[i, j] * vp[i, j] * vp[i, j] - 2.0 * m
        exx = _pml(rx, src, dst, s, i, j, prof, 0, 1, _dm(vx, dst, s, i, j, 1, c) * ihx)
        ezz = _pml(rz, src, dst, s, i, j, prof, 0, 0, _dm(vz, dst, s, i, j, 0, c) * ihz)
        sxx[dst, s, i, j] = sxx[src, s, i, j] + h * ((lam + 2.0 * m) * exx + lam * ezz)
        szz[dst, s, i, j] = szz[src, s, i, j] + h * (lam * exx + (lam + 2.0 * m) * ezz)
        ezx = _pml(tz, src, dst, s, i, j, prof, 2, 0, _dp(vx, dst, s, i, j, 0, c) * ihz)
        exz = _pml(tx, src, dst, s, i, j, prof, 2, 1, _dp(vz, dst, s, i, j, 1, c) * ihx)
        # harmonic mean of the four cells' shear moduli (zero where any is fluid)
        m01 = rho[i, j + 1] * vs[i, j + 1] * vs[i, j + 1]
        m10 = rho[i + 1, j] * vs[i + 1, j] * vs[i + 1, j]
        m11 = rho[i + 1, j + 1] * vs[i + 1, j + 1] * vs[i + 1, j + 1]
        # (as reciprocals: a product of four moduli overflows float32)
        low = ti.min(ti.min(m, m01), ti.min(m10, m11))
        inv = (1.0 / ti.select(m > 0.0, m, 1.0) + 1.0 / ti.select(m01 > 0.0, m01, 1.0)
               + 1.0 / ti.select(m10 > 0.0, m10, 1.0) + 1.0 / ti.select(m11 > 0.0, m11, 1.0))
        mxz = ti.select(low > 0.0, 4.0 / inv, 0.0)
        sxz[dst, s, i, j] = sxz[src, s, i, j] + h * mxz * (ezx + exz)


@ti.kernel
def elastic_inject(sxx: ti.template(), szz: ti.template(), vx: ti.template(),
                   vz: ti.template(), rho: ti.template(), amp: ti.template(),
                   pos: ti.template(), w: ti.template(), kind: ti.template(),
                   scale: ti.f64, dst: ti.i32, step: ti.i32):
    """Add the sources of ``step`` (``scale = dt / cell``; forces also divided by rho).

    ``kind`` 0: explosive (``sxx``, ``szz``); 1: vertical force (``vz``); 2: horizontal
    force (``vx``).
    """
    for s, n, a, b in ti.ndrange(pos.shape[0], pos.shape[1], w.shape[3], w.shape[3]):
        i, j = pos[s, n][0] + a, pos[s, n][1] + b
        v = ti.cast(scale, sxx.dtype) * amp[s, n, step] * w[s, n, 0, a] * w[s, n, 1, b]
        if ti.static(kind == 0):
            sxx[dst, s, i, j] += v
            szz[dst, s, i, j] += v
        elif ti.static(kind == 1):
            vz[dst, s, i, j] += v / rho[i, j]
        else:
            vx[dst, s, i, j] += v / rho[i, j]


@ti.kernel
def elastic_record(sxx: ti.template(), szz: ti.template(), vx: ti.template(),
                   vz: ti.template(), p_out: ti.template(), vx_out: ti.template(),
                   vz_out: ti.template(), pos_p: ti.template(), w_p: ti.template(),
                   pos_x: ti.template(), w_x: ti.template(), pos_z: ti.template(),
                   w_z: ti.template(), lvl: ti.i32, t: ti.i32):
    """Receivers at time ``t``: pressure ``-(sxx + szz) / 2``, ``vx`` and ``vz``.

    Each at its own points (cells, or the staggered velocity points) with its own
    interpolation stencil.
    """
    for s, n in ti.ndrange(pos_p.shape[0], pos_p.shape[1]):
        p_out[t, s, n] = 0.0
        vx_out[t, s, n] = 0.0
        vz_out[t, s, n] = 0.0
    for s, n, a, b in ti.ndrange(pos_p.shape[0], pos_p.shape[1], w_p.shape[3], w_p.shape[3]):
        i, j = pos_p[s, n][0] + a, pos_p[s, n][1] + b
        p_out[t, s, n] += -0.5 * w_p[s, n, 0, a] * w_p[s, n, 1, b] * (sxx[lvl, s, i, j]
                                                                       + szz[lvl, s, i, j])
        i, j = pos_x[s, n][0] + a, pos_x[s, n][1] + b
        vx_out[t, s, n] += w_x[s, n, 0, a] * w_x[s, n, 1, b] * vx[lvl, s, i, j]
        i, j = pos_z[s, n][0] + a, pos_z[s, n][1] + b
        vz_out[t, s, n] += w_z[s, n, 0, a] * w_z[s, n, 1, b] * vz[lvl, s, i, j]
