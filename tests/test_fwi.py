"""Full-waveform inversion: data, models, the driver's gradient, resume, Dask, CLI errors."""

from __future__ import annotations

import functools
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import data_folder

from diffsim.fwi import (
    Inversion,
    ShotData,
    Stage,
    illumination,
    lowpass,
    serial_evaluator,
    surface_acquisition,
)
from diffsim.gradcheck import taylor_test
from diffsim.models import builtin_model, load_model, smooth
from diffsim.wave import ricker, simulate

DATA = data_folder()
needs_data = pytest.mark.skipif(not (DATA / "marmousi2_vp_20m.npy").is_file(),
                                reason=f"real models not found in {DATA} (set DIFFSIM_DATA)")


@functools.lru_cache
def tiny_problem(shots: int = 2) -> tuple[np.ndarray, np.ndarray, ShotData]:
    """A 20 x 36 layered model, its smoothed start and data (computed once; read-only)."""
    truth = builtin_model("layered", (20, 36), 20.0).velocity
    initial = smooth(truth, 3.0)
    dt, nt = 2e-3, 120
    src, rec = surface_acquisition(truth.shape, 20.0, shots, 12, source_depth=40.0,
                                   receiver_depth=20.0)
    w = ricker(10.0, dt, nt)
    kw = dict(order=4, pml_width=6, pml_velocity=4000.0, pml_frequency=10.0)
    observed = simulate(truth, 20.0, dt, w, src, rec, **kw).astype(np.float64)
    return truth, initial, ShotData(20.0, dt, w, src, rec, observed, **kw)


@functools.lru_cache
def shared_evaluator():
    """One serial evaluator for the tests on tiny_problem(): its simulations compile once."""
    return serial_evaluator()


def test_lowpass_keeps_low_removes_high_frequencies_and_commutes_with_simulation() -> None:
    dt = 1e-3
    t = np.arange(4000) * dt
    low, high = np.sin(2 * np.pi * 3 * t), np.sin(2 * np.pi * 40 * t)
    out = lowpass(low + high, dt, 10.0)
    spectrum = np.abs(np.fft.rfft(out[1000:] * np.hanning(3000)))
    freqs = np.fft.rfftfreq(3000, dt)
    at = lambda f: spectrum[np.argmin(np.abs(freqs - f))]  # noqa: E731
    ref = np.abs(np.fft.rfft(low[1000:] * np.hanning(3000)))[np.argmin(np.abs(freqs - 3))]
    assert at(3.0) == pytest.approx(ref, rel=1e-2)
    assert at(40.0) < 1e-4 * ref   # (Hann leakage of the 3 Hz line; unfiltered: ~ref)
    w = ricker(8.0, dt, 1000)
    np.testing.assert_array_equal(lowpass(w, dt, None), w)
    with pytest.raises(ValueError, match=r"cutoff=600.0 Hz must lie in \(0, 500\) Hz"):
        lowpass(w, dt, 600.0)
    # filtering the data == simulating with the filtered wavelet (what frequency stages rely
    # on); one stepper, so the PML profile (tuned to the wavelet at construction) is shared
    from diffsim import rollout
    from diffsim.wave import AcousticStepper

    _, initial, data = tiny_problem()
    stepper = AcousticStepper(initial, 20.0, data.dt, data.wavelet, data.sources, data.receivers,
                              order=4, pml_width=6)
    rollout(stepper)
    filtered_data = lowpass(stepper.traces_array(), data.dt, 8.0)
    stepper.set_param("wavelet", np.broadcast_to(lowpass(data.wavelet, data.dt, 8.0),
                                                 (data.shots, 1, data.wavelet.size)))
    rollout(stepper)
    np.testing.assert_allclose(stepper.traces_array(), filtered_data,
                               atol=1e-10 * np.abs(filtered_data).max())
    stepper.destroy()


