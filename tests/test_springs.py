"""Mass-spring physics against closed forms, and its gradients against finite differences."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import tolerance
from springs_cases import contact_inputs, contact_system, lattice

from diffsim import Binomial, StoreAll, Uniform
from diffsim.gradcheck import fd_sweep, taylor_test
from diffsim.springs import (
    CenterOfMass,
    FinalPosition,
    SpringSimulation,
    SpringSystem,
    Tracking,
    simulate,
    value_and_grad,
)

STEPS, DT = 60, 2e-3
WRT = ("stiffness", "rest_length", "damping", "mass", "positions", "velocities", "actuation")


def zero_crossings(t: np.ndarray, q: np.ndarray) -> np.ndarray:
    up = np.nonzero((q[:-1] < 0) & (q[1:] >= 0))[0]
    return t[up] - q[up] * (t[up + 1] - t[up]) / (q[up + 1] - q[up])


@pytest.mark.parametrize("pinned", [True, False], ids=["anchored", "two-body"])
def test_single_spring_period(pinned: bool) -> None:
    k, m, dt, steps = 40.0, 0.5, 1e-3, 4000
    system = SpringSystem([[0.0, 0.0], [1.0, 0.0]], [[0, 1]], stiffness=k, mass=m,
                          fixed=np.array([pinned, False]))
    traj = simulate(system, steps, dt, velocities=[[0.0, 0.0], [0.05, 0.0]])
    stretch = traj.positions[:, 1, 0] - traj.positions[:, 0, 0] - 1.0
    measured = float(np.mean(np.diff(zero_crossings(traj.times, stretch))))
    reduced = m if pinned else m / 2  # a free pair oscillates with the reduced mass
    omega_dt = np.sqrt(k / reduced) * dt
    discrete = 2 * np.pi * dt / np.arccos(1 - omega_dt**2 / 2)  # symplectic Euler's own period
    assert measured == pytest.approx(discrete, rel=1e-6)
    assert measured == pytest.approx(2 * np.pi * np.sqrt(reduced / k), rel=omega_dt**2)
    assert np.all(traj.positions[:, :, 1] == 0.0)


def test_symplectic_energy_is_bounded_without_drift() -> None:
    pos, springs = lattice(4, 3, seed=3)
    # no gravity: under a constant force symplectic Euler's plain energy drifts by
    # h g^2 t / 2 per unit mass (its modified energy does not)
    system = SpringSystem(pos, springs, stiffness=200.0, mass=0.05)
    v0 = np.random.default_rng(1).normal(0.0, 0.2, pos.shape)
    traj = simulate(system, 20000, 1e-3, velocities=v0)
    e = system.energy(traj)
    scale = np.abs(e - e.min()).max() + abs(e[0])
    assert np.max(np.abs(e - e[0])) / scale < 0.05  # O(dt) oscillation of the modified energy...
    window = len(e) // 10
    assert abs(e[:window].mean() - e[-window:].mean()) / scale < 1e-3  # ...but no drift


def test_damping_dissipates_energy() -> None:
    pos, springs = lattice(3, 3, seed=2)
    rest = np.linalg.norm(pos[springs[:, 1]] - pos[springs[:, 0]], axis=1)
    # start stretched and at rest: no momentum, so all the energy is internal
    system = SpringSystem(1.1 * pos, springs, stiffness=200.0, damping=0.2, mass=0.05,
                          rest_length=rest)
    e = system.energy(simulate(system, 3000, 1e-3))
    assert e[-1] < 0.05 * e[0]


def test_ground_contact_and_friction() -> None:
    pos, springs = lattice(3, 2, seed=1, lift=0.05)
    kw = dict(stiffness=300.0, damping=0.05, mass=0.05, gravity=(0.0, -9.81), ground=0.0)
    v0 = np.tile([1.0, -0.5], (len(pos), 1))
    slippery = simulate(SpringSystem(pos, springs, **kw), 1500, 1e-3, velocities=v0)
    rough = simulate(SpringSystem(pos, springs, friction=0.8, **kw), 1500, 1e-3, velocities=v0)
    for traj in (slippery, rough):
        assert traj.positions[:, :, 1].min() > -1e-12  # never below the ground
    # friction stops the sliding block: it travels less far and its bottom row sticks
    assert rough.positions[-1, :, 0].mean() < slippery.positions[-1, :, 0].mean() - 0.2
    assert np.all(rough.velocities[-1, :3] == 0.0)
    assert np.abs(slippery.velocities[-1, :3, 0]).min() > 0.5


def test_pinned_particles_do_not_move() -> None:
    system = contact_system()
    v0, act = contact_inputs(system, STEPS)
    traj = simulate(system, STEPS, DT, velocities=v0, actuation=act)
    assert np.all(traj.positions[:, -1] == system.positions[-1])
    assert np.all(traj.velocities[:, -1] == 0.0)


def test_actuation_changes_the_rest_length() -> None:
    system = SpringSystem([[0.0, 0.0], [1.0, 0.0]], [[0, 1]], stiffness=50.0, damping=2.0,
                          mass=0.1, fixed=np.array([True, False]), actuators=[0])
    traj = simulate(system, 4000, 1e-3, actuation=np.full((4000, 1), 0.2))
    assert traj.positions[-1, 1, 0] == pytest.approx(1.2, abs=1e-6)  # settles at L0 (1 + a)


def test_tape_forward_equals_simulate_bitwise(case: dict) -> None:
    sim = case["sim"]
    traj = sim.simulate()  # one launch straight through the trajectory arrays
    target = traj.positions[-1] + 0.01
    res = sim.value_and_grad(FinalPosition(target))  # the tape's runs on the state ring
    assert res.loss == 0.5 * np.sum((traj.positions[-1] - target) ** 2)


# -- gradients -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def case():
    system = contact_system()
    v0, act = contact_inputs(system, STEPS)
    traj = simulate(system, STEPS, DT, velocities=v0, actuation=act)
    touching = int(np.sum(traj.positions[:, :, 1] < 2e-3))
    assert touching > 20, "the gradient case must exercise the contact branch"
    target = system.positions + np.array([0.02, 0.01])
    res = value_and_grad(system, STEPS, DT, target=target, wrt=WRT, velocities=v0, actuation=act,
                         checkpoint=StoreAll())
    sim = SpringSimulation(system, STEPS, DT, velocities=v0, actuation=act)
    yield dict(system=system, v0=v0, act=act, target=target, res=res, sim=sim)
    sim.close()


def _loss_at(case: dict, name: str, value: np.ndarray, loss=None) -> float:
    """The loss with one input changed, on the case's reusable simulation (no recompiles)."""
    sim = case["sim"]
    sim.update(**{name: value})
    try:
        traj = sim.simulate()
        if loss is None:
            return 0.5 * float(np.sum((traj.positions[-1] - case["target"]) ** 2))
        return loss(traj, sim.system)
    finally:
        sim.update(**{name: _base(case, name)})


