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