def test_surface_acquisition_and_its_errors() -> None:
    src, rec = surface_acquisition((50, 101), 10.0, 5, 11, source_depth=10.0, receiver_depth=0.0)
    assert src.shape == (5, 2) and rec.shape == (11, 2)
    assert np.all(src[:, 0] == 10.0) and rec[0, 1] == 0.0 and rec[-1, 1] == 1000.0
    assert np.all(np.diff(src[:, 1]) > 0)
    with pytest.raises(ValueError, match=r"source_depth=600.0 m must lie in \[0, 490\] m"):
        surface_acquisition((50, 101), 10.0, 5, 11, source_depth=600.0, receiver_depth=0.0)
    with pytest.raises(ValueError, match="shots=0 must be a positive integer"):
        surface_acquisition((50, 101), 10.0, 0, 11, source_depth=10.0, receiver_depth=0.0)


@needs_data
def test_real_models_load_with_checksums_and_resample() -> None:
    m = load_model("marmousi2", DATA)
    assert m.velocity.shape == (176, 851) and m.spacing == 20.0
    assert 1000 < m.velocity.min() < 1100 and m.velocity.max() == pytest.approx(4700.0)
    coarse = m.resample(40.0)
    assert coarse.velocity.shape == (88, 426) and coarse.spacing == 40.0
    assert coarse.extent == pytest.approx((3480.0, 17000.0))
    crop = m.crop((0.0, 1000.0), (2000.0, 4000.0))
    assert crop.velocity.shape == (51, 101)
    np.testing.assert_array_equal(crop.velocity, m.velocity[:51, 100:201])
    for name in ("overthrust", "marmousi"):
        assert load_model(name, DATA).velocity.ndim == 2


def test_missing_or_corrupt_model_files_say_how_to_get_them(tmp_path: pathlib.Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DIFFSIM_DATA", raising=False)
    with pytest.raises(FileNotFoundError, match="needs a data folder, and none was given. Pass "
                       "--data DIR .* `diffsim data get overthrust --to DIR` downloads it"):
        load_model("overthrust")
    with pytest.raises(FileNotFoundError, match="overthrust_vp_25m.npy does not exist"):
        load_model("overthrust", tmp_path)
    np.save(tmp_path / "marmousi2_vp_20m.npy", np.ones((2, 2), np.float32))
    (tmp_path / "marmousi2_vp_20m.json").write_text(json.dumps(
        {"nz": 2, "nx": 2, "dx": 20.0, "dz": 20.0, "sha256_npy": "0" * 64}))
    with pytest.raises(ValueError, match="does not match the SHA-256"):
        load_model("marmousi2", tmp_path)
    with pytest.raises(ValueError, match="crop z=\\(0.0, 99.0\\) m must satisfy"):
        builtin_model("layered", (10, 10), 10.0).crop((0.0, 99.0))


def test_the_optimisers_gradient_is_exact_through_the_preconditioner(tmp_path: pathlib.Path
                                                                     ) -> None:
    """F(δ) = misfit(clip(v0 + S W δ)) and its gradient Wᵀ Sᵀ (dL/dv): Taylor slopes 1 and 2."""
    truth, initial, data = tiny_problem()
    light = illumination(initial, data)
    iz, ix = np.unravel_index(np.argmax(light), light.shape)
    assert iz <= 4 and np.min(np.abs(data.sources[:, 1] / 20.0 - ix)) <= 3   # brightest at a source
    inv = Inversion(data=data, initial=initial, stages=[Stage(None, 1)], bounds=(1000.0, 4000.0),
                    evaluator=shared_evaluator(), out=tmp_path, truth=truth, fixed_rows=2,
                    depth_power=1.0, smoothing=1.5, illumination=light, echo=None)
    delta0 = np.random.default_rng(0).normal(0.0, 0.1, initial.size)

    def value(delta: np.ndarray) -> float:
        return inv._evaluate(0, initial, data, delta)[0]

    grad = inv._evaluate(0, initial, data, delta0)[1]
    direction = np.random.default_rng(1).normal(size=initial.size)
    result = taylor_test(value, delta0, direction, grad, h0=0.5)
    assert result.second_order == pytest.approx(2.0, abs=0.15), result
    # fixed rows never move
    v = inv._evaluate(0, initial, data, direction)[2]
    np.testing.assert_array_equal(v[:2], initial[:2])


def test_progress_lines_show_the_relative_misfit_and_a_plain_stop_reason(
        tmp_path: pathlib.Path) -> None:
    truth, initial, data = tiny_problem()
    lines: list[str] = []
    Inversion(data=data, initial=initial, stages=[Stage(None, 2)], bounds=(1000.0, 4000.0),
              evaluator=shared_evaluator(), out=tmp_path, truth=truth, echo=lines.append).run()
    progress = [x for x in lines if x.startswith("[")]
    assert len(progress) == 3 and "  0/2" in progress[0] and "  2/2" in progress[-1]
    for line in progress:   # the relative L2 misfit of the stage's data, not the raw loss
        misfit = float(line.split("stage misfit ")[1].split()[0])
        assert 0.0 < misfit < 1.0, line
    assert "model error" in progress[-1]
    ended = [x for x in lines if x.startswith("stage 1 ended after")]
    assert len(ended) == 1 and "STOP" not in ended[0] and ended[0].split(": ", 1)[1][0].islower()


class Crash(RuntimeError):
    pass


def test_resume_after_a_crash_gives_the_uninterrupted_model(tmp_path: pathlib.Path) -> None:
    truth, initial, data = tiny_problem()
    stages = [Stage(6.0, 3), Stage(None, 2)]

    def inversion(out: pathlib.Path, evaluator: object) -> Inversion:
        return Inversion(data=data, initial=initial, stages=stages, bounds=(1000.0, 4000.0),
                         evaluator=evaluator, out=out, truth=truth, echo=None)

    inner = shared_evaluator()   # one compiled stepper for all three runs
    whole = inversion(tmp_path / "whole", inner).run()
    calls = {"n": 0}

    def crashing(v: np.ndarray, d: ShotData) -> tuple[float, np.ndarray]:
        calls["n"] += 1
        if calls["n"] == 6:
            raise Crash("injected")
        return inner(v, d)

    with pytest.raises(Crash):
        inversion(tmp_path / "cut", crashing).run()
    done = json.loads((tmp_path / "cut" / "history.json").read_text())
    assert 1 <= len(done) < len(whole.history)
    resumed = inversion(tmp_path / "cut", inner).run()
    np.testing.assert_array_equal(resumed.model, whole.model)
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in whole.history]
    assert resumed.evaluations < whole.evaluations   # finished work was read back
    assert whole.history[-1]["model_error"] < whole.history[0]["model_error"]
    assert all(last < first for first, last in whole.stage_losses)


