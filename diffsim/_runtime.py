"""The Taichi runtime: one explicit, quiet ``ti.init`` per process.

Importing diffsim calls no ``ti.init`` and allocates no field. The first object that
needs Taichi calls :func:`ensure_init`, which initialises with the defaults unless the
user called :func:`init` first. Taichi re-initialisation invalidates every live field
(and can crash the process), so a second :func:`init` with different settings raises.
"""

from __future__ import annotations

import contextlib
import io
import os
import pathlib
import platform
import sys
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

os.environ.setdefault("ENABLE_TAICHI_HEADER_PRINT", "0")

import numpy as np  # noqa: E402
import taichi as ti  # noqa: E402

__all__ = ["DType", "RuntimeInfo", "ensure_init", "info", "init", "is_initialized", "kernel_cache",
           "real", "np_real"]

#: A Taichi primitive type such as ``ti.f32`` or ``ti.i32``. Taichi ships no type hints, so
#: to a type checker this is ``Any``; the name says what is meant.
DType: TypeAlias = Any

Arch = Literal["cpu", "cuda", "vulkan", "gpu", "auto"]
Precision = Literal["f32", "f64"]

_ARCHS = ("cpu", "cuda", "vulkan", "gpu", "auto")
_PRECISIONS = ("f32", "f64")


@dataclass(frozen=True)
class RuntimeInfo:
    """What diffsim runs on.

    Attributes:
        arch: the backend in use: ``"cpu"``, ``"cuda"`` or ``"vulkan"``.
        requested_arch: what :func:`init` was asked for.
        precision: ``"f32"`` or ``"f64"``, the dtype of every field diffsim creates.
        threads: CPU threads Taichi may use (``None`` on a GPU backend).
        debug: whether Taichi's debug mode (bounds and data-access checks) is on.
        taichi_version, numpy_version, python_version, diffsim_version: versions.
        cpu: the host CPU model.
    """

    arch: str
    requested_arch: str
    precision: Precision
    threads: int | None
    debug: bool
    taichi_version: str
    numpy_version: str
    python_version: str
    diffsim_version: str
    cpu: str

    def as_dict(self) -> dict[str, object]:
        """The fields as a plain dict (for JSON)."""
        return dict(self.__dict__)


