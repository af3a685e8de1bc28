"""Exact discrete gradients of the acoustic misfit: FD, Taylor, dot product, checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
from wave_truth import smooth_field

from diffsim import Binomial, StoreAll, Uniform, rollout
from diffsim.gradcheck import dot_product_test, fd_sweep, taylor_test
from diffsim.wave import AcousticStepper, FieldAcousticStepper, ricker, stepper_misfit_gradient


def problem(ndim: int = 2, **options):
    shape = (16, 18) if ndim == 2 else (10, 11, 12)
    h, dt, nt = 10.0, 1e-3, 50 if ndim == 2 else 30
    rng = np.random.default_rng(3)
    true = 2000.0 + 150.0 * smooth_field(shape, 1)
    start = 2000.0 + 100.0 * smooth_field(shape, 2)
    extent = [(n - 1) * h for n in shape]
    sources = np.array([[extent[0] * 0.3, *[e * 0.35 for e in extent[1:]]],
                        [extent[0] * 0.55, *[e * 0.6 for e in extent[1:]]]])
    receivers = np.array([[e * f for e in extent] for f in (0.2, 0.45, 0.8)])
    wavelet = ricker(25.0, dt, nt, peak_time=0.03) * (1.0 + 0.1 * rng.random(nt))
    kwargs = dict(order=4, pml_width=4)
    kwargs.update(options)
    stepper = AcousticStepper(true, h, dt, wavelet, sources, receivers, **kwargs)
    rollout(stepper)
    observed = stepper.traces_array()
    stepper.set_velocity(start)
    return stepper, start, observed


@pytest.fixture(scope="module")
def wave2d():
    return problem(2)


def misfit_at(stepper: AcousticStepper, observed: np.ndarray):
    def value(vel: np.ndarray) -> float:
        stepper.set_velocity(vel)
        rollout(stepper)
        r = stepper.traces_array() - observed
        return 0.5 * float(np.sum(r * r))

    return value


def test_velocity_gradient_fd_and_taylor(wave2d) -> None:
    stepper, start, observed = wave2d
    stepper.set_velocity(start)
    result = stepper_misfit_gradient(stepper, observed, checkpoint=StoreAll())
    assert result.gradient.shape == start.shape
    assert np.all(np.isfinite(result.gradient)) and np.any(result.gradient != 0)
    direction = smooth_field(start.shape, 5)
    value = misfit_at(stepper, observed)
    sweep = fd_sweep(value, start, direction, result.gradient)
    assert sweep.best_error < 1e-6, sweep.table()
    taylor = taylor_test(value, start, direction, result.gradient, h0=0.5)
    assert abs(taylor.second_order - 2.0) < 0.1, taylor.table()
    # Single cells: in the PML-adjacent edge, near a source and in the middle.
    for cell in [(0, 0), (4, 5), (8, 9)]:
        e = np.zeros_like(start)
        e[cell] = 1.0
        cell_sweep = fd_sweep(value, start, e, result.gradient, steps=[1e-1, 1e-2, 1e-3])
        assert cell_sweep.best_error < 1e-5, (cell, cell_sweep.table())
    stepper.set_velocity(start)


@pytest.mark.parametrize("schedule", [Uniform(every=7), Binomial(slots=3), Binomial(slots=12)],
                         ids=repr)
def test_checkpointed_equals_store_all(wave2d, schedule) -> None:
    stepper, start, observed = wave2d
    stepper.set_velocity(start)
    ref = stepper_misfit_gradient(stepper, observed, checkpoint=StoreAll())
    got = stepper_misfit_gradient(stepper, observed, checkpoint=schedule)
    assert got.loss == ref.loss
    scale = np.abs(ref.gradient).max()
    assert np.max(np.abs(got.gradient - ref.gradient)) <= 1e-13 * scale
    wscale = np.abs(ref.wavelet_gradient).max()
    assert np.max(np.abs(got.wavelet_gradient - ref.wavelet_gradient)) <= 1e-13 * wscale
    assert got.report.forward_steps == schedule.cost(stepper.steps).forward_steps


def test_wavelet_adjoint_dot_product(wave2d) -> None:
    # traces are linear in the wavelet: A w; the reverse sweep with cotangent y gives A^T y.
    stepper, start, observed = wave2d
    stepper.set_velocity(start)
    amp0 = stepper.parameters()["wavelet"]
    rng = np.random.default_rng(9)
    x = rng.normal(size=amp0.shape)
    y = rng.normal(size=observed.shape)

    def forward(w: np.ndarray) -> np.ndarray:
        stepper.set_param("wavelet", w)
        rollout(stepper)
        return stepper.traces_array()

    def adjoint(cot: np.ndarray) -> np.ndarray:
        from diffsim import Tape

        tape = Tape(stepper, checkpoint=Binomial(slots=5))
        tape.forward()
        return tape.backward({"receivers": np.moveaxis(cot, -1, 0)})["wavelet"]

    result = dot_product_test(forward, adjoint, x, y)
    assert result.relative_error < 1e-12, result
    stepper.set_param("wavelet", amp0)


@pytest.mark.slow   # a cold order-8 adjoint compile (40 s); orders 2 and 4 run by default
def test_order_8_unequal_faces_velocity_gradient_taylor() -> None:
    stepper, start, observed = problem(2, order=8, pml_width=[3, 5, 4, 6])
    result = stepper_misfit_gradient(stepper, observed, checkpoint=Binomial(slots=4))
    direction = smooth_field(start.shape, 7)
    taylor = taylor_test(misfit_at(stepper, observed), start, direction, result.gradient, h0=0.5)
    assert abs(taylor.second_order - 2.0) < 0.1, taylor.table()
    stepper.destroy()


@pytest.mark.slow   # the cold 3D adjoint compile alone takes 60-90 s on 2 cores
def test_3d_velocity_gradient_taylor() -> None:
    stepper, start, observed = problem(3)
    result = stepper_misfit_gradient(stepper, observed, checkpoint=Binomial(slots=4))
    direction = smooth_field(start.shape, 6)
    taylor = taylor_test(misfit_at(stepper, observed), start, direction, result.gradient, h0=0.5)
    assert abs(taylor.second_order - 2.0) < 0.1, taylor.table()
    stepper.destroy()


@pytest.mark.parametrize(
    ("ndim", "options"),
    [(2, {"order": 2, "free_surface": True}),
     # Cold Taichi compiles of autodiff kernels cost 15 s to a minute each: slow run only
     # (the default run checks order 4 by FD and Taylor tests; order 8 with unequal faces
     # has a Taylor test in the slow run too).
     pytest.param(2, {"order": 4, "free_surface": True}, marks=pytest.mark.slow),
     pytest.param(2, {"order": 8, "pml_width": [3, 5, 4, 6]}, marks=pytest.mark.slow),
     pytest.param(2, {"order": 6, "interpolation": "nearest"}, marks=pytest.mark.slow),
     pytest.param(3, {"order": 4}, marks=pytest.mark.slow)],
    ids=["2d-o2-free-surface", "2d-o4-free-surface", "2d-o8-faces", "2d-o6-nearest", "3d-o4"],
)
def test_hand_adjoint_matches_autodiff(ndim, options) -> None:
    """The array engine's hand adjoint against Taichi autodiff of the field engine's step."""
    stepper, start, observed = problem(ndim, **options)
    assert type(stepper) is AcousticStepper
    auto, _, _ = problem(ndim, adjoint="autodiff", **options)
    assert isinstance(auto, FieldAcousticStepper)
    auto.set_velocity(start)
    ad = stepper_misfit_gradient(auto, observed, checkpoint=Binomial(slots=6))
    hand = stepper_misfit_gradient(stepper, observed, checkpoint=Binomial(slots=6))
    assert hand.loss == pytest.approx(ad.loss, rel=1e-13)
    for got, ref in ((hand.gradient, ad.gradient), (hand.wavelet_gradient, ad.wavelet_gradient)):
        assert np.max(np.abs(got - ref)) <= 1e-12 * np.abs(ref).max()
    auto.destroy()
    stepper.destroy()


def test_sponge_velocity_gradient_fd_and_checkpoints() -> None:
    # The hand adjoint of the Cerjan sponge against finite differences (Taichi autodiff
    # of the damped update is inexact, so the FD V-curve is the oracle here).
    stepper, start, observed = problem(2, order=4, boundary="sponge")
    ref = stepper_misfit_gradient(stepper, observed, checkpoint=StoreAll())
    direction = smooth_field(start.shape, 5)
    value = misfit_at(stepper, observed)
    sweep = fd_sweep(value, start, direction, ref.gradient)
    assert sweep.best_error < 1e-6, sweep.table()
    taylor = taylor_test(value, start, direction, ref.gradient, h0=0.5)
    assert abs(taylor.second_order - 2.0) < 0.1, taylor.table()
    stepper.set_velocity(start)
    got = stepper_misfit_gradient(stepper, observed, checkpoint=Binomial(slots=4))
    assert np.max(np.abs(got.gradient - ref.gradient)) <= 1e-13 * np.abs(ref.gradient).max()
    stepper.destroy()


@pytest.mark.slow   # 15-20 s cold: a second (parallel) compilation of the step
@pytest.mark.parametrize("shots, split", [(1, (2, 0)), (3, (2, 2)), (3, (2, 3)), (3, (2, 0))])
def test_worker_tasks_give_the_same_bits(monkeypatch, shots: int, split: tuple[int, int]) -> None:
    """Shots dealt whole and shots in bands of rows: traces and gradients bit for bit.

    Against one worker, under a checkpoint schedule with restores and store-all; the
    costate norms (summed per band) agree to rounding.
    """
    from diffsim import _parallel
    from diffsim.acoustic import stepper as engine

    if _parallel.threads() < 2:
        pytest.skip("needs two CPU threads (a barrier waits for every worker)")
    shape, h, dt, nt = (30, 26), 10.0, 1e-3, 60
    vel = 2000.0 + 150.0 * smooth_field(shape, 1)
    sources = np.array([[60.0 + 20.0 * s, 50.0 + 60.0 * s] for s in range(shots)])
    receivers = np.array([[40.0, x] for x in (30.0, 120.0, 210.0)])
    wavelet = ricker(25.0, dt, nt, peak_time=0.03)
    observed = np.zeros((shots, 3, nt))
    results = {}
    for case in ((1, shots), split):
        monkeypatch.setattr(engine, "split", lambda s, c, case=case: _parallel.Split(*case))
        stepper = AcousticStepper(vel, h, dt, wavelet, sources, receivers, order=4, pml_width=5)
        results[case] = [stepper_misfit_gradient(stepper, observed, checkpoint=schedule)
                         for schedule in (Binomial(slots=3), StoreAll())]
        stepper.destroy()
    for one, many in zip(results[(1, shots)], results[split], strict=True):
        assert one.loss == many.loss
        np.testing.assert_array_equal(one.traces, many.traces)
        np.testing.assert_array_equal(one.gradient, many.gradient)
        np.testing.assert_array_equal(one.wavelet_gradient, many.wavelet_gradient)
        np.testing.assert_allclose(one.report.costate, many.report.costate, rtol=1e-12)