@pytest.mark.slow   # two worker processes that compile their own kernels: about a minute
def test_dask_with_two_workers_equals_serial() -> None:
    pytest.importorskip("distributed")
    from diffsim.fwi import dask_evaluator

    _, initial, data = tiny_problem(shots=3)
    loss, grad = serial_evaluator()(initial, data)
    evaluate, close = dask_evaluator(workers=2)
    try:
        loss2, grad2 = evaluate(initial, data)
        assert loss2 == pytest.approx(loss, rel=1e-12)
        np.testing.assert_allclose(grad2, grad, rtol=1e-10, atol=1e-12 * np.abs(grad).max())
        # an existing cluster, by address (--scheduler)
        other, close_other = dask_evaluator(scheduler=evaluate.client.scheduler.address)
        try:
            assert other(initial, data)[0] == pytest.approx(loss, rel=1e-12)
        finally:
            close_other()
        # a worker killed mid-evaluation costs a recomputation, not the result
        import threading

        pids = list(evaluate.client.run(os.getpid).values())
        killer = threading.Timer(1.0, os.kill, (pids[0], signal.SIGKILL))
        killer.start()
        part = data.subset([0, 2])   # new shot groups: the workers compile (seconds)
        loss3, grad3 = evaluate(initial * 1.01, part)
        killer.join()
        assert pids[0] not in evaluate.client.run(os.getpid).values()
        loss4, grad4 = serial_evaluator()(initial * 1.01, part)
        assert loss3 == pytest.approx(loss4, rel=1e-12)
        np.testing.assert_allclose(grad3, grad4, rtol=1e-10, atol=1e-12 * np.abs(grad4).max())
    finally:
        close()


