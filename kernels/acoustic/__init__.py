"""Kernels of the constant-density acoustic wave equation, 2D and 3D, any even order.

Equation: ``u_tt = c^2 lap(u) + s(t) delta(x - x_s)``, leapfrog in time.

Lane layout (SIMD): the x axis is packed into vectors of ``W`` consecutive cells, so a
wavefield is a ``ti.types.vector(W, real)`` field indexed ``u[level, shot, z[, y], xb]``
with cell ``x`` in block ``xb = (x + W) // W``, lane ``(x + W) % W``. Block 0 and the last
block hold no cells and stay zero; the stencil updates every lane of blocks ``1 ..
nb - 2`` (``nb = u.shape[-1]``) and the x-shifted neighbours of a block are built by
compile-time lane selection from the block and its two neighbours
(:func:`_shift`), which LLVM turns into SIMD shuffles. ``J`` below is a row index
``(shot, z[, y])``; rows run in parallel, the blocks of a row serially.

The update coefficient ``kc = dt^2 c^2`` (a lane field ``[z[, y], xb]``) is zero on the
frame of ``halo`` cells around the padded grid and on the lanes past its end, so those
cells stay zero (the rigid frame behind the PML, or the free surface).

Absorbing boundary: convolutional PML (Pasalic and McGarry 2010 form). Per axis ``d``
with profiles ``a_d, b_d`` (both zero outside the layer) and ``M_d`` the layer's mask::

    psi_d^n  = b_d psi_d^{n-1} + a_d  D1_d u^n
    q_d      = D2_d u^n + M_d D1_d psi_d^n
    zeta_d^n = b_d zeta_d^{n-1} + a_d q_d
    u^{n+1}  = 2 u^n - u^{n-1} + kc sum_d (q_d + zeta_d^n) + dt^2 s^n w / cell

PML memory is stored in strips. For a row axis ``d`` (z, y) a strip keeps the PML rows
of ``d`` (``pm[d] = (lo, lo width, hi start, hi width)``) and every block; for x it keeps
the blocks that overlap the x-PML: ``xs = (xa, xb, nb, count)`` says blocks ``[1, xa)``
and ``[xb, nb - 1)`` (``count`` of them) are stored (strip index :func:`_xstrip`).
Outside the layer ``psi`` and ``zeta`` are zero (``b = a = 0``), so a strip read outside
the storage is zero.

Sponge (``sponge`` in the bundle): no PML terms; the update is damped cell by cell,
``u^{n+1} = g (2 u^n - g u^{n-1} + kc lap)`` (Cerjan et al. 1985), ``g = sg``.
"""

from diffsim.kernels.acoustic._blocks import Arrays as Arrays
from diffsim.kernels.acoustic.adjoint import adjoint_step as adjoint_step
from diffsim.kernels.acoustic.arena import arena_arrays as arena_arrays
from diffsim.kernels.acoustic.arena import arena_kernels as arena_kernels
from diffsim.kernels.acoustic.forward import copy_state as copy_state
from diffsim.kernels.acoustic.forward import record_traces as record_traces
from diffsim.kernels.acoustic.forward import wave_step as wave_step
from diffsim.kernels.acoustic.forward import wave_steps as wave_steps
