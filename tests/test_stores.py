"""Checkpoint stores are the tape's: a host store gives every stepper's gradient bit for bit.

The device store is each stepper's own pool read in place by its kernels; the host store
moves complete states through ``export_state``/``import_state``. The same schedule must
give identical losses, gradients and costate traces through both, for every stepper.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import chain_problem, l2_loss
from springs_cases import contact_inputs, contact_system

from diffsim import Binomial, StoreAll, Tape, Uniform, springs
from diffsim.acoustic import AcousticStepper, ricker
from diffsim.chain import OscillatorChain
from diffsim.stores import DeviceStore, HostStore


def acoustic(engine: str) -> tuple[AcousticStepper, dict]:
    rng = np.random.default_rng(0)
    vel = 2000.0 + 50.0 * rng.random((12, 14))
    stepper = AcousticStepper(vel, 10.0, 1e-3, ricker(25.0, 1e-3, 30, peak_time=0.03),
                              np.array([[30.0, 40.0], [60.0, 90.0]]),
                              np.array([[20.0, 20.0], [20.0, 110.0]]), order=4, pml_width=3,
                              engine=engine)
    cot = {"receivers": rng.normal(size=stepper.outputs()["receivers"].shape)}
    return stepper, cot


def chain(adjoint: str) -> tuple[OscillatorChain, dict]:
    kwargs, observed = chain_problem()
    stepper = OscillatorChain(**kwargs, adjoint=adjoint)
    tape = Tape(stepper, checkpoint=StoreAll())
    _, cot = l2_loss(observed)(tape.forward())
    return stepper, cot


def spring(fused: bool) -> tuple[object, dict]:
    system = contact_system(2)
    v0, act = contact_inputs(system, 25)
    sim = springs.Simulation(system, 25, 2e-3, velocities=v0, actuation=act,
                             backend="fused" if fused else "fields")
    stepper = sim._stepper()
    cot = {"positions": np.random.default_rng(1).normal(size=stepper.outputs()["positions"].shape)}
    return stepper, cot


def steppers():
    yield "acoustic arrays", *acoustic("arrays")
    yield "acoustic fields", *acoustic("fields")
    yield "chain autodiff", *chain("autodiff")
    yield "chain hand", *chain("hand")
    yield "springs fused", *spring(True)
    yield "springs per-step", *spring(False)


def run(stepper, cot, schedule, store):
    tape = Tape(stepper, checkpoint=schedule, store=store)
    out = tape.forward()
    grads = tape.backward(cot)
    return out, grads, tape.report


def test_host_store_equals_device_store() -> None:
    # Binomial restores checkpoints and reads them in place during reverse runs; Uniform
    # saves inside fused forward runs; store-all reverses from checkpoints only.
    schedules = [Binomial(slots=3), Uniform(every=5), StoreAll()]
    for k, (name, stepper, cot) in enumerate(steppers()):
        schedule = schedules[k % 3]
        out_d, g_d, rep_d = run(stepper, cot, schedule, DeviceStore())
        out_h, g_h, rep_h = run(stepper, cot, schedule, HostStore())
        assert rep_d.store == "device" and rep_h.store == "host"
        assert rep_h.forward_steps == rep_d.forward_steps, name
        for key in out_d:
            np.testing.assert_array_equal(out_h[key], out_d[key], err_msg=name)
        for key in g_d:
            np.testing.assert_array_equal(g_h[key], g_d[key], err_msg=f"{name}: {key}")
        np.testing.assert_array_equal(rep_h.costate, rep_d.costate, err_msg=name)
        assert np.isfinite(rep_h.costate).all(), name
        if k == 0:  # the default engine under every schedule
            for other in schedules[1:]:
                _, g_o, _ = run(stepper, cot, other, HostStore())
                _, g_e, _ = run(stepper, cot, other, DeviceStore())
                for key in g_e:
                    np.testing.assert_array_equal(g_o[key], g_e[key], err_msg=f"{other!r}")
        stepper.destroy()


def test_export_import_round_trip() -> None:
    for name, stepper, _ in steppers():
        spec = stepper.state_spec()
        stepper.reset()
        for t in range(7):
            stepper.advance(t)
        held = {k: np.empty(shape, dtype) for k, (shape, dtype) in spec.items()}
        stepper.export_state(7, held)
        assert any(np.any(a != 0) for a in held.values()), name
        stepper.advance(7)
        stepper.advance(8)
        after = stepper.outputs()
        stepper.import_state(7, held)
        stepper.advance(7)
        stepper.advance(8)
        for key, value in stepper.outputs().items():
            np.testing.assert_array_equal(value, after[key], err_msg=name)
        stepper.destroy()


def test_bad_store() -> None:
    stepper, _ = chain("hand")
    with pytest.raises(TypeError, match="store must be a diffsim.stores store"):
        Tape(stepper, store="host")  # type: ignore[arg-type]
    stepper.destroy()
