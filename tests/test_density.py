"""Variable-density acoustics and Born modelling: gradients, physics, errors."""

from __future__ import annotations

import numpy as np
import pytest
from wave_truth import smooth_field as smooth

from diffsim import Binomial, StoreAll, Uniform, acoustic
from diffsim.gradcheck import dot_product_test, fd_sweep, taylor_test
from diffsim.losses import L2


def geometry(shape: tuple[int, ...], h: float = 10.0):
    extent = [(n - 1) * h for n in shape]
    sources = np.array([[extent[0] * 0.3, *[e * 0.35 for e in extent[1:]]],
                        [extent[0] * 0.55, *[e * 0.6 for e in extent[1:]]]])
    receivers = np.array([[e * f for e in extent] for f in (0.2, 0.45, 0.8)])
    return sources, receivers


def problem(ndim: int = 2, **options):
    shape = (16, 18) if ndim == 2 else (10, 11, 12)
    dt, nt = 1e-3, 50 if ndim == 2 else 30
    velocity = 2000.0 + 150.0 * smooth(shape, 1)
    density = 1800.0 + 400.0 * smooth(shape, 2)
    sources, receivers = geometry(shape)
    rng = np.random.default_rng(3)
    wavelet = acoustic.ricker(25.0, dt, nt, peak_time=0.03) * (1.0 + 0.1 * rng.random(nt))
    kwargs = dict(order=4, pml_width=4)
    kwargs.update(options)
    args = (10.0, dt, wavelet, sources, receivers)
    observed = acoustic.simulate(velocity * 1.02, *args, density=density * 0.95, **kwargs)
    return velocity, density, args, kwargs, observed


# order 4 runs by default; the others are slow-marked (each order and boundary compiles
# its own cell kernels: a cold run pays for every one)
CASES = [dict(order=4, pml_width=4),
         pytest.param(dict(order=8, pml_width=3, free_surface=True), marks=pytest.mark.slow),
         pytest.param(dict(order=2, boundary="sponge", pml_width=5), marks=pytest.mark.slow),
         pytest.param(dict(order=6, pml_width=(3, 4, 5, 2)), marks=pytest.mark.slow)]


@pytest.mark.parametrize("options", CASES, ids=repr)
def test_density_and_velocity_gradients_fd_and_taylor(options) -> None:
    vel, rho, args, kwargs, observed = problem(**options)
    sim = acoustic.Simulation(vel, *args, density=rho, **kwargs)
    res = sim.value_and_grad(L2(observed), wrt=("velocity", "density"), checkpoint=StoreAll())
    for name, x0 in (("velocity", vel), ("density", rho)):
        grad = res.grads[name]
        assert grad.shape == x0.shape and np.any(grad != 0)

        def value(x: np.ndarray, name=name) -> float:
            sim.update(**{name: x})
            out = sim.simulate()["traces"]
            return 0.5 * float(np.sum((out - observed) ** 2))

        direction = smooth(x0.shape, 7)
        sweep = fd_sweep(value, x0, direction, grad)
        assert sweep.best_error < 1e-6, (name, sweep.table())
        taylor = taylor_test(value, x0, direction, grad, h0=0.02 * float(np.abs(x0).max()) / 10)
        assert abs(taylor.second_order - 2.0) < 0.1, (name, taylor.table())
        sim.update(**{name: x0})


@pytest.mark.slow   # a 3D compile
def test_density_gradient_single_cells_and_3d() -> None:
    vel, rho, args, kwargs, observed = problem()
    res = acoustic.misfit_gradient(vel, *args, observed, density=rho, checkpoint=StoreAll(),
                                   **kwargs)
    assert res.density_gradient is not None

    def value(x: np.ndarray) -> float:
        out = acoustic.simulate(vel, *args, density=x, **kwargs)
        return 0.5 * float(np.sum((out - observed) ** 2))

    for cell in [(0, 0), (4, 5), (8, 9), (15, 17)]:    # PML corner, near a source, middle, edge
        e = np.zeros_like(rho)
        e[cell] = 1.0
        sweep = fd_sweep(value, rho, e, res.density_gradient, steps=[10.0, 3.0, 1.0])
        assert sweep.best_error < 1e-5, (cell, sweep.table())
    vel3, rho3, args3, kwargs3, observed3 = problem(3)
    sim = acoustic.Simulation(vel3, *args3, density=rho3, **kwargs3)
    res3 = sim.value_and_grad(L2(observed3), wrt=("velocity", "density"))
    for name, x0 in (("velocity", vel3), ("density", rho3)):

        def value3(x: np.ndarray, name=name) -> float:
            sim.update(**{name: x})
            return 0.5 * float(np.sum((sim.simulate()["traces"] - observed3) ** 2))

        taylor = taylor_test(value3, x0, smooth(x0.shape, 4), res3.grads[name],
                             h0=0.002 * float(np.abs(x0).max()), count=4)
        assert abs(taylor.second_order - 2.0) < 0.15, (name, taylor.table())
        sim.update(**{name: x0})


