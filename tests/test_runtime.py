"""diffsim.init: lazy, quiet, once per process, clear errors. Each case runs in a fresh process."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

import diffsim


def python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=120)


def test_import_calls_no_ti_init_and_prints_nothing() -> None:
    res = python("""
        import diffsim, diffsim.chain, diffsim.checkpoint, diffsim.gradcheck, diffsim.kernels.chain
        import taichi.lang.impl as impl
        assert impl.get_runtime().prog is None, "import initialised Taichi"
        assert not diffsim._runtime.is_initialized()
    """)
    assert res.returncode == 0, res.stderr
    assert res.stdout == ""


def test_init_is_quiet_and_second_different_call_raises() -> None:
    res = python("""
        import diffsim
        info = diffsim.init("cpu", "f64", threads=1)
        assert diffsim.init("cpu", "f64", threads=1) is info
        try:
            diffsim.init("cpu", "f32")
        except ValueError as e:
            print("ERR", e)
    """)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("ERR diffsim is already initialised with arch='cpu', precision='f64'")
    assert "cannot switch to arch='cpu', precision='f32'" in res.stdout
    assert "[Taichi]" not in res.stdout


def test_lazy_init_with_defaults() -> None:
    res = python("""
        import numpy as np, diffsim
        from diffsim.chain import OscillatorChain
        c = OscillatorChain(stiffness=1.0, mass=1.0, forcing=np.zeros((3, 2)), dt=0.1, observed=[0])
        i = diffsim.info()
        print(i.requested_arch, i.precision, i.arch in ("cpu", "cuda", "vulkan"))
    """)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["auto", "f32", "True"]
    if not diffsim._runtime._cuda_driver_present():   # a CPU-only host: "auto" stays quiet
        assert "libcuda" not in res.stderr, res.stderr


def test_gpu_request_without_gpu_is_a_clear_error() -> None:
    res = python("""
        import diffsim
        for arch in ("gpu", "cuda"):
            try:
                diffsim.init(arch)
                print("USING-GPU", arch)
                break
            except ValueError as e:
                print("ERR", e)
        print(diffsim.init("auto").arch)
    """)
    assert res.returncode == 0, res.stderr  # never a segfault
    if "USING-GPU" in res.stdout:
        pytest.skip("this host has a usable GPU")
    lines = res.stdout.splitlines()
    assert lines[0].startswith("ERR arch='gpu': no usable backend among cuda")
    assert "vulkan" in lines[0]
    assert "Use arch='cpu'" in lines[0]
    assert lines[1].startswith("ERR arch='cuda'")
    assert lines[2] == "cpu"


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="arch='tpu' is not supported; choose one of"):
        diffsim.init("tpu")
    with pytest.raises(ValueError, match="precision='f16' is not supported"):
        diffsim.init("cpu", "f16")
    with pytest.raises(ValueError, match="threads=0 must be a positive int"):
        diffsim.init("cpu", "f64", threads=0)


def test_info_reports_runtime() -> None:
    info = diffsim.info()
    assert info.arch == "cpu" and info.precision == "f64"
    assert info.taichi_version.startswith("1.7")
    assert info.threads >= 1
    assert set(info.as_dict()) >= {"arch", "precision", "threads", "taichi_version", "cpu"}


def test_one_dtype_rule_fields_in_the_runtime_precision_gradients_in_float64() -> None:
    """Simulated arrays come back in the runtime precision; losses and gradients in float64."""
    code = textwrap.dedent("""
        import numpy as np
        import diffsim
        diffsim.init("cpu", "f32")
        from diffsim import acoustic, springs
        from diffsim.losses import L2, FinalPosition
        v = np.full((8, 9), 2000.0)
        w = acoustic.ricker(25.0, 1e-3, 30)
        with acoustic.Simulation(v, 10.0, 1e-3, w, [[20.0, 30.0]], [[20.0, 70.0]], order=2,
                                 pml_width=4, engine="fields") as sim:
            d = sim.simulate()["traces"]
            r = sim.value_and_grad(L2(d * 0.5))
            print(d.dtype, r.grads["velocity"].dtype, type(r.loss).__name__)
        system = springs.SpringSystem([[0.0, 1.0], [0.1, 1.0]], [[0, 1]], stiffness=100.0)
        with springs.Simulation(system, 10, 1e-3) as sim:
            out = sim.simulate()
            r = sim.value_and_grad(FinalPosition(out["positions"][-1] + 0.01))
            print(out["positions"].dtype, r.grads["stiffness"].dtype, out["velocities"].dtype,
                  type(r.loss).__name__)
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.split() == ["float32", "float64", "float",
                                  "float32", "float64", "float32", "float"]


def test_worker_split_and_the_chunking_pass(monkeypatch) -> None:
    # diffsim.init turns off Taichi's pass that runs loops of up to 512 iterations on one
    # thread (a barrier between worker tasks would wait for ever under it)
    import taichi as ti

    from diffsim import _parallel

    assert ti.lang.impl.current_cfg().make_cpu_multithreading_loop is False
    monkeypatch.setattr(_parallel, "threads", lambda: 2)
    big, small = _parallel.BAND_CELLS, _parallel.BAND_CELLS - 1
    assert _parallel.split(1, big) == (2, 0)        # one large shot: bands
    assert _parallel.split(1, small) == (1, 1)      # one small shot: one thread
    assert _parallel.split(4, small) == (2, 4)      # shots dealt whole, no bands
    assert _parallel.split(3, big) == (2, 2)        # two dealt whole, the third in bands
    assert _parallel.split(3, small) == (2, 3)      # small: dealt whole, one worker gets two
    monkeypatch.setattr(_parallel, "threads", lambda: 1)
    assert _parallel.split(8, big) == (1, 8)


def test_no_worker_tasks_under_the_chunking_pass() -> None:
    # with the pass on (a runtime set up elsewhere), the engines fall back to one worker
    import taichi as ti

    from diffsim import _parallel

    cfg = ti.lang.impl.current_cfg()
    assert _parallel.threads() >= 1
    cfg.make_cpu_multithreading_loop = True
    try:
        assert _parallel.threads() == 1
        assert _parallel.split(4, 10**9) == (1, 4)
    finally:
        cfg.make_cpu_multithreading_loop = False