def _base(case: dict, name: str) -> np.ndarray:
    if name == "velocities":
        return case["v0"]
    if name == "actuation":
        return case["act"]
    return getattr(case["system"], name)


@pytest.mark.parametrize("name", WRT)
def test_gradient_against_central_differences(case: dict, name: str) -> None:
    base = _base(case, name)
    grad = case["res"].grads[name]
    assert grad.shape == np.shape(base)
    direction = np.random.default_rng(7).normal(size=np.shape(base))
    if name == "velocities":
        direction[case["system"].fixed] = 0.0
    # small steps: the contact set must not switch inside the stencil
    sweep = fd_sweep(lambda p: _loss_at(case, name, p), base, direction, grad,
                     steps=[1e-5, 3e-6, 1e-6, 3e-7])
    assert sweep.best_error < 1e-6, sweep.table()


@pytest.mark.parametrize("name", ["stiffness", "rest_length", "positions"])
def test_taylor_slopes(case: dict, name: str) -> None:
    base = _base(case, name)
    direction = np.random.default_rng(8).normal(size=np.shape(base))
    result = taylor_test(lambda p: _loss_at(case, name, p), base, direction,
                         case["res"].grads[name],
                         h0=1e-5 * np.linalg.norm(base) / np.linalg.norm(direction), count=4)
    assert abs(result.first_order - 1.0) < 0.1, result.table()
    assert abs(result.second_order - 2.0) < 0.2, result.table()