_settings: tuple[str, str, int | None, bool] | None = None
_info: RuntimeInfo | None = None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _try_init(arch: Any, **kwargs: object) -> bool:
    """``ti.init`` on ``arch`` (a Taichi arch such as ``ti.cuda``); whether it worked."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            ti.init(arch=arch, enable_fallback=False, **kwargs)
        return True
    except RuntimeError:
        return False


def _check_choice(name: str, value: object, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, one of {allowed}; got {value!r}")
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not supported; choose one of {allowed}")
    return value


def init(
    arch: Arch = "auto",
    precision: Precision = "f32",
    *,
    threads: int | None = None,
    debug: bool = False,
) -> RuntimeInfo:
    """Initialise the Taichi runtime once for this process.

    Args:
        arch: ``"cpu"``; ``"cuda"`` or ``"vulkan"`` (an error if unusable); ``"gpu"``
            (CUDA, then Vulkan; an error if neither works); ``"auto"`` (CUDA, then
            Vulkan, then CPU).
        precision: floating-point type of every field and kernel: ``"f32"`` or ``"f64"``.
        threads: CPU threads, ``None`` for all cores.
        debug: Taichi debug mode: bounds checks, and the global-data-access checks
            used by ``Tape(validate=True)``. Slow; for tests.

    Returns:
        What was initialised; see :class:`RuntimeInfo`.

    Raises:
        ValueError: an unknown arch or precision, a requested GPU that is not usable,
            or a second call with settings different from the first.
    """
    global _settings, _info
    _check_choice("arch", arch, _ARCHS)
    _check_choice("precision", precision, _PRECISIONS)
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int)
                                or threads < 1):
        raise ValueError(f"threads={threads!r} must be a positive int or None (all cores)")
    requested = (arch, precision, threads, bool(debug))
    if _settings is not None:
        if requested != _settings:
            raise ValueError(
                f"diffsim is already initialised with arch={_settings[0]!r}, "
                f"precision={_settings[1]!r}, threads={_settings[2]!r}, debug={_settings[3]!r}; "
                f"cannot switch to arch={arch!r}, precision={precision!r}, threads={threads!r}, "
                f"debug={debug!r} in the same process (Taichi re-initialisation invalidates "
                "every live field). Call diffsim.init(...) once, before creating simulations, "
                "or start a new process."
            )
        assert _info is not None
        return _info
    kwargs: dict[str, object] = {
        "default_fp": ti.f64 if precision == "f64" else ti.f32,
        "debug": bool(debug),
        "log_level": ti.WARN,
    }
    # the thread pool Taichi makes: every core this process may use (Taichi's own default
    # counts the machine's cores, affinity or not)
    kwargs["cpu_max_num_threads"] = threads or _cores()
    # Taichi's CPU pass "make_cpu_multithreading_loop" hands each thread a contiguous
    # chunk of at least 512 iterations, so a parallel loop of up to 512 iterations (rows
    # of a 400^2 grid, shots, worker tasks) runs on one thread (measured: 64 tasks of 8 ms
    # took 0.54 s on 2 threads, as on 1). Without it each iteration block is a task of
    # the thread pool, which the worker kernels (:mod:`diffsim._parallel`) rely on.
    kwargs["make_cpu_multithreading_loop"] = False
    candidates: list[tuple[str, Any]] = []  # (name, Taichi arch)
    skipped: list[str] = []
    # "gpu" and "auto" skip CUDA without a driver library (Taichi would warn on every run)
    if arch == "cuda" or (arch in ("gpu", "auto") and _cuda_driver_present()):
        candidates.append(("cuda", ti.cuda))
    elif arch in ("gpu", "auto"):
        skipped.append("cuda (no CUDA driver library found)")
    if arch in ("vulkan", "gpu", "auto"):
        candidates.append(("vulkan", ti.vulkan))
    if arch in ("cpu", "auto"):
        candidates.append(("cpu", ti.cpu))
    chosen = None
    for name, ti_arch in candidates:
        run_kwargs = dict(kwargs)
        if name != "cpu":
            run_kwargs.pop("cpu_max_num_threads", None)
        if _try_init(ti_arch, **run_kwargs):
            chosen = name
            break
    if chosen is None:
        tried = ", ".join(skipped + [name for name, _ in candidates])
        raise ValueError(
            f"arch={arch!r}: no usable backend among {tried} on this host (no GPU driver "
            "found). Use arch='cpu', or arch='auto' to fall back to the CPU."
        )
    from diffsim import __version__

    _settings = requested
    _info = RuntimeInfo(
        arch=chosen,
        requested_arch=arch,
        precision=precision,
        threads=(threads or _cores()) if chosen == "cpu" else None,
        debug=bool(debug),
        taichi_version=".".join(str(v) for v in ti.__version__),
        numpy_version=np.__version__,
        python_version=sys.version.split()[0],
        diffsim_version=__version__,
        cpu=_cpu_model(),
    )
    return _info


def _cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS and Windows have no affinity call
        return os.cpu_count() or 1


def _cuda_driver_present() -> bool:
    """Whether the CUDA driver library can be loaded (without asking Taichi, which warns)."""
    import ctypes
    import ctypes.util

    names = ["nvcuda.dll"] if sys.platform == "win32" else ["libcuda.so.1", "libcuda.so"]
    found = ctypes.util.find_library("cuda")
    for name in ([found] if found else []) + names:
        try:
            ctypes.CDLL(name)
        except OSError:
            continue
        return True
    return False


def kernel_cache() -> tuple[pathlib.Path | None, int]:
    """Taichi's offline kernel cache: its folder and how many kernels it holds.

    ``(None, 0)`` when the runtime is not initialised or the cache is off.
    """
    if _info is None:
        return None, 0
    cfg = ti.lang.impl.current_cfg()
    if not cfg.offline_cache:
        return None, 0
    folder = pathlib.Path(cfg.offline_cache_file_path)
    entries = sum(1 for _ in folder.glob("*.tic")) if folder.is_dir() else 0
    return folder, entries


def is_initialized() -> bool:
    """Whether :func:`init` has run in this process."""
    return _settings is not None


def ensure_init() -> RuntimeInfo:
    """Initialise with the defaults unless already initialised; return the runtime info."""
    if _info is None:
        return init()
    return _info


def info() -> RuntimeInfo:
    """The runtime in use (initialising with the defaults if nothing did yet)."""
    return ensure_init()


def real() -> DType:
    """The Taichi float type of the runtime precision (``ti.f32`` or ``ti.f64``)."""
    return ti.f64 if ensure_init().precision == "f64" else ti.f32


def np_real() -> type[np.floating[Any]]:
    """The NumPy float type of the runtime precision."""
    return np.float64 if ensure_init().precision == "f64" else np.float32