def test_segy_round_trip(tmp_path: pathlib.Path) -> None:
    from diffsim.segy import read_segy, write_segy

    traces = np.random.default_rng(0).normal(size=(3, 5, 40)).astype(np.float32)
    src = np.array([[10.0, 100.0], [10.0, 200.0], [10.0, 300.0]])
    rec = np.stack([np.zeros(5), np.linspace(0, 400, 5)], axis=1)
    write_segy(tmp_path / "d.sgy", traces, 2e-3, src, rec)
    back, dt = read_segy(tmp_path / "d.sgy")
    np.testing.assert_array_equal(back, traces)
    assert dt == pytest.approx(2e-3)
    with pytest.raises(ValueError, match="whole number of microseconds"):
        write_segy(tmp_path / "e.sgy", traces, 1.5e-7, src, rec)


def test_segy_geometry_and_unreadable_files(tmp_path: pathlib.Path) -> None:
    from diffsim.segy import read_segy, read_segy_geometry, write_segy

    src = np.array([[10.0, 100.0], [10.0, 300.0]])
    rec = np.array([[[20.0, x] for x in (0.0, 150.0, 400.0)], [[20.0, x] for x in (50.0, 200.0, 450.0)]])
    write_segy(tmp_path / "g.sgy", np.ones((2, 3, 25)), 4e-3, src, rec)
    geometry = read_segy_geometry(tmp_path / "g.sgy")
    assert (geometry.dt, geometry.samples, geometry.located) == (pytest.approx(4e-3), 25, True)
    np.testing.assert_allclose(geometry.sources, src)
    np.testing.assert_allclose(geometry.receivers, rec)
    (tmp_path / "bad.sgy").write_bytes(b"not a SEG-Y file at all")
    for reader in (read_segy, read_segy_geometry):
        with pytest.raises(ValueError, match="bad.sgy: not a readable SEG-Y file"):
            reader(tmp_path / "bad.sgy")


def test_observed_segy_must_match_the_scenarios_acquisition(tmp_path: pathlib.Path) -> None:
    from diffsim.scenarios._fwi_job import _read_observed
    from diffsim.segy import write_segy

    _, _, data = tiny_problem()
    notes: list[str] = []
    write_segy(tmp_path / "ok.sgy", data.observed, data.dt, data.sources, data.receivers)
    got = _read_observed(tmp_path / "ok.sgy", data, notes.append)
    np.testing.assert_allclose(got, data.observed, rtol=1e-6, atol=1e-12)   # float32 on disk
    write_segy(tmp_path / "dt.sgy", data.observed, 2 * data.dt, data.sources, data.receivers)
    with pytest.raises(ValueError, match="sample interval is 4 ms but this scenario samples at 2 ms"):
        _read_observed(tmp_path / "dt.sgy", data, notes.append)
    moved = np.array(data.sources, dtype=np.float64)
    moved[1, 1] += 100.0
    write_segy(tmp_path / "src.sgy", data.observed, data.dt, moved, data.receivers)
    with pytest.raises(ValueError, match="shot 1 has its source at x = .* m \\(scenario: .* m\\)"):
        _read_observed(tmp_path / "src.sgy", data, notes.append)
    shifted = np.array(data.receivers, dtype=np.float64)
    shifted[-1, 1] += 60.0
    write_segy(tmp_path / "rec.sgy", data.observed, data.dt, data.sources, shifted)
    with pytest.raises(ValueError, match="receiver 11 is at x = "):
        _read_observed(tmp_path / "rec.sgy", data, notes.append)
    np.save(tmp_path / "short.npy", data.observed[:, :, :10])
    with pytest.raises(ValueError, match="holds traces of shape \\[2, 12, 10\\]"):
        _read_observed(tmp_path / "short.npy", data, notes.append)
    assert not notes


def test_an_unreachable_scheduler_is_one_sentence() -> None:
    from diffsim.fwi import dask_evaluator

    with pytest.raises(ValueError, match="no Dask scheduler answered .* start one"):
        dask_evaluator(scheduler="tcp://127.0.0.1:1", connect_timeout=1.0)