def test_hand_adjoint_matches_taichi_autodiff(case: dict) -> None:
    res = value_and_grad(case["system"], STEPS, DT, target=case["target"], wrt=WRT,
                         velocities=case["v0"], actuation=case["act"], adjoint="autodiff",
                         checkpoint=StoreAll())
    assert res.loss == pytest.approx(case["res"].loss, rel=1e-14)
    # the costate trace the gather adjoint measures in-kernel equals the tape's reductions
    np.testing.assert_allclose(case["res"].report.costate, res.report.costate, rtol=1e-11)
    assert np.all(np.isfinite(res.report.costate)) and res.report.costate.size == STEPS + 1
    for name in WRT:
        a, b = case["res"].grads[name], res.grads[name]
        assert np.abs(a - b).max() <= tolerance("f64", "provider") * np.abs(b).max(), name


@pytest.mark.parametrize("schedule", [Uniform(every=7), Binomial(slots=4)], ids=repr)
def test_checkpointed_equals_store_all_bitwise(case: dict, schedule) -> None:
    res = case["sim"].value_and_grad(FinalPosition(case["target"]), wrt=WRT, checkpoint=schedule)
    assert res.report.forward_steps > STEPS  # it did recompute
    assert res.loss == case["res"].loss
    for name in WRT:
        np.testing.assert_array_equal(res.grads[name], case["res"].grads[name], err_msg=name)


@pytest.mark.parametrize("schedule", [StoreAll(), Binomial(slots=4)], ids=repr)
def test_per_step_kernels_equal_fused_kernels_bitwise(case: dict, schedule) -> None:
    """The per-step field kernels (the GPU path) against the CPU's whole-range kernels."""
    fused = case["sim"]
    assert fused._stepper().backend == "fused"
    with SpringSimulation(case["system"], STEPS, DT, velocities=case["v0"],
                          actuation=case["act"], backend="fields") as per_step:
        assert per_step._stepper().backend == "fields"
        np.testing.assert_array_equal(per_step.simulate().positions, fused.simulate().positions)
        loss = Tracking(fused.simulate().positions[:, :4] + 0.003, particles=range(4))
        a = per_step.value_and_grad(loss, wrt=WRT, checkpoint=schedule)
        b = fused.value_and_grad(loss, wrt=WRT, checkpoint=schedule)
    assert a.loss == b.loss
    np.testing.assert_allclose(a.report.costate, b.report.costate, rtol=1e-13)
    for name in WRT:
        np.testing.assert_array_equal(a.grads[name], b.grads[name], err_msg=name)


@pytest.mark.parametrize("schedule", [StoreAll(), Binomial(slots=4)], ids=repr)
def test_worker_tasks_give_the_same_bits(case: dict, schedule, monkeypatch) -> None:
    """Whole-range kernels as two worker tasks (ranges of springs and particles) and as one."""
    from diffsim import _parallel
    from diffsim.springs import steppers

    if _parallel.threads() < 2:
        pytest.skip("needs two CPU threads (a barrier waits for every worker)")
    one = case["sim"]
    monkeypatch.setattr(steppers, "SPRING_WORKER_SPRINGS", 0)
    with SpringSimulation(case["system"], STEPS, DT, velocities=case["v0"],
                          actuation=case["act"]) as two:
        assert two._stepper()._impl._workers == 2
        np.testing.assert_array_equal(two.simulate().positions, one.simulate().positions)
        loss = Tracking(one.simulate().positions[:, :4] + 0.003, particles=range(4))
        a = two.value_and_grad(loss, wrt=WRT, checkpoint=schedule)
        b = one.value_and_grad(loss, wrt=WRT, checkpoint=schedule)
    assert a.loss == b.loss
    np.testing.assert_allclose(a.report.costate, b.report.costate, rtol=1e-13)
    for name in WRT:
        np.testing.assert_array_equal(a.grads[name], b.grads[name], err_msg=name)


def test_results_are_deterministic(case: dict) -> None:
    system, v0, act = case["system"], case["v0"], case["act"]
    a = simulate(system, STEPS, DT, velocities=v0, actuation=act)  # fresh fields
    b = case["sim"].simulate()
    np.testing.assert_array_equal(a.positions, b.positions)
    res = case["sim"].value_and_grad(FinalPosition(case["target"]), wrt=WRT,
                                     checkpoint=StoreAll())
    for name in WRT:
        np.testing.assert_array_equal(res.grads[name], case["res"].grads[name], err_msg=name)


