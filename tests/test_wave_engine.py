"""The acoustic engines: the arena engine compiles once per process and frees its space."""

from __future__ import annotations

import numpy as np
import pytest

import diffsim.wave as wave
from diffsim import StoreAll, rollout
from diffsim.kernels.acoustic import arena_kernels
from diffsim.wave import AcousticStepper, FieldAcousticStepper, ricker, stepper_misfit_gradient


def case(shape: tuple[int, int], shots: int, receivers: int, nt: int) -> dict:
    h, dt = 10.0, 1e-3
    extent = [(n - 1) * h for n in shape]
    sources = np.array([[extent[0] * 0.3, extent[1] * (0.2 + 0.6 * s / max(shots, 1))]
                        for s in range(shots)])
    rec = np.stack([np.full(receivers, extent[0] * 0.1),
                    np.linspace(0.0, extent[1], receivers)], axis=1)
    vel = np.full(shape, 2000.0)
    vel[shape[0] // 2:] = 2400.0
    return dict(velocity=vel, spacing=h, dt=dt, wavelet=ricker(25.0, dt, nt, peak_time=0.03),
                sources=sources, receivers=rec)


def compiled() -> int:
    kernels = arena_kernels(2, "f64", wave.LANES["f64"])
    return sum(len(k._primal.compiled_kernels) for k in kernels.values())


def test_a_new_grid_shot_count_receiver_count_or_record_length_compiles_nothing() -> None:
    opts = dict(order=4, pml_width=5)
    first = AcousticStepper(**case((20, 24), 1, 5, 40), **opts)
    rollout(first)
    stepper_misfit_gradient(first, np.zeros_like(first.traces_array()), checkpoint=StoreAll())
    before = compiled()
    assert before > 0
    other = AcousticStepper(**case((31, 17), 3, 9, 57), **opts)
    rollout(other)
    res = stepper_misfit_gradient(other, other.traces_array() * 0.5)
    assert compiled() == before
    assert res.gradient.shape == (31, 17) and np.all(np.isfinite(res.gradient))
    assert np.abs(res.gradient).max() > 0


def test_engines_agree() -> None:
    kwargs = dict(**case((22, 26), 2, 7, 60), order=4, pml_width=5)
    arrays = AcousticStepper(**kwargs)
    fields = AcousticStepper(**kwargs, engine="fields")
    assert type(arrays) is AcousticStepper and isinstance(fields, FieldAcousticStepper)
    assert isinstance(fields, AcousticStepper)  # a registered virtual subclass
    rollout(arrays)
    rollout(fields)
    np.testing.assert_allclose(arrays.traces_array(), fields.traces_array(), rtol=0,
                               atol=1e-13 * np.abs(fields.traces_array()).max())
    observed = fields.traces_array() * 0.8
    a = stepper_misfit_gradient(arrays, observed, checkpoint=StoreAll())
    f = stepper_misfit_gradient(fields, observed, checkpoint=StoreAll())
    for got, ref in ((a.gradient, f.gradient), (a.wavelet_gradient, f.wavelet_gradient)):
        assert np.max(np.abs(got - ref)) <= 1e-12 * np.abs(ref).max()
    np.testing.assert_allclose(a.report.costate, f.report.costate, rtol=1e-12)
    fields.destroy()


def test_functional_calls_compile_nothing_new_and_give_their_arena_space_back() -> None:
    opts = dict(order=4, pml_width=5)
    kwargs = case((20, 24), 2, 6, 50)
    observed = wave.simulate(**kwargs, **opts)
    wave.misfit_gradient(**kwargs, observed=observed * 0.5, **opts)
    before = compiled()
    state, pools = wave._arena("f64", wave.LANES["f64"]), wave._arena("f64", wave.LANES["f64"],
                                                                        "pools")
    used = (dict(state._used), dict(pools._used))
    other = case((26, 19), 3, 4, 61)
    got = wave.misfit_gradient(**other, observed=np.zeros((3, 4, 61)), **opts)
    assert compiled() == before
    assert (state._used, pools._used) == used
    fresh = AcousticStepper(**other, **opts)
    ref = stepper_misfit_gradient(fresh, np.zeros((3, 4, 61)))
    assert np.max(np.abs(got.gradient - ref.gradient)) <= 1e-12 * np.abs(ref.gradient).max()
    fresh.destroy()


def test_arena_grows_and_keeps_live_steppers() -> None:
    opts = dict(order=4, pml_width=5)
    small = AcousticStepper(**case((20, 24), 1, 5, 40), **opts)
    rollout(small)
    before = {name: small._read(name) for name in ("u", "kc", "psi0", "zeta1")}
    arena = small._arena
    capacity = arena.capacity
    big_shape = (int(np.sqrt(capacity * wave.LANES["f64"]) // 2) + 40,) * 2
    big = AcousticStepper(**case(big_shape, 1, 5, 3), **opts)
    assert arena.capacity > capacity
    for name, value in before.items():  # the live state moved with the arena, bit for bit
        np.testing.assert_array_equal(small._read(name), value)
    big.destroy()
    small.destroy()


def test_bad_engine_and_unknown_option() -> None:
    kwargs = case((20, 24), 1, 5, 40)
    with pytest.raises(ValueError, match="engine='gpu'"):
        AcousticStepper(**kwargs, engine="gpu")
    with pytest.raises(TypeError, match="colour"):
        wave.simulate(**kwargs, colour="red")


@pytest.mark.slow   # 28 s cold; shots in one stepper are also checked by the many-shot tests
def test_batched_gradient_is_the_sum_of_single_shot_gradients() -> None:
    """Shots run one after another inside a launch, each with its own kc gradient."""
    opts = dict(order=4, pml_width=5)
    batch = case((22, 26), 3, 7, 60)
    observed = wave.simulate(**batch, **opts) * 0.7
    got = wave.misfit_gradient(**batch, observed=observed * 0.5, **opts)
    total = np.zeros_like(got.gradient)
    for s in range(3):
        single = {**batch, "sources": batch["sources"][s:s + 1]}
        res = wave.misfit_gradient(**single, observed=observed[s:s + 1] * 0.5, **opts)
        total += res.gradient
        np.testing.assert_array_equal(res.wavelet_gradient[0], got.wavelet_gradient[s])
    assert np.max(np.abs(got.gradient - total)) <= 1e-13 * np.abs(total).max()


def test_arena_growth_policy() -> None:
    # Doubling (powers of two) up to 1 GiB; beyond, the smallest quarter-octave size that
    # holds the need, so a large arena leaves at most a fifth of itself unused.
    from diffsim.acoustic._arena import _Arena

    arena = _Arena("f32", 16)
    assert arena._capacity(10) == _Arena.MIN_ELEMENTS
    assert arena._capacity(_Arena.MIN_ELEMENTS + 1) == 2 * _Arena.MIN_ELEMENTS
    assert arena._capacity(_Arena.FINE_ELEMENTS) == _Arena.FINE_ELEMENTS
    for need in (_Arena.FINE_ELEMENTS + 1, 21_500_000, 3 * 2**25 + 1, 2**27 - 1):
        cap = arena._capacity(need)
        assert need <= cap and (cap - need) / cap < 0.2, (need, cap)