def test_every_failed_start_is_one_line_before_the_folder_exists(tmp_path: pathlib.Path) -> None:
    bad = tmp_path / "bad.sgy"
    bad.write_bytes(b"garbage")
    out = tmp_path / "out"
    for extra, message in ((["--set", "dt=0.01"], "exceeds the stability (CFL) limit"),
                           (["--checkpoint", "budget:1KiB"], "cannot hold one state"),
                           (["--set", f"observed_file={bad}"], "not a readable SEG-Y file")):
        res = cli("run", "layered", "--smoke", *extra, "--out", str(out))
        assert res.returncode == 2 and message in res.stderr, res.stderr[-2000:]
        assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1
        assert not out.exists(), extra
    res = cli("run", "layered", "--smoke", "--set", "dt=0.01", "--out", str(out), "--debug")
    assert res.returncode != 0 and "Traceback" in res.stderr and "CFL" in res.stderr


def cli(*args: str, **kw: object) -> subprocess.CompletedProcess:
    env = {**os.environ, "DIFFSIM_DATA": str(DATA)}
    return subprocess.run([sys.executable, "-m", "diffsim.cli", *args], capture_output=True,
                          text=True, timeout=600, env=env, **kw)


def test_cli_fwi_bad_inputs(tmp_path: pathlib.Path) -> None:
    res = cli("run", "layered", "--set", "model=salt")
    assert res.returncode == 2
    assert "model='salt' is not allowed; choose one of 'layered', 'camembert', 'marmousi2'" in res.stderr
    res = cli("run", "layered", "--set", "vmin=5000")
    assert res.returncode == 2 and "vmin=5000.0 must be below vmax=4000.0" in res.stderr
    res = cli("run", "layered", "--set", "stages=[-1]")
    assert res.returncode == 2 and "stages=[-1.0] must list corner frequencies" in res.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text('class = "FwiScenario"\nshots = "many"\n')
    res = cli("run", str(bad))
    assert res.returncode == 2 and "shots='many' must be an integer" in res.stderr
    env = {k: v for k, v in os.environ.items() if k != "DIFFSIM_DATA"}
    res = subprocess.run([sys.executable, "-m", "diffsim.cli", "run", "overthrust", "--smoke"],
                         capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 2 and "needs a data folder, and none was given" in res.stderr
    res = cli("run", "layered", "--smoke", "--set", "observed_file=nowhere/obs.sgy",
              "--out", str(tmp_path / "never"))
    assert res.returncode == 2 and "observed_file='nowhere/obs.sgy': no such file" in res.stderr
    assert not (tmp_path / "never").exists()               # checked before the folder is made
    (tmp_path / "held" / "evaluations").mkdir(parents=True)
    (tmp_path / "held" / "history.json").write_text(json.dumps([{"stage": 0, "loss": 1.0}]))
    res = cli("run", "layered", "--smoke", "--out", str(tmp_path / "held"))
    assert res.returncode == 2 and "already holds a run; pass --resume" in res.stderr


def test_a_failed_start_never_blocks_the_corrected_command(tmp_path: pathlib.Path) -> None:
    """What a start that finished no iteration leaves behind is replaced, not reused."""
    out = tmp_path / "run"
    (out / "evaluations").mkdir(parents=True)
    (out / "scenario.toml").write_text('class = "FwiScenario"\nshots = 3\n')
    np.save(out / "observed.npy", np.full((3, 2, 2), 7.0))   # stale data of another scenario
    (out / "notes.txt").write_text("mine")
    res = cli("run", "layered", "--smoke", "--quiet", "--out", str(out))
    assert res.returncode == 0, res.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert np.load(out / "observed.npy").shape[0] == summary["scenario"]["shots"] != 3
    assert (out / "notes.txt").read_text() == "mine"            # not ours: left alone
    assert "FwiScenario" in (out / "scenario.toml").read_text()
    assert len(json.loads((out / "history.json").read_text())) >= 1


def test_cli_kill_minus_9_then_resume_matches_an_uninterrupted_run(tmp_path: pathlib.Path) -> None:
    args = ["run", "layered", "--smoke", "--quiet", "--iterations", "4"]
    full = cli(*args, "--out", str(tmp_path / "full"))
    assert full.returncode == 0, full.stderr[-3000:]
    env = {**os.environ, "DIFFSIM_DATA": str(DATA)}
    cut = tmp_path / "cut"
    proc = subprocess.Popen([sys.executable, "-m", "diffsim.cli", *args, "--out", str(cut)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and not (cut / "model_0002.npy").is_file():
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (cut / "model_0002.npy").is_file(), "the run never reached iteration 2"
    assert not (cut / "summary.json").exists()
    res = cli(*args, "--out", str(cut))
    assert res.returncode == 2 and "--resume" in res.stderr
    res = cli(*args, "--out", str(cut), "--resume")
    assert res.returncode == 0, res.stderr[-3000:]
    np.testing.assert_array_equal(np.load(cut / "model_final.npy"),
                                  np.load(tmp_path / "full" / "model_final.npy"))
    summary = json.loads((cut / "summary.json").read_text())
    assert summary["final_misfit"] < summary["initial_misfit"]
    for name in ("models.png", "shot_gather.png", "gradient.png", "loss.png", "wavefield.gif",
                 "costate.png",
                 "history.json", "observed.sgy", "model_0004.npy"):
        assert (cut / name).stat().st_size > 0, name
    res = cli(*args, "--out", str(cut), "--resume", "--set", "shots=3")
    assert res.returncode == 2 and "differs from the one in" in res.stderr and "shots" in res.stderr


@pytest.mark.slow   # 30 s cold: compiles a second engine's kernels for the factory
def test_evaluators_take_any_simulation_factory() -> None:
    """The evaluators speak only the Simulation front-end: a factory chooses the physics."""
    from diffsim.acoustic import Simulation
    from diffsim.fwi import acoustic_simulation

    truth, initial, data = tiny_problem()
    built = []

    def arrays_engine(velocity: np.ndarray, d: ShotData) -> Simulation:
        built.append(d.shots)
        return Simulation(velocity, d.spacing, d.dt, d.wavelet, d.sources, d.receivers,
                          engine="arrays", **d.stepper_options())

    default, custom = serial_evaluator(), serial_evaluator(simulation=arrays_engine)
    try:
        loss_f, grad_f = default(initial, data)
        loss_a, grad_a = custom(initial, data)
        assert built == [2]
        custom(initial * 1.01, data)          # the kept simulation is reused
        assert built == [2]
        assert loss_a == pytest.approx(loss_f, rel=1e-12)
        np.testing.assert_allclose(grad_a, grad_f, rtol=1e-9, atol=1e-12 * np.abs(grad_f).max())
        np.testing.assert_allclose(custom.forward(truth, data), data.observed, rtol=1e-10,
                                   atol=1e-14)
        with acoustic_simulation(truth, data) as sim:
            np.testing.assert_array_equal(sim.simulate()["traces"], default.forward(truth, data))
        with acoustic_simulation(truth, data, engine="arrays") as sim:   # smoke runs use it
            assert type(sim._stepper()).__name__ == "AcousticStepper"
            np.testing.assert_allclose(sim.simulate()["traces"], data.observed, rtol=1e-10,
                                       atol=1e-14)
    finally:
        default.close()
        custom.close()


def test_marmousi2_ships_with_the_package(tmp_path: pathlib.Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Marmousi2 (CC BY 4.0) loads with no data folder; the others never ship."""
    from diffsim.models import PACKAGED

    monkeypatch.delenv("DIFFSIM_DATA", raising=False)
    shipped = sorted(p.name for p in PACKAGED.iterdir() if p.suffix in (".npy", ".json"))
    assert shipped == sorted(f"marmousi2_{q}_20m.{e}" for q in ("vp", "vs", "rho")
                             for e in ("npy", "json"))
    assert "CC BY 4.0" in (PACKAGED / "README.md").read_text()
    m = load_model("marmousi2")                      # SHA-256 checked against the sidecar
    assert m.velocity.shape == (176, 851) and m.spacing == 20.0
    for q in ("vs", "rho"):
        assert load_model(f"marmousi2_{q}_20m").velocity.shape == (176, 851)
    if (DATA / "marmousi2_vp_20m.npy").is_file():
        np.testing.assert_array_equal(m.velocity, load_model("marmousi2", DATA).velocity)
    env = {k: v for k, v in os.environ.items() if k != "DIFFSIM_DATA"}
    res = subprocess.run([sys.executable, "-m", "diffsim.cli", "run", "marmousi2", "--smoke",
                          "--out", str(tmp_path / "m2"), "--quiet"],
                         capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    assert (tmp_path / "m2" / "summary.json").is_file()


def test_your_own_model_from_npy_or_segy(tmp_path: pathlib.Path) -> None:
    """model = a .npy or SEG-Y file with model_spacing: read, checked, cropped, resampled."""
    import segyio.tools

    from diffsim.models import model_from_file
    from diffsim.scenarios import FwiScenario

    truth = builtin_model("layered", (30, 60), 20.0).velocity
    np.save(tmp_path / "mine.npy", truth.astype(np.float32))
    segyio.tools.from_array2D(str(tmp_path / "mine.sgy"),
                              np.ascontiguousarray(truth.T, dtype=np.float32), format=5)
    for name in ("mine.npy", "mine.sgy"):
        m = model_from_file(tmp_path / name, 20.0)
        np.testing.assert_allclose(m.velocity, truth, rtol=1e-6)
        sc = FwiScenario(model=str(tmp_path / name), model_spacing=20.0, spacing=40.0)
        v, h = sc.true_model()
        assert v.shape == (15, 30) and h == 40.0
        assert "model_spacing = 20.0" in sc.to_toml() and "shape =" not in sc.to_toml()
    with pytest.raises(ValueError, match="is a file: set model_spacing to its cell size"):
        FwiScenario(model=str(tmp_path / "mine.npy"))
    with pytest.raises(ValueError, match=r"model='salt' is not allowed; .* or the path of a "
                       r"model file \(.npy, .sgy, .segy\)"):
        FwiScenario(model="salt")
    np.save(tmp_path / "kms.npy", truth / 1000.0)
    with pytest.raises(ValueError, match="these look like km/s"):
        model_from_file(tmp_path / "kms.npy", 20.0)
    bad = truth.copy()
    bad[3, 4] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    with pytest.raises(ValueError, match=r"NaN or Inf at \[z, x\] = \[3, 4\]"):
        model_from_file(tmp_path / "nan.npy", 20.0)
    (tmp_path / "junk.sgy").write_bytes(b"not a segy file" * 10)
    with pytest.raises(ValueError, match="is not a readable SEG-Y file"):
        model_from_file(tmp_path / "junk.sgy", 20.0)
    with pytest.raises(FileNotFoundError, match="model file .*none.npy does not exist"):
        model_from_file(tmp_path / "none.npy", 20.0)
    res = cli("run", str(tmp_path / "mine.npy"), "--smoke", "--quiet", "--out", str(tmp_path / "o"))
    assert res.returncode == 2 and "is a model file, not a scenario; invert it with an FWI " \
        "scenario: diffsim run layered --set model=" in res.stderr
    res = cli("run", "layered", "--smoke", "--quiet", "--set", f"model={tmp_path / 'mine.npy'}",
              "--set", "model_spacing=20", "--out", str(tmp_path / "o"))
    assert res.returncode == 0, res.stderr[-2000:]


@pytest.mark.slow   # the tape-level spill tests run by default (test_stores)
def test_fwi_gradients_spill_to_disk_with_the_same_bits(tmp_path: pathlib.Path) -> None:
    # The schedule text the CLI takes (--checkpoint budget:SIZE,disk:SIZE,dir:PATH) reaches
    # every gradient; a memory tier of two states and a disk tier give store-all's bits.
    _, initial, data = tiny_problem()
    reference = serial_evaluator(checkpoint="all")
    loss, grad = reference(initial, data)
    group, _ = reference._parts(initial, data)[0]
    state = group.simulation._stepper().state_nbytes
    spill = serial_evaluator(checkpoint=f"budget:{2 * state},disk:{30 * state},dir:{tmp_path}")
    plan = spill.check(initial, data)
    assert type(plan).__name__ == "TwoLevel" and plan.tier_slots(119)["disk"] > 0, plan
    loss2, grad2 = spill(initial, data)
    assert loss2 == loss
    np.testing.assert_array_equal(grad2, grad)
