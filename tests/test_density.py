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
        sweep = fd_sweep(value, rho, e, res.density_gradient, steps=[1.0, 1e-1, 1e-2])
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
    # One step's reverse (hand-written gathers) against Taichi's autodiff of the same two
    # forward kernels, for random cotangents on everything the step writes.
    import taichi as ti

    from diffsim import rollout
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

    def copy(a):
        arr = np.asarray(a.to_numpy() if hasattr(a, "to_numpy") else a)
        out = ti.ndarray(ti.f64, arr.shape, needs_grad=True)
        out.from_numpy(np.ascontiguousarray(arr))
        out.grad.from_numpy(np.zeros(arr.shape))
        return out

    p, psi, zeta, flux, kk, buoy, sg, ih = (copy(a) for a in (s.p, s.psi, s.zeta, s.flux, s.kk,
                                                                s.buoy, s.sg, s.ih))
    ah, bh = (copy(a) for a in s._prof_nd["half"])
    pa, pb = (copy(a) for a in s._prof_nd["cell"])
    dummy = copy(np.zeros((1,) * (ndim + 1)))
    first = (p, psi, flux, buoy, ah, bh, ih, cur, src, dst, s._s1, True)
    second = (p, psi, zeta, flux, kk, sg, pa, pb, ih, dummy, dummy, prv, cur, nxt, src, dst,
              s._s1, s._c2, s._halo, True, s.sponge, False, False)
    K.memory(*first)
    K.update(*second)
    cot = {}
    for name, arr, level in (("p", p, nxt), ("psi", psi, dst), ("zeta", zeta, dst)):
        c = np.zeros(arr.shape)
        c[level] = rng.standard_normal(arr.shape[1:])
        cot[name] = c
        arr.grad.from_numpy(c)
    K.update.grad(*second)
    K.memory.grad(*first)
    s.begin_reverse({})
    s.pg.from_numpy(cot["p"])
    s.psig.from_numpy(cot["psi"])
    s.zetag.from_numpy(cot["zeta"])
    s.reverse(step, None, measure=False)
    inner = (slice(None), slice(None), *[slice(s._halo, -s._halo)] * ndim)
    pairs = [(p.grad.to_numpy()[[prv, cur]][inner], s.pg.to_numpy()[[prv, cur]][inner]),
             (psi.grad.to_numpy()[src], s.psig.to_numpy()[src]),
             (zeta.grad.to_numpy()[src], s.zetag.to_numpy()[src]),
             (kk.grad.to_numpy(), s.kkg.to_numpy().sum(axis=0)),
             (buoy.grad.to_numpy(), s.buoyg.to_numpy().sum(axis=1))]
    for k, (auto, hand) in enumerate(pairs):
        scale = float(np.abs(auto).max())
        if k == 0 or not s.sponge:      # a sponge has no PML memory (its adjoints are zero)
            assert scale > 0, k
        assert np.max(np.abs(auto - hand)) <= 1e-12 * max(scale, 1e-300), k
