"""Moving a spring stepper's values in and out: checkpoints, uploads, zeroing, downloads.

One compiled kernel per transfer instead of one Taichi helper call per field.
"""

import taichi as ti


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