@pytest.mark.parametrize("schedule", [Uniform(every=7), Binomial(slots=3)], ids=repr)
def test_density_checkpoints_equal_store_all_bitwise(schedule) -> None:
    vel, rho, args, kwargs, observed = problem(order=4, pml_width=3, free_surface=True)
    sim = acoustic.Simulation(vel, *args, density=rho, **kwargs)
    wrt = ("velocity", "density", "wavelet")
    ref = sim.value_and_grad(L2(observed), wrt=wrt, checkpoint=StoreAll())
    got = sim.value_and_grad(L2(observed), wrt=wrt, checkpoint=schedule)
    assert got.loss == ref.loss
    for name in wrt:
        assert np.array_equal(got.grads[name], ref.grads[name]), name
    assert got.report.forward_steps == schedule.cost(sim.stepper.steps).forward_steps


@pytest.mark.parametrize("split", [(2, 0), (2, 2)])
def test_worker_tasks_give_the_same_bits(monkeypatch, split: tuple[int, int]) -> None:
    # Shots dealt whole to worker tasks, or every shot in bands of rows with barriers
    # between the passes: traces, gradients and Born traces bit for bit against one
    # worker, under a schedule with restores and store-all.
    from diffsim import _parallel
    from diffsim.acoustic import density as engine

    if _parallel.threads() < 2:
        pytest.skip("needs two CPU threads (a barrier waits for every worker)")
    vel, rho, args, kwargs, observed = problem(order=4, pml_width=3)
    dc = 30.0 * smooth(vel.shape, 11)
    wrt = ("velocity", "density", "wavelet")
    runs = {}
    for case in ((1, 2), split):
        monkeypatch.setattr(engine, "split", lambda s, c, case=case: _parallel.Split(*case))
        with acoustic.Simulation(vel, *args, density=rho, **kwargs) as sim:
            runs[case] = (sim.simulate()["traces"],
                          sim.value_and_grad(L2(observed), wrt=wrt, checkpoint=Binomial(slots=3)),
                          sim.value_and_grad(L2(observed), wrt=wrt, checkpoint=StoreAll()),
                          acoustic.born(vel, dc, *args, density=rho, **kwargs))
    (t1, r1, s1, b1), (t2, r2, s2, b2) = runs[(1, 2)], runs[split]
    np.testing.assert_array_equal(t1, t2)
    np.testing.assert_array_equal(b1, b2)
    for one, many in ((r1, r2), (s1, s2), (r1, s1)):
        assert one.loss == many.loss
        for name in wrt:
            np.testing.assert_array_equal(one.grads[name], many.grads[name])


def test_impedance_parametrisation_gradient() -> None:
    vel, rho, args, kwargs, observed = problem()
    sim = acoustic.Simulation(vel, *args, density=rho, parametrisation="velocity-impedance",
                              **kwargs)
    z0 = sim.parameters()["impedance"]
    assert np.allclose(z0, rho * vel)
    res = sim.value_and_grad(L2(observed), wrt=("velocity", "impedance"), checkpoint=StoreAll())
    for name, x0 in (("velocity", vel), ("impedance", z0)):

        def value(x: np.ndarray, name=name) -> float:
            sim.update(**{name: x})
            return 0.5 * float(np.sum((sim.simulate()["traces"] - observed) ** 2))

        sweep = fd_sweep(value, x0, smooth(x0.shape, 8), res.grads[name])
        assert sweep.best_error < 1e-6, (name, sweep.table())
        sim.update(**{name: x0})
    # a new velocity keeps the impedance: the density follows
    sim.update(velocity=vel * 1.1)
    assert np.allclose(sim.parameters()["impedance"], z0)


