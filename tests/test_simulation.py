"""The one front-end shape: ``Simulation.simulate / vjp / value_and_grad / update`` for every physics.

Each physics is checked through the public protocol only: the functional API equals the
simulation bit for bit, ``vjp`` is the exact adjoint (finite differences of
``<cotangent, outputs>``, a Taylor-remainder slope of 2, checkpointed equal to
store-all), ``update`` equals a fresh simulation, and bad arguments name the fix.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import chain_problem, l2_loss
from springs_cases import contact_inputs, contact_system

import diffsim
from diffsim import Binomial, StoreAll, Tape, Uniform, ValueAndGrad, chain, springs, wave
from diffsim.gradcheck import fd_sweep, taylor_test
from diffsim.losses import L2, CenterOfMass, FinalPosition
from diffsim.stores import HostStore


def smooth(shape: tuple[int, ...], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    f = rng.normal(size=shape)
    for axis in range(len(shape)):
        f = np.apply_along_axis(lambda v: np.convolve(v, [0.25, 0.5, 0.25], mode="same"), axis, f)
    return f


def acoustic_args(seed: int = 1) -> tuple[tuple, dict]:
    shape, h, dt, nt = (14, 16), 10.0, 1e-3, 40
    vel = 2000.0 + 120.0 * smooth(shape, seed)
    sources = np.array([[30.0, 50.0], [60.0, 100.0]])
    receivers = np.array([[20.0, x] for x in (20.0, 70.0, 130.0)])
    wavelet = wave.ricker(25.0, dt, nt, peak_time=0.03)
    return (vel, h, dt, wavelet, sources, receivers), dict(order=4, pml_width=4,
                                                         pml_frequency=25.0)


@pytest.fixture(scope="module")
def acoustic():
    args, opts = acoustic_args()
    with wave.Simulation(*args, **opts) as sim:
        yield sim, args, opts


def test_acoustic_functional_api_is_the_simulation(acoustic) -> None:
    sim, args, opts = acoustic
    traces = sim.simulate()["traces"]
    assert traces.shape == (2, 3, 40) == sim.output_shapes()["traces"]
    np.testing.assert_array_equal(traces, wave.simulate(*args, **opts))
    observed = 0.5 * traces
    old = wave.misfit_gradient(*args, observed, checkpoint=StoreAll(), **opts)
    res = sim.value_and_grad(L2(observed), wrt=("velocity", "wavelet"), checkpoint=StoreAll())
    assert isinstance(res, ValueAndGrad)
    assert res.loss == old.loss
    np.testing.assert_array_equal(res.grads["velocity"], old.gradient)
    # the wavelet was given as [nt]: its gradient is summed over shots and sources
    np.testing.assert_array_equal(res.grads["wavelet"], old.wavelet_gradient.sum(axis=(0, 1)))
    np.testing.assert_array_equal(res.outputs["traces"], old.traces)
    # vjp with the residual as cotangent is the same gradient
    g = sim.vjp({"traces": traces - observed}, checkpoint=StoreAll())
    np.testing.assert_array_equal(g["velocity"], old.gradient)
    assert set(g) == {"velocity"}
    # any callable loss
    loss, grads = sim.value_and_grad(
        lambda out: (0.5 * float(np.sum((out["traces"] - observed) ** 2)),
                     {"traces": out["traces"] - observed}), checkpoint=StoreAll())
    assert loss == old.loss
    np.testing.assert_array_equal(grads["velocity"], old.gradient)


def test_acoustic_vjp_is_exact(acoustic) -> None:
    sim, args, _ = acoustic
    v0 = args[0]
    rng = np.random.default_rng(4)
    cot = rng.normal(size=sim.output_shapes()["traces"])
    g = sim.vjp({"traces": cot}, wrt=("velocity",), checkpoint=StoreAll())["velocity"]

    def fun(v: np.ndarray) -> float:
        sim.update(velocity=v)
        return float(np.sum(cot * sim.simulate()["traces"]))

    direction = smooth(v0.shape, 7)
    try:
        sweep = fd_sweep(fun, v0, direction, g)
        assert sweep.best_error < 1e-6, sweep.table()
        taylor = taylor_test(fun, v0, direction, g, h0=2.0)
        assert abs(taylor.second_order - 2.0) < 0.1, taylor.table()
    finally:
        sim.update(velocity=v0)
    for schedule in (Uniform(every=7), Binomial(slots=4)):
        got = sim.vjp({"traces": cot}, checkpoint=schedule)["velocity"]
        np.testing.assert_array_equal(got, g)
    host = sim.vjp({"traces": cot}, checkpoint=Binomial(slots=4), store=HostStore())
    np.testing.assert_array_equal(host["velocity"], g)
    assert sim.last_report.store == "host"


def test_acoustic_update_equals_fresh_simulation(acoustic) -> None:
    sim, args, opts = acoustic
    opts = dict(opts, pml_velocity=float(args[0].max()))  # the PML a built simulation keeps
    v2 = args[0] * 1.02
    w2 = args[3] * 0.5
    sim.update(velocity=v2, wavelet=w2)
    try:
        with wave.Simulation(v2, *args[1:3], w2, *args[4:], **opts) as fresh:
            np.testing.assert_array_equal(sim.simulate()["traces"], fresh.simulate()["traces"])
        np.testing.assert_array_equal(sim.parameters()["velocity"], v2)
    finally:
        sim.update(velocity=args[0], wavelet=args[3])


def test_acoustic_wavelet_gradient_per_shot(acoustic) -> None:
    _, args, opts = acoustic
    nt = args[3].size
    per_shot = np.stack([args[3], 0.7 * args[3]])              # [shot, nt]
    with wave.Simulation(*args[:3], per_shot, *args[4:], **opts) as sim:
        cot = np.ones(sim.output_shapes()["traces"])
        g = sim.vjp({"traces": cot}, wrt="wavelet")["wavelet"]
        assert g.shape == (2, nt)
        # traces are linear in the wavelet: <cot, traces(w)> = <g, w>
        assert float(np.sum(cot * sim.simulate()["traces"])) == pytest.approx(
            float(np.sum(g * per_shot)), rel=1e-12)


def test_errors_name_the_fix(acoustic) -> None:
    sim, _, _ = acoustic
    shape = sim.output_shapes()["traces"]
    with pytest.raises(ValueError,
                       match=r"cotangent for unknown output 'receivers'; the outputs are \['traces'\]"):
        sim.vjp({"receivers": np.zeros(shape)})
    with pytest.raises(ValueError,
                       match=r"cotangent for output 'traces' has shape \(1,\); expected \(2, 3, 40\)"):
        sim.vjp({"traces": np.zeros(1)})
    with pytest.raises(ValueError, match="contains NaN or Inf"):
        sim.vjp({"traces": np.full(shape, np.nan)})
    with pytest.raises(TypeError, match="cotangents must be a dict"):
        sim.vjp(np.zeros(shape))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="wrt contains 'stiffness'; choose from velocity, wavelet"):
        sim.vjp({"traces": np.zeros(shape)}, wrt=("stiffness",))
    with pytest.raises(ValueError, match="wrt contains 'density' but this simulation has constant "
                                         "density; pass density="):
        sim.vjp({"traces": np.zeros(shape)}, wrt=("density",))
    with pytest.raises(ValueError, match=r"cannot update \['density'\]; allowed: velocity, wavelet"):
        sim.update(density=1.0)
    with pytest.raises(ValueError, match=r"observed has shape \(2, 3\); expected \(2, 3, 40\)"):
        sim.value_and_grad(L2(np.zeros((2, 3))))
    with pytest.raises(TypeError, match=r"a loss must return \(value, cotangents\)"):
        sim.value_and_grad(lambda out: 1.0)
    with pytest.raises(ValueError, match="wavelet has shape"):
        sim.update(wavelet=np.zeros(3))


# -- springs --------------------------------------------------------------------------
STEPS, DT = 30, 2e-3


def test_springs_same_shape_as_waves() -> None:
    system = contact_system(2)
    v0, act = contact_inputs(system, STEPS)
    target = system.positions + 0.01
    with springs.Simulation(system, STEPS, DT, velocities=v0, actuation=act) as sim:
        out = sim.simulate()
        traj = springs.simulate(system, STEPS, DT, v0, actuation=act)
        np.testing.assert_array_equal(out["positions"], traj.positions)
        np.testing.assert_array_equal(out["velocities"], traj.velocities)
        assert sim.output_shapes()["positions"] == out["positions"].shape
        wrt = ("stiffness", "mass", "positions", "actuation")
        ref = springs.value_and_grad(system, STEPS, DT, target=target, wrt=wrt, velocities=v0,
                                     actuation=act, checkpoint=StoreAll())
        res = sim.value_and_grad(FinalPosition(target), wrt=wrt, checkpoint=StoreAll())
        assert res.loss == ref.loss
        for name in wrt:
            np.testing.assert_array_equal(res.grads[name], ref.grads[name])
        np.testing.assert_array_equal(res.report.costate, ref.report.costate)
        assert np.all(np.isfinite(res.report.costate))
        # vjp over every level with the final-position residual as cotangent
        cot = np.zeros(out["positions"].shape)
        cot[-1] = out["positions"][-1] - target
        g = sim.vjp({"positions": cot}, wrt=wrt, checkpoint=StoreAll())
        for name in wrt:
            np.testing.assert_allclose(g[name], ref.grads[name], rtol=1e-12, atol=1e-14)



@pytest.mark.parametrize("backend", ["fused", "fields"])
def test_springs_vjp_of_positions_and_velocities_is_exact(backend: str) -> None:
    """<cx, x(θ)> + <cv, v(θ)> over every level: FD, Taylor slope 2, schedules and backends."""
    system = contact_system(2)
    v0, act = contact_inputs(system, STEPS)
    rng = np.random.default_rng(3)
    with springs.Simulation(system, STEPS, DT, velocities=v0, actuation=act,
                            backend=backend) as sim:
        shape = sim.output_shapes()["positions"]
        cot = {"positions": rng.normal(size=shape), "velocities": rng.normal(size=shape)}
        wrt = ("stiffness", "damping", "positions", "velocities")
        g = sim.vjp(cot, wrt=wrt, checkpoint=StoreAll())
        again = sim.vjp(cot, wrt=wrt, checkpoint=Binomial(slots=3))
        for name in wrt:
            np.testing.assert_array_equal(again[name], g[name], err_msg=name)
        only_v = sim.vjp({"velocities": cot["velocities"]}, wrt=("damping",))
        assert np.abs(only_v["damping"]).max() > 0

        def functional(k: np.ndarray) -> float:
            sim.update(stiffness=k)
            out = sim.simulate()
            return float(np.sum(cot["positions"] * out["positions"])
                         + np.sum(cot["velocities"] * out["velocities"]))

        k0 = np.array(system.stiffness, dtype=np.float64)
        direction = rng.normal(size=k0.shape) * k0 * 1e-3
        sweep = fd_sweep(functional, k0, direction, g["stiffness"])
        assert sweep.best_error < 1e-6, sweep.table()
        taylor = taylor_test(functional, k0, direction, g["stiffness"], h0=1.0)
        assert taylor.second_order == pytest.approx(2.0, abs=0.2), taylor.table()
        sim.update(stiffness=k0)
        # a loss that reads the velocities: the final kinetic energy
        mass = np.broadcast_to(np.asarray(system.mass, dtype=np.float64), (system.n_particles,))

        def kinetic(outputs):
            v = np.asarray(outputs["velocities"], dtype=np.float64)
            cv = np.zeros_like(v)
            cv[-1] = mass[:, None] * v[-1]
            return 0.5 * float(np.sum(mass[:, None] * v[-1] ** 2)), {"velocities": cv}

        res = sim.value_and_grad(kinetic, wrt=("stiffness",), checkpoint=Uniform(every=7))
        ref = sim.vjp({"velocities": kinetic(sim.simulate())[1]["velocities"]},
                      wrt=("stiffness",), checkpoint=StoreAll())
        assert res.loss == kinetic(sim.simulate())[0]
        np.testing.assert_array_equal(res.grads["stiffness"], ref["stiffness"])


def test_springs_velocity_cotangents_equal_on_both_backends() -> None:
    system = contact_system(2)
    v0, act = contact_inputs(system, STEPS)
    grads = []
    for backend in ("fused", "fields"):
        with springs.Simulation(system, STEPS, DT, velocities=v0, actuation=act,
                                backend=backend) as sim:
            shape = sim.output_shapes()["velocities"]
            cot = {"velocities": np.random.default_rng(4).normal(size=shape)}
            grads.append(sim.vjp(cot, wrt=("stiffness", "mass", "velocities", "actuation"),
                                 checkpoint=Binomial(slots=4)))
    for name in grads[0]:
        np.testing.assert_array_equal(grads[0][name], grads[1][name], err_msg=name)


def test_springs_partials_and_callable_loss() -> None:
    system = contact_system(2)
    with springs.Simulation(system, STEPS, DT) as sim:
        ref = sim.value_and_grad(CenterOfMass((1.0, 0.0)), wrt=("mass", "stiffness"))
        loss = CenterOfMass((1.0, 0.0))
        loss.bind(sim)

        def plain(outputs):  # the same loss as a plain callable reading every level
            return loss(outputs)

        got = sim.value_and_grad(plain, wrt=("mass", "stiffness"))
        assert got.loss == pytest.approx(ref.loss, rel=1e-13)
        np.testing.assert_allclose(got.grads["stiffness"], ref.grads["stiffness"], rtol=1e-11)
        # a plain callable has no partials: the mass gradient lacks the direct term
        direct = loss.partials()["mass"]
        np.testing.assert_allclose(got.grads["mass"] + direct, ref.grads["mass"], rtol=1e-10,
                                   atol=1e-14)


# -- chain ----------------------------------------------------------------------------
def test_chain_same_shape() -> None:
    kwargs, observed = chain_problem()
    with chain.Simulation(**kwargs) as sim:
        tape = Tape(sim.chain, checkpoint=StoreAll())
        value, grads = tape.value_and_grad(l2_loss(observed))  # a ValueAndGrad unpacks
        res = sim.value_and_grad(L2(observed, output="positions"),
                                 wrt=("stiffness", "mass", "beta", "forcing"),
                                 checkpoint=Binomial(slots=5))
        assert res.loss == value
        for name in res.grads:
            np.testing.assert_array_equal(res.grads[name], grads[name])
        np.testing.assert_array_equal(sim.simulate()["positions"], res.outputs["positions"])
        k0 = sim.parameters()["stiffness"]
        cot = np.random.default_rng(2).normal(size=sim.output_shapes()["positions"])
        g = sim.vjp({"positions": cot}, wrt="stiffness")["stiffness"]

        def fun(k: np.ndarray) -> float:
            sim.update(stiffness=k)
            return float(np.sum(cot * sim.simulate()["positions"]))

        sweep = fd_sweep(fun, k0, np.linspace(1.0, 2.0, k0.size), g)
        assert sweep.best_error < 1e-7, sweep.table()
        sim.update(stiffness=k0)


@pytest.mark.parametrize("module", [wave, springs, chain], ids=lambda m: m.__name__)
def test_every_physics_has_the_four_methods(module) -> None:
    cls = module.Simulation
    assert issubclass(cls, diffsim.Simulation)
    for name in ("simulate", "vjp", "value_and_grad", "update", "parameters", "output_shapes"):
        assert callable(getattr(cls, name)), name
    assert set(cls.default_wrt) <= set(cls.parameter_names)


def test_snapshots_show_the_state_and_return_the_outputs(acoustic) -> None:
    sim, args, opts = acoustic
    seen: list[tuple[int, np.ndarray]] = []
    out = sim.snapshots(10, lambda t, state: seen.append((t, state["wavefield"])))
    np.testing.assert_array_equal(out["traces"], sim.simulate()["traces"])
    assert [t for t, _ in seen] == [10, 20, 30]                     # nt 40: 39 steps
    assert seen[0][1].shape == (2, *args[0].shape) and np.abs(seen[-1][1]).max() > 0
    # the wavefield at a receiver cell is that receiver's trace sample (nearest cell)
    with wave.Simulation(*args, **opts, interpolation="nearest") as near:
        frames: dict[int, np.ndarray] = {}
        traces = near.snapshots(10, lambda t, s: frames.setdefault(t, s["wavefield"]))["traces"]
    at_receiver = np.array([frames[t][:, 2, 13] for t in (10, 20, 30)])  # receiver (20 m, 130 m)
    np.testing.assert_array_equal(at_receiver, traces[:, 2, [10, 20, 30]].T)
    assert np.abs(at_receiver).max() > 0
    system = contact_system(2)
    v0, act = contact_inputs(system, 25)
    with springs.Simulation(system, 25, 2e-3, velocities=v0, actuation=act) as bodies:
        states: dict[int, dict[str, np.ndarray]] = {}
        bodies.snapshots(5, lambda t, s: states.setdefault(t, s))
        full = bodies.simulate()
    assert sorted(states) == [5, 10, 15, 20, 25]
    np.testing.assert_array_equal(states[25]["x"], full["positions"][25])
    np.testing.assert_array_equal(states[10]["v"], full["velocities"][10])
    with pytest.raises(ValueError, match="every=0 must be a positive number of steps"):
        sim.snapshots(0, lambda t, s: None)


def test_spring_validation_needs_the_field_backend() -> None:
    system = contact_system(2)
    with springs.Simulation(system, STEPS, DT, backend="fused") as fused, \
            springs.Simulation(system, STEPS, DT, backend="fields") as fields:
        with pytest.raises(ValueError, match="validate=True checks Taichi field kernels; build "
                                             "the stepper with backend='fields'"):
            Tape(fused._stepper(), validate=True)
        with pytest.raises(RuntimeError, match="validation needs Taichi debug mode"):
            Tape(fields._stepper(), validate=True)   # the field backend's own check
