"""Kernels of a mass-spring system: spring forces gathered per particle, semi-implicit Euler.

The package mirrors :mod:`diffsim.springs`.

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

Modules: :mod:`.forward` (the step and its building blocks, the autodiff reference),
:mod:`.adjoint` (the gather adjoint), :mod:`.fused` (whole ranges on NumPy arrays),
:mod:`.buffers` (checkpoints and transfers).
"""

from diffsim.kernels.springs.adjoint import spring_adjoint as spring_adjoint
from diffsim.kernels.springs.buffers import spring_download_gradients as spring_download_gradients
from diffsim.kernels.springs.buffers import spring_load as spring_load
from diffsim.kernels.springs.buffers import spring_save as spring_save
from diffsim.kernels.springs.buffers import spring_set_initial as spring_set_initial
from diffsim.kernels.springs.buffers import spring_upload_params as spring_upload_params
from diffsim.kernels.springs.buffers import spring_upload_topology as spring_upload_topology
from diffsim.kernels.springs.buffers import spring_zero_adjoints as spring_zero_adjoints
from diffsim.kernels.springs.forward import spring_integrate as spring_integrate
from diffsim.kernels.springs.forward import spring_record as spring_record
from diffsim.kernels.springs.forward import spring_scatter_force as spring_scatter_force
from diffsim.kernels.springs.forward import spring_step as spring_step
from diffsim.kernels.springs.forward import spring_zero_force as spring_zero_force
from diffsim.kernels.springs.fused import spring_fused as spring_fused
