"""Checkpoint stores are the tape's: a host store gives every stepper's gradient bit for bit.

The device store is each stepper's own pool read in place by its kernels; the host store
moves complete states through ``export_state``/``import_state``. The same schedule must
give identical losses, gradients and costate traces through both, for every stepper.
"""

from __future__ import annotations

import os
import zlib

import numpy as np
import pytest
from conftest import chain_problem, l2_loss
from springs_cases import contact_inputs, contact_system

from diffsim import Binomial, Budget, StoreAll, Tape, TwoLevel, Uniform, springs
from diffsim.acoustic import AcousticStepper, ricker
from diffsim.chain import OscillatorChain
from diffsim.stores import DeviceStore, DiskStore, HostStore


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


def test_disk_store_equals_device_store(tmp_path) -> None:
    # Files written by the background thread, raw or losslessly compressed (zstd, and zlib
    # without zstandard), give the device store's bits.
    import diffsim.stores as stores

    for name, stepper, cot in steppers():
        if name not in ("acoustic arrays", "chain hand", "springs fused"):
            stepper.destroy()
            continue
        schedule = Binomial(slots=3)
        _, g_d, rep_d = run(stepper, cot, schedule, DeviceStore())
        for compression in (None, "lossless"):
            store = stores.DiskStore(tmp_path, compression=compression)
            _, g_f, rep_f = run(stepper, cot, schedule, store)
            assert rep_f.store == "disk" and store.stats["files"] > 0
            for key in g_d:
                np.testing.assert_array_equal(g_f[key], g_d[key], err_msg=f"{name} {compression}")
            np.testing.assert_array_equal(rep_f.costate, rep_d.costate)
            if compression and name == "acoustic arrays":   # (headers outweigh tiny states)
                assert store.stats["bytes_written"] < store.stats["state_bytes"], store.stats
            path = store.path
            store.close()
            assert not (tmp_path / path).exists()
        stepper.destroy()


def test_disk_store_zlib_fallback_and_float16(tmp_path, monkeypatch) -> None:
    import diffsim.stores as stores

    stepper, cot = acoustic("arrays")
    schedule = Binomial(slots=3)
    _, g_d, _ = run(stepper, cot, schedule, DeviceStore())
    monkeypatch.setattr(stores, "_codec",
                        lambda: ("zlib", lambda b: zlib.compress(b, 1), zlib.decompress))
    _, g_z, _ = run(stepper, cot, schedule, stores.DiskStore(tmp_path, compression="lossless"))
    np.testing.assert_array_equal(g_z["velocity"], g_d["velocity"])
    monkeypatch.undo()
    # float16 is lossy: the gradient moves, by a measured small amount
    _, g_h, _ = run(stepper, cot, schedule, stores.DiskStore(tmp_path, compression="float16"))
    err = np.abs(g_h["velocity"] - g_d["velocity"]).max() / np.abs(g_d["velocity"]).max()
    assert 0 < err < 1e-3, err      # measured 1.2e-4
    stepper.destroy()


def test_disk_store_zfp_bounds_the_error(tmp_path) -> None:
    # zfp's fixed-accuracy mode: every value within tolerance x its array's largest
    # magnitude; the gradient moves less as the bound tightens, and never by nothing.
    zfpy = pytest.importorskip("zfpy")
    import diffsim.stores as stores

    z, x = np.meshgrid(np.arange(40), np.arange(6 * 16), indexing="ij")   # a smooth wave
    arr = (1e-7 * np.sin(0.3 * z + 0.2 * x)).reshape(1, 40, 6, 16).repeat(2, 0)
    arr = arr.astype(np.float32)
    store = stores.DiskStore(tmp_path, compression="zfp", tolerance=1e-4)
    data, stored, bound = store._encode(arr)
    back = zfpy.decompress_numpy(bytes(data)).reshape(arr.shape)
    assert stored == "zfp" and bound == pytest.approx(1e-4 * np.abs(arr).max())
    assert 0 < np.abs(back - arr).max() <= bound and len(data) < arr.nbytes
    stepper, cot = acoustic("arrays")
    schedule = Binomial(slots=3)
    _, g_d, _ = run(stepper, cot, schedule, DeviceStore())
    errors = []
    for tol in (1e-3, 1e-6):
        store = stores.DiskStore(tmp_path, compression="zfp", tolerance=tol)
        _, g, _ = run(stepper, cot, schedule, store)
        errors.append(np.abs(g["velocity"] - g_d["velocity"]).max()
                      / np.abs(g_d["velocity"]).max())
        assert store.stats["bytes_written"] < store.stats["state_bytes"]
        store.close()
    assert 0 < errors[1] < errors[0] < 1e-2, errors
    stepper.destroy()


def test_folders_of_killed_runs_are_removed_by_the_next_store(tmp_path) -> None:
    import socket
    import subprocess
    import sys

    import diffsim.stores as stores

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = socket.gethostname()
    owners = {"killed": f"{host} {dead.pid}", "alive": f"{host} {os.getppid()}",
              "elsewhere": f"another-host {dead.pid}", "unowned": None}
    for name, owner in owners.items():
        folder = tmp_path / f"diffsim-checkpoints-{name}"
        folder.mkdir()
        (folder / "slot000000.ckpt").write_bytes(b"x" * 100)
        if owner is not None:
            (folder / "owner").write_text(owner + "\n")
    stepper, cot = chain("hand")
    store = stores.DiskStore(tmp_path)
    Tape(stepper, checkpoint=Binomial(slots=3), store=store)
    left = sorted(p.name for p in tmp_path.iterdir() if p.name != os.path.basename(store.path))
    assert left == ["diffsim-checkpoints-alive", "diffsim-checkpoints-elsewhere",
                    "diffsim-checkpoints-unowned"]
    store.close()
    stepper.destroy()


