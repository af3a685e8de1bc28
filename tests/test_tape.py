"""The tape on a nonlinear oscillator chain: schedules, providers, FD, Taylor, reports."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import chain_problem, l2_loss, tolerance

from diffsim import Binomial, Budget, StoreAll, Tape, Uniform
from diffsim.chain import OscillatorChain
from diffsim.gradcheck import fd_sweep, taylor_test

SCHEDULES = [
    StoreAll(),
    Uniform(every=1),
    Uniform(every=3),
    Uniform(every=7),
    Uniform(every=40),
    Binomial(slots=1),
    Binomial(slots=2),
    Binomial(slots=5),
    Budget(bytes=10 * 96),
]


_CHAINS: dict[str, OscillatorChain] = {}


def chain_for(kwargs: dict, adjoint: str = "autodiff") -> OscillatorChain:
    """One chain per adjoint provider, reused (a new chain recompiles every kernel)."""
    if adjoint not in _CHAINS:
        _CHAINS[adjoint] = OscillatorChain(**{**kwargs, "adjoint": adjoint})
    chain = _CHAINS[adjoint]
    for name in ("stiffness", "mass", "beta", "forcing"):
        chain.set_param(name, kwargs[name])
    chain.set_initial(q0=kwargs["q0"], v0=kwargs["v0"])
    return chain


def run(kwargs: dict, observed: np.ndarray, schedule: object, adjoint: str = "autodiff",
        **tape_kwargs: object):
    chain = chain_for(kwargs, adjoint)
    tape = Tape(chain, checkpoint=schedule, **tape_kwargs)
    value, grads = tape.value_and_grad(l2_loss(observed))
    return value, grads, tape, chain.initial_state_gradient()


def rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


@pytest.fixture(scope="module")
def problem() -> tuple[dict, np.ndarray]:
    return chain_problem(seed=1)


@pytest.fixture(scope="module")
def reference(problem):
    kwargs, observed = problem
    return run(kwargs, observed, StoreAll())


@pytest.mark.parametrize("adjoint", ["autodiff", "hand"])
@pytest.mark.parametrize("schedule", SCHEDULES, ids=repr)
def test_every_schedule_equals_store_all(problem, schedule, adjoint) -> None:
    kwargs, observed = problem
    ref_value, ref_grads, _, _ = run(kwargs, observed, StoreAll(), adjoint)
    value, grads, tape, _ = run(kwargs, observed, schedule, adjoint)
    assert value == ref_value
    for name, g in ref_grads.items():
        assert grads[name].shape == g.shape
        if adjoint == "hand":
            # Gather-form kernels: no atomics, so every schedule is bit for bit store-all.
            np.testing.assert_array_equal(grads[name], g)
        else:
            # Taichi autodiff scatters with atomics, whose order may vary across threads.
            assert rel(grads[name], g) <= tolerance("f64", "exact"), name
    # The executor did exactly what the schedule's counting stub predicted.
    assert tape.report.forward_steps == tape.schedule.cost(tape.steps).forward_steps
    assert tape.report.reverse_steps == tape.steps
    assert tape.report.peak_checkpoints == tape.predicted.peak_states
    assert tape.report.peak_checkpoint_bytes == tape.predicted.peak_states * 6 * 2 * 8


def test_hand_adjoint_matches_autodiff(problem, reference) -> None:
    kwargs, observed = problem
    _, hand, _, hand_x0 = run(kwargs, observed, StoreAll(), "hand")
    _, ad, _, ad_x0 = reference[0], reference[1], None, reference[3]
    for name in ad:
        assert rel(hand[name], ad[name]) <= tolerance("f64", "provider"), name
    for name in ad_x0:
        assert rel(hand_x0[name], ad_x0[name]) <= tolerance("f64", "provider"), name


@pytest.mark.parametrize("param", ["stiffness", "beta", "mass", "forcing", "q0"])
def test_gradient_against_finite_differences_and_taylor(problem, reference, param) -> None:
    kwargs, observed = problem
    rng = np.random.default_rng(7)
    loss = l2_loss(observed)

    def value(x: np.ndarray) -> float:
        chain = chain_for({**kwargs, param: x})
        return loss(Tape(chain, checkpoint=Binomial(slots=4)).forward())[0]

    x0 = np.asarray(kwargs[param], dtype=np.float64)
    grad = reference[3]["q"] if param == "q0" else reference[1][param]
    direction = rng.normal(size=x0.shape)
    if param == "beta":
        x0 = x0 + 1.0  # keep the point away from zero so the default step scale is sane
        grad = run({**kwargs, "beta": x0}, observed, StoreAll())[1]["beta"]
    sweep = fd_sweep(value, x0, direction, grad)
    assert sweep.best_error < tolerance("f64", "fd"), sweep.table()
    taylor = taylor_test(value, x0, direction, grad)
    assert abs(taylor.first_order - 1.0) < 0.1, taylor.table()
    assert abs(taylor.second_order - 2.0) < 0.1, taylor.table()


def test_taylor_test_catches_a_wrong_gradient(problem, reference) -> None:
    kwargs, observed = problem
    loss = l2_loss(observed)

    def value(k: np.ndarray) -> float:
        return loss(Tape(chain_for({**kwargs, "stiffness": k}), checkpoint=StoreAll()).forward())[0]

    wrong = reference[1]["stiffness"] * 1.05
    direction = np.random.default_rng(3).normal(size=wrong.shape)
    taylor = taylor_test(value, np.asarray(kwargs["stiffness"]), direction, wrong)
    assert taylor.second_order < 1.3


def test_costate_trace(problem, reference) -> None:
    _, _, tape, initial = reference
    costate = tape.report.costate
    assert costate.shape == (tape.steps + 1,)
    assert np.all(np.isfinite(costate)) and np.all(costate >= 0)
    # λ[0] is the gradient with respect to the initial state.
    x0_norm = np.sqrt(sum(float(np.sum(g * g)) for g in initial.values()))
    assert costate[0] == pytest.approx(x0_norm, rel=1e-12)
    kwargs, observed = problem
    _, _, off, _ = run(kwargs, observed, StoreAll(), costate=False)
    assert np.all(np.isnan(off.report.costate))


def test_gradients_are_deterministic(problem, reference) -> None:
    kwargs, observed = problem
    first = run(kwargs, observed, Binomial(slots=3), "hand")[1]
    for _ in range(2):
        _, grads, _, _ = run(kwargs, observed, Binomial(slots=3), "hand")
        for name, g in first.items():
            np.testing.assert_array_equal(grads[name], g)


def test_report_times_and_summary(reference) -> None:
    rep = reference[2].report
    assert rep.forward_seconds > 0 and rep.reverse_seconds > 0
    assert "StoreAll()" in rep.summary()


def test_shorter_rollout_than_the_stepper(problem) -> None:
    kwargs, observed = problem
    tape = Tape(chain_for(kwargs), steps=10, checkpoint=Binomial(slots=2))
    out = tape.forward()
    grads = tape.backward({"positions": np.ones_like(out["positions"])})
    assert tape.report.reverse_steps == 10
    assert np.all(grads["forcing"][10:] == 0) and np.any(grads["forcing"][:10] != 0)


def test_tape_usage_errors(problem) -> None:
    kwargs, _ = problem
    chain = chain_for(kwargs)
    tape = Tape(chain, checkpoint=StoreAll())
    with pytest.raises(RuntimeError, match="call tape.forward"):
        tape.backward({})
    out = tape.forward()
    with pytest.raises(ValueError, match="expected \\(41, 2\\)"):
        tape.backward({"positions": np.zeros((3, 2))})
    with pytest.raises(ValueError, match="unknown outputs \\['speed'\\]"):
        tape.backward({"speed": out["positions"]})
    with pytest.raises(ValueError, match="steps=41 must be an int in \\[1, 40\\]"):
        Tape(chain, steps=41)
    with pytest.raises(TypeError, match="Binomial\\(slots=16\\)"):
        Tape(chain, checkpoint="binomial")
    with pytest.raises(TypeError, match="must be a diffsim Stepper"):
        Tape(object())
    with pytest.raises(ValueError, match="cannot hold one state of 96 bytes"):
        Tape(chain, checkpoint=Budget(bytes=10))
    with pytest.raises(ValueError, match="unknown parameter 'k'"):
        chain.set_param("k", 1.0)
    with pytest.raises(ValueError, match="'stiffness' has shape \\(3,\\); expected \\(7,\\)"):
        chain.set_param("stiffness", np.ones(3))
    with pytest.raises(ValueError, match="mass must be > 0"):
        chain.set_param("mass", 0.0)
    with pytest.raises(ValueError, match="unstable"):
        chain.set_param("stiffness", 1e9)


def test_blow_up_is_reported_with_the_step(problem) -> None:
    kwargs, _ = problem
    forcing = np.array(kwargs["forcing"])
    forcing[12, 2] = 1e308
    tape = Tape(chain_for({**kwargs, "forcing": forcing}), checkpoint=StoreAll(),
                check_finite_every=5)
    with pytest.raises(FloatingPointError, match="between step 10 \\(finite\\) and step 15"):
        tape.forward()