def test_three_dimensions_hand_matches_autodiff_and_fd() -> None:
    system = contact_system(dim=3, seed=5)
    v0, act = contact_inputs(system, 40, seed=5)
    target = FinalPosition(system.positions + 0.01)
    wrt = ("stiffness", "damping", "positions", "actuation")
    ref = value_and_grad(system, 40, DT, loss=target, wrt=wrt, velocities=v0, actuation=act,
                         adjoint="autodiff")
    with SpringSimulation(system, 40, DT, velocities=v0, actuation=act) as sim:
        res = sim.value_and_grad(target, wrt=wrt)
        for name in wrt:
            assert (np.abs(res.grads[name] - ref.grads[name]).max()
                    <= 1e-12 * np.abs(ref.grads[name]).max()), name

        def loss(k: np.ndarray) -> float:
            sim.update(stiffness=k)
            return 0.5 * float(np.sum((sim.simulate().positions[-1] - target.target) ** 2))

        d = np.random.default_rng(0).normal(size=system.n_springs)
        sweep = fd_sweep(loss, system.stiffness, d, res.grads["stiffness"],
                         steps=[1e-4, 1e-5, 1e-6])
    assert sweep.best_error < 1e-6, sweep.table()


def test_scalar_parameter_gets_the_summed_gradient() -> None:
    pos, springs = lattice(3, 2, seed=4)
    scalar = SpringSystem(pos, springs, stiffness=80.0, mass=0.05, gravity=(0.0, -9.81))
    with SpringSimulation(scalar, 30, DT) as sim:
        a = sim.value_and_grad(FinalPosition(pos), wrt=("stiffness", "mass"))
        sim.update(stiffness=np.full(len(springs), 80.0), mass=np.full(len(pos), 0.05))
        b = sim.value_and_grad(FinalPosition(pos), wrt=("stiffness", "mass"))
    assert a.grads["stiffness"].shape == () and a.grads["mass"].shape == ()
    assert b.grads["stiffness"].shape == (len(springs),) and b.grads["mass"].shape == (len(pos),)
    assert a.grads["stiffness"] == pytest.approx(b.grads["stiffness"].sum(), rel=1e-13)
    assert a.grads["mass"] == pytest.approx(b.grads["mass"].sum(), rel=1e-13)


def test_tracking_and_centre_of_mass_losses(case: dict) -> None:
    system, sim = case["system"], case["sim"]
    observed = _loss_at(case, "stiffness", system.stiffness * 1.1, lambda traj, _: traj.positions)
    direction = np.array([1.0, 0.25])

    def tracking(traj, _system) -> float:
        return 0.5 * float(np.sum((traj.positions - observed) ** 2))

    def com(traj, sys_) -> float:
        w = sys_.per_particle_mass() / sys_.per_particle_mass().sum()
        return -float(direction @ (w @ (traj.positions[-1] - traj.positions[0])))

    for loss, fn in ((Tracking(observed), tracking), (CenterOfMass(direction), com)):
        res = sim.value_and_grad(loss, wrt=("mass", "stiffness", "positions"))
        assert res.loss == pytest.approx(fn(sim.simulate(), system), rel=1e-13)
        for name in ("mass", "stiffness", "positions"):
            base = getattr(system, name)
            d = np.random.default_rng(3).normal(size=base.shape)
            sweep = fd_sweep(lambda p, n=name, f=fn: _loss_at(case, n, p, f), base, d,
                             res.grads[name], steps=[1e-5, 1e-6, 1e-7])
            assert sweep.best_error < 1e-6, (type(loss).__name__, name, sweep.table())


def test_simulation_object_is_reusable() -> None:
    system = contact_system()
    v0, act = contact_inputs(system, STEPS)
    target = system.positions
    with SpringSimulation(system, STEPS, DT, velocities=v0, actuation=act) as sim:
        first = sim.value_and_grad(FinalPosition(target), wrt=("stiffness",))
        sim.update(stiffness=system.stiffness * 1.05)
        second = sim.value_and_grad(FinalPosition(target), wrt=("stiffness",))
        sim.update(stiffness=system.stiffness)
        again = sim.value_and_grad(FinalPosition(target), wrt=("stiffness",))
    assert second.loss != first.loss
    assert again.loss == first.loss
    np.testing.assert_array_equal(again.grads["stiffness"], first.grads["stiffness"])
