"""The acoustic engines: compile once per process, functional calls keep their stepper."""

from __future__ import annotations

import numpy as np
import pytest

import diffsim.wave as wave
from diffsim import StoreAll, rollout
from diffsim.kernels.wave import array_kernels
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
    fwd, rev, rec = array_kernels(2, "f64", wave.LANES["f64"])
    return sum(len(k._primal.compiled_kernels) for k in (fwd, rev, rec))


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
    assert isinstance(fields, AcousticStepper)
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


def test_functional_calls_keep_and_refill_their_stepper(monkeypatch) -> None:
    wave.clear_kept()
    kwargs = case((20, 24), 2, 6, 50)
    opts = dict(order=4, pml_width=5)
    observed = wave.simulate(**kwargs, **opts)
    results = []
    for k in range(wave.FIELDS_AFTER):
        vel = kwargs["velocity"] * (1.0 + 0.02 * (k + 1))
        res = wave.misfit_gradient(**{**kwargs, "velocity": vel}, observed=observed, **opts)
        kept = list(wave._KEPT.values())
        assert len(kept) == 1
        results.append((type(kept[0]), res))
    # simulate and the first misfit_gradient ran on the array engine; then a field stepper
    assert results[0][0] is AcousticStepper
    assert issubclass(results[-1][0], FieldAcousticStepper)
    # each call equals a fresh stepper built for its values
    vel = kwargs["velocity"] * (1.0 + 0.02 * wave.FIELDS_AFTER)
    fresh = AcousticStepper(**{**kwargs, "velocity": vel}, **opts)
    ref = stepper_misfit_gradient(fresh, observed)
    got = results[-1][1]
    assert got.loss == pytest.approx(ref.loss, rel=1e-12)
    assert np.max(np.abs(got.gradient - ref.gradient)) <= 1e-12 * np.abs(ref.gradient).max()
    # new positions and wavelet on the kept stepper: the same as a fresh one
    moved = {**kwargs, "sources": kwargs["sources"] + 15.0, "wavelet": kwargs["wavelet"] * 2}
    got = wave.simulate(**moved, **opts)
    fresh = AcousticStepper(**moved, **opts)
    rollout(fresh)
    np.testing.assert_allclose(got, fresh.traces_array(), rtol=0,
                               atol=1e-12 * np.abs(got).max())
    wave.clear_kept()
    assert not wave._KEPT


def test_bad_engine_and_unknown_option() -> None:
    kwargs = case((20, 24), 1, 5, 40)
    with pytest.raises(ValueError, match="engine='gpu'"):
        AcousticStepper(**kwargs, engine="gpu")
    with pytest.raises(TypeError, match="unknown option"):
        wave.simulate(**kwargs, colour="red")