@pytest.mark.slow   # compiles the arena engine at orders 2 and 8
def test_constant_density_reduces_to_the_constant_density_engine() -> None:
    shape = (40, 44)
    vel = 2000.0 + 200.0 * smooth(shape, 3)
    sources, receivers = geometry(shape)
    dt, nt = 1e-3, 200
    w = acoustic.ricker(12.0, dt, nt)
    args = (10.0, dt, w, sources, receivers)
    # Order 2: D- D+ is the centred second difference, so a rigid box gives the same scheme.
    ref = acoustic.simulate(vel, *args, order=2, pml_width=0)
    got = acoustic.simulate(vel, *args, density=np.full(shape, 1234.0), order=2, pml_width=0)
    assert np.max(np.abs(got - ref)) < 1e-12 * np.max(np.abs(ref))
    # Order 8 with C-PML: a different stencil and PML, the same waves (well resolved).
    ref = acoustic.simulate(vel, *args, order=8, pml_width=10)
    got = acoustic.simulate(vel, *args, density=np.full(shape, 1234.0), order=8, pml_width=10)
    assert np.max(np.abs(got - ref)) < 5e-3 * np.max(np.abs(ref))


@pytest.mark.parametrize("rho2", [2500.0, pytest.param(400.0, marks=pytest.mark.slow)])
def test_normal_incidence_reflection_coefficient(rho2: float) -> None:
    # A plane wave (a line of sources across the grid) meets a flat density contrast
    # (same velocity); the receiver between them sees the direct wave, then R times it.
    nz, nx, h, c, rho1 = 100, 220, 10.0, 2000.0, 1000.0
    vel = np.full((nz, nx), c)
    rho = np.full((nz, nx), rho1)
    rho[60:] = rho2
    dt, nt = 1.5e-3, 500
    w = acoustic.ricker(10.0, dt, nt)
    xs = np.arange(nx) * h
    sources = np.stack([np.full(nx, 200.0), xs], -1)[None]
    receivers = np.array([[300.0, xs[nx // 2]]])
    trace = acoustic.simulate(vel, h, dt, w, sources, receivers, density=rho, order=8,
                              pml_width=20)[0, 0]
    t = np.arange(nt) * dt
    direct = trace[t < 0.2]
    reflected = trace[(t > 0.25) & (t < 0.5)]
    r = (rho2 - rho1) / (rho2 + rho1)
    ratio = reflected[np.argmax(np.abs(reflected))] / direct[np.argmax(np.abs(direct))]
    assert abs(ratio - r) < 0.01 * abs(r) + 1e-3, (ratio, r)


@pytest.mark.parametrize("density", [pytest.param(False, marks=pytest.mark.slow), True])
@pytest.mark.parametrize("options", [dict(order=4, pml_width=5),
                                     pytest.param(dict(order=2, boundary="sponge", pml_width=5,
                                                       free_surface=True),
                                                  marks=pytest.mark.slow)], ids=repr)
def test_born_dot_product_and_linearisation(density: bool, options) -> None:
    vel, rho, args, kwargs, _ = problem(**options)
    rho_arg = rho if density else None
    rng = np.random.default_rng(5)
    dc = 30.0 * smooth(vel.shape, 11)
    op = acoustic.Born(vel, dc, *args, density=rho_arg, **kwargs)
    jd = op.simulate()["traces"]
    assert np.any(jd != 0)

    def forward(x: np.ndarray) -> np.ndarray:
        op.update(scatter=x)
        return op.simulate()["traces"]

    def adjoint(y: np.ndarray) -> np.ndarray:
        return op.vjp({"traces": y}, checkpoint=Binomial(slots=4))["scatter"]

    result = dot_product_test(forward, adjoint, rng.normal(size=vel.shape),
                              rng.normal(size=jd.shape))
    assert result.relative_error < 1e-10, result
    # Born traces are the linearisation: ||F(c + e dc) - F(c) - e J dc|| = O(e^2).
    f0 = acoustic.simulate(vel, *args, density=rho_arg, **kwargs)
    errors = [np.linalg.norm(acoustic.simulate(vel + e * dc, *args, density=rho_arg, **kwargs)
                             - f0 - e * jd) for e in (1.0, 0.5, 0.25)]
    slopes = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    assert np.all(np.abs(slopes - 2.0) < 0.2), (errors, slopes)
    np.testing.assert_allclose(acoustic.born(vel, dc, *args, density=rho_arg, **kwargs), jd,
                               rtol=0, atol=1e-14 * np.abs(jd).max())


def test_density_errors_name_the_value_and_the_fix() -> None:
    vel, rho, args, kwargs, observed = problem()
    with pytest.raises(ValueError, match=r"density has shape \(3, 3\)"):
        acoustic.simulate(vel, *args, density=np.ones((3, 3)), **kwargs)
    bad = rho.copy()
    bad[2, 3] = -5.0
    with pytest.raises(ValueError, match=r"density must be > 0 kg/m\^3; found -5.0 at index \(2, 3\)"):
        acoustic.simulate(vel, *args, density=bad, **kwargs)
    bad[2, 3] = np.nan
    with pytest.raises(ValueError, match=r"density is not finite at index \(2, 3\)"):
        acoustic.Simulation(vel, *args, density=bad, **kwargs)
    with pytest.warns(UserWarning, match="g/cm\\^3"):
        acoustic.Simulation(vel, *args, density=rho / 1000.0, **kwargs)
    sim = acoustic.Simulation(vel, *args, **kwargs)
    with pytest.raises(ValueError, match="constant density; pass density="):
        sim.value_and_grad(L2(observed), wrt=("velocity", "density"))
    with pytest.raises(ValueError, match="cannot update \\['density'\\]"):
        sim.update(density=rho)
    with pytest.raises(ValueError, match="needs a density model"):
        acoustic.Simulation(vel, *args, parametrisation="velocity-impedance", **kwargs)
    with pytest.raises(ValueError, match="parametrisation='impedance'"):
        acoustic.Simulation(vel, *args, density=rho, parametrisation="impedance", **kwargs)
    dsim = acoustic.Simulation(vel, *args, density=rho, **kwargs)
    with pytest.raises(ValueError, match="parametrised by velocity and density"):
        dsim.vjp({"traces": observed}, wrt=("impedance",))
    with pytest.raises(ValueError, match="engine='fields': variable density runs on the cell"):
        acoustic.Simulation(vel, *args, density=rho, engine="fields", **kwargs)
    with pytest.raises(ValueError, match="scatter has shape"):
        acoustic.Born(vel, np.zeros((2, 2)), *args, **kwargs)
    with pytest.raises(ValueError, match="dt=0.01 s exceeds the stability"):
        acoustic.simulate(vel, 10.0, 0.01, *args[2:], density=rho, **kwargs)


@pytest.mark.parametrize("ndim,options", [
    (2, dict(order=4, pml_width=3)),
    pytest.param(2, dict(order=8, pml_width=3, free_surface=True), marks=pytest.mark.slow),
    pytest.param(2, dict(order=2, boundary="sponge", pml_width=4), marks=pytest.mark.slow),
    pytest.param(3, dict(order=4, pml_width=2), marks=pytest.mark.slow)], ids=repr)
def test_hand_adjoint_step_matches_taichi_autodiff(ndim: int, options) -> None:
    # One step's reverse (hand-written gathers) against Taichi's autodiff of the same block
    # functions (in flat parallel loops over a copy of the stepper's arena region with
    # gradients), for random cotangents on everything the step writes.
    import taichi as ti

    from diffsim import rollout
    from diffsim._fields import FieldTree
    from diffsim.acoustic import DensityStepper
    from diffsim.kernels.acoustic import cells as K

    rng = np.random.default_rng(0)
    shape = (14, 16) if ndim == 2 else (9, 10, 11)
    vel = 1500.0 + 300.0 * rng.random(shape)
    rho = 1000.0 + 800.0 * rng.random(shape)
    dt, nt, h = 1.2e-3, 30, 10.0
    sources, receivers = geometry(shape)
    s = DensityStepper(vel, rho, h, dt, acoustic.ricker(20.0, dt, nt), sources, receivers,
                       **options)
    rollout(s)
    step = nt - 2
    prv, cur, nxt, src, dst = (step + 2) % 3, step % 3, (step + 1) % 3, step % 2, (step + 1) % 2
    # the stepper's arrays, copied into a field with gradients (offsets from its start)
    base, size = s._base, sum(int(np.prod(v)) for v in s._shapes.values())
    tree = FieldTree()
    arena = tree.field((size,), vector=s.lanes, needs_grad=True)
    rp = tree.field(s._rp.shape, dtype=ti.f64)
    tree.finalize()
    rp.from_numpy(s._rp)
    layout, k = [], 0
    for name, axes in K.cell_arrays(ndim):
        off = s._offset.get(name, base) - base
        layout += [off, *s._shapes.get(name, (1,) * axes)]
    whole = np.empty((size, s.lanes))
    s._kernels["read"](s._arena.field, base, whole)
    arena.from_numpy(whole)
    views = K.cell_views(arena, arena, layout, ndim)
    rows = s._cell_shape
    halo = s.geometry.halo
    all_rows = tuple((0, n) for n in rows[1:-1])
    in_rows = tuple((halo, n - halo) for n in rows[1:-1])
    blocks = (1, rows[-1] - 1)

    @ti.kernel
    def step_kernel():
        f = ti.static(K.cell_bundle(views, ndim=ndim, real=ti.f64, lanes=s.lanes, ih=s._ih,
                                    s1=s._s1, c1=s._c1, c2=s._c2, sponge=s.sponge,
                                    serial=False, rp=rp, xl=s._xl))
        for X in ti.grouped(ti.ndrange((0, rows[0]), *all_rows, blocks)):
            J = ti.Vector([X[i] for i in ti.static(range(ndim))])
            K._memory_block(f, f.bg, cur, src, dst, J, X[ndim], True)
        for X in ti.grouped(ti.ndrange((0, rows[0]), *in_rows, blocks)):
            J = ti.Vector([X[i] for i in ti.static(range(ndim))])
            K._update_block(f, f.bg, prv, cur, nxt, src, dst, J, X[ndim], True, False, False)

    def part(name, level=None):
        """Array ``name`` (or one level) of the copy: its slice of the flat field."""
        off, shp = s._span(name, level)
        n = int(np.prod(shp))
        return slice(off - base, off - base + n), shp

    step_kernel()
    cot = np.zeros((size, s.lanes))
    hand = {}
    for name, level in (("p", nxt), ("psi", dst), ("zeta", dst)):
        sl, shp = part(name, level)
        c = rng.standard_normal((sl.stop - sl.start, s.lanes))
        cot[sl] = c
        hand[name] = (level, c.reshape(*shp, s.lanes))
    arena.grad.from_numpy(cot)
    step_kernel.grad()
    grad = arena.grad.to_numpy()
    s.begin_reverse({})
    for name, (level, c) in hand.items():
        s._write(name + "g", c, level)
    s.reverse(step, None, measure=False)

    def auto(name, level=None):
        sl, shp = part(name, level)
        return grad[sl].reshape(*shp, s.lanes)

    # shot, rows and blocks the step updates (p stays zero on the frame and the zero blocks)
    inner = (slice(None), *[slice(halo, -halo)] * (ndim - 1), slice(1, -1))
    pairs = [(auto("p", lvl)[inner], s._read("pg", lvl)[inner]) for lvl in (prv, cur)]
    pairs += [(auto("psi", src), s._read("psig", src)), (auto("zeta", src), s._read("zetag", src)),
              (auto("kk"), s._read("kkg").sum(axis=0)), (auto("buoy"), s._read("buoyg").sum(axis=1))]
    tree.destroy()
    for k, (a, b) in enumerate(pairs):
        scale = float(np.abs(a).max())
        if k < 2 or not s.sponge:      # a sponge has no PML memory (its adjoints are zero)
            assert scale > 0, k
        assert np.max(np.abs(a - b)) <= 1e-12 * max(scale, 1e-300), (k, np.max(np.abs(a - b)), scale)