def test_disk_store_refuses_files_it_cannot_trust(tmp_path) -> None:
    import diffsim.stores as stores

    stepper, cot = chain("hand")
    with pytest.raises(ValueError, match="compression='lz4'"):
        stores.DiskStore(tmp_path, compression="lz4")
    with pytest.raises(ValueError, match="tolerance=2"):
        stores.DiskStore(tmp_path, compression="zfp", tolerance=2)
    with pytest.raises(ValueError, match="does not exist"):
        stores.DiskStore(tmp_path / "nowhere")

    def damaged(edit) -> None:
        store = stores.DiskStore(tmp_path)
        tape = Tape(stepper, checkpoint=StoreAll(), store=store)
        tape.forward()
        store.flush()
        edit(store)
        with pytest.raises(RuntimeError, match="checkpoint file .*slot0000"):
            tape.backward(cot)
        store.close()

    def truncate(store) -> None:
        path = store._file(3)
        data = open(path, "rb").read()
        open(path, "wb").write(data[:-10])

    def foreign(store) -> None:
        other = stores.DiskStore(tmp_path)
        Tape(stepper, checkpoint=StoreAll(), store=other).forward()
        other.flush()
        os.replace(other._file(3), store._file(3))
        other.close()

    def killed_mid_write(store) -> None:     # only the temporary file of a write remains
        os.replace(store._file(3), store._file(3) + ".tmp")

    def wrong_step(store) -> None:
        os.replace(store._file(2), store._file(3))

    damaged(truncate)
    damaged(foreign)
    damaged(killed_mid_write)
    damaged(wrong_step)
    stepper.destroy()


def test_tiered_store_splits_slots_between_ram_and_disk(tmp_path) -> None:
    import diffsim.stores as stores

    stepper, cot = acoustic("arrays")
    schedule = Binomial(slots=5)
    _, g_d, _ = run(stepper, cot, schedule, DeviceStore())
    state = stepper.state_nbytes
    disk = stores.DiskStore(tmp_path, compression="lossless")
    store = stores.TieredStore(("host", HostStore(), 2), ("disk", disk, None))
    _, g_t, rep = run(stepper, cot, schedule, store)
    assert store.layout == {"host": 2, "disk": 3} and rep.store == "host+disk"
    assert disk.stats["files"] > 0 and store.nbytes == 2 * state
    np.testing.assert_array_equal(g_t["velocity"], g_d["velocity"])
    store.close()
    with pytest.raises(ValueError, match="can only be the first tier"):
        stores.TieredStore(("host", HostStore(), 2), ("memory", DeviceStore(), None))
    with pytest.raises(ValueError, match="at most once"):
        stores.TieredStore(("disk", HostStore(), 2), ("disk", DiskStore(tmp_path), None))
    with pytest.raises(ValueError, match="tiers .'disk'. this store lacks"):
        Tape(stepper, checkpoint=TwoLevel(slots=2, disk_slots=3),
             store=stores.TieredStore(("memory", DeviceStore(), None)))
    stepper.destroy()


@pytest.mark.slow   # every stepper x three plans; test_budget_spills_to_disk_by_itself runs by default
def test_two_level_through_device_host_and_disk_is_bitwise(tmp_path) -> None:
    # The tape builds the tiered store the schedule's layout asks for; the device tier's
    # slots stay in the fused kernels, the host's and disk's move around the runs. Every
    # stepper's gradients and costate traces equal store-all's bit for bit.
    for name, stepper, cot in steppers():
        _, g0, r0 = run(stepper, cot, StoreAll(), DeviceStore())
        plans = (TwoLevel(slots=2, disk_slots=3), TwoLevel(slots=3, every=4, host_slots=1),
                 TwoLevel(slots=1, disk_slots=40))
        for plan in plans:
            _, g1, r1 = run(stepper, cot, plan, None)
            for key in g0:
                np.testing.assert_array_equal(g1[key], g0[key], err_msg=f"{name} {plan}")
            np.testing.assert_array_equal(r1.costate, r0.costate)
            disk = r1.tiers[-1]
            assert disk.name == "disk" and disk.saves == disk.loads > 0
            assert r1.io["state_bytes"] == disk.saves * stepper.state_nbytes
            assert r1.io["bytes_read"] == r1.io["bytes_written"] > 0
            assert r1.store == ("device+host+disk" if plan.host_slots else "device+disk")
            assert r1.forward_steps == plan.cost(stepper.steps).forward_steps
        stepper.destroy()


def test_budget_spills_to_disk_by_itself(tmp_path) -> None:
    stepper, cot = acoustic("arrays")
    _, g0, _ = run(stepper, cot, StoreAll(), DeviceStore())
    state = stepper.state_nbytes
    budget = Budget(bytes=2 * state, disk=20 * state, directory=tmp_path,
                    bandwidth={"disk": 1e12})
    _, g1, rep = run(stepper, cot, budget, None)
    assert isinstance(rep.schedule, TwoLevel) and rep.store == "device+disk"
    assert [t.name for t in rep.tiers] == ["memory", "disk"] and rep.tiers[1].saves > 0
    assert rep.io["bytes_written"] >= rep.tiers[1].saves * state
    np.testing.assert_array_equal(g1["velocity"], g0["velocity"])
    assert "disk:" in rep.summary() and "tiers: memory" in rep.summary()
    stepper.destroy()
