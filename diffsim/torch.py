"""PyTorch interop: every diffsim simulation as a differentiable torch function.

- :func:`function` wraps any :class:`diffsim.Simulation`: named inputs (its parameters)
  in, named outputs out, gradients from the simulation's exact adjoint (:meth:`vjp`).
- :func:`acoustic` and :class:`Acoustic` (an ``nn.Module``, as Deepwave offers) for shot
  gathers; :func:`springs` for mass-spring trajectories.

The contract (each item tested):

- **Precision.** Input tensors must have the runtime precision's dtype (``float32``
  unless ``diffsim.init(precision="f64")``); anything else is a ``TypeError`` saying
  which. Outputs have that dtype; input gradients the input's dtype.
- **Devices and layouts.** Non-contiguous tensors work. Tensors on another device (a
  GPU) are copied to the host for the simulation; outputs and gradients go back to the
  device of the inputs.
- **Some inputs only.** Gradients are computed for the inputs that require them, and
  for nothing else; an input whose gradient is requested always gets one (zeros only
  when the output truly does not depend on it, never as a silent fallback).
- **Reuse.** A call with new values updates the kept simulation: nothing recompiles.
- **Once differentiable.** The backward pass is not itself differentiable: asking for a
  second derivative raises a clear error.
- **Memory.** The checkpoint schedule is a keyword (``checkpoint=``); the backward pass
  reruns the forward pass under that schedule (the forward pass keeps nothing), so a
  long rollout inside a torch graph costs the schedule's memory, not the full tape.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import torch
from numpy.typing import ArrayLike
from torch.autograd.function import once_differentiable

from diffsim._interop import geometry_key, kept, signature, spring_defaults, springs_key
from diffsim._runtime import ensure_init
from diffsim._simulation import Simulation
from diffsim.checkpoint import Schedule

__all__ = ["Acoustic", "acoustic", "function", "springs"]

_DTYPES = {"f32": torch.float32, "f64": torch.float64}


def _runtime_dtype() -> torch.dtype:
    return _DTYPES[ensure_init().precision]


def _to_numpy(name: str, value: torch.Tensor | ArrayLike, dtype: torch.dtype) -> np.ndarray:
    """A host NumPy copy of ``value``, checking a tensor's dtype against the runtime's."""
    if isinstance(value, torch.Tensor):
        if value.dtype != dtype:
            want = "float32" if dtype == torch.float32 else "float64"
            raise TypeError(
                f"{name} is a {value.dtype} tensor but the runtime precision is {want}; pass "
                f"{want} tensors (tensor.to(torch.{want})), or call "
                f"diffsim.init(precision={'f64' if dtype == torch.float32 else 'f32'!r}) "
                "before anything runs")
        host = value.detach().to("cpu")
        return host.numpy().copy() if host.is_contiguous() else host.contiguous().numpy()
    return np.asarray(value)


class _Apply(torch.autograd.Function):
    """Forward: update the simulation and simulate. Backward: its vjp."""

    @staticmethod
    def forward(ctx: Any, wrapper: _Wrapped, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        values = {name: _to_numpy(name, t, wrapper.dtype)
                  for name, t in zip(wrapper.inputs, tensors, strict=True)}
        wrapper.simulation.update(**values)
        out = wrapper.simulation.simulate()
        ctx.wrapper = wrapper
        ctx.values = values
        ctx.devices = [t.device for t in tensors]
        ctx.dtypes = [t.dtype for t in tensors]
        device = tensors[0].device if tensors else torch.device("cpu")
        return tuple(torch.from_numpy(np.ascontiguousarray(out[name])).to(device)
                     for name in wrapper.outputs)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, *grads: torch.Tensor | None) -> tuple[torch.Tensor | None, ...]:
        wrapper: _Wrapped = ctx.wrapper
        wrt = [name for name, need in zip(wrapper.inputs, ctx.needs_input_grad[1:], strict=True)
               if need]
        if not wrt:
            return (None,) * (1 + len(wrapper.inputs))
        cot = {name: g.detach().to("cpu").to(torch.float64).contiguous().numpy()
               for name, g in zip(wrapper.outputs, grads, strict=True) if g is not None}
        # the values of this call's forward pass (the simulation may have moved on since)
        wrapper.simulation.update(**ctx.values)
        result = wrapper.simulation.vjp(cot, wrt=wrt, checkpoint=wrapper.checkpoint)
        out: list[torch.Tensor | None] = [None]
        for name, device, dtype in zip(wrapper.inputs, ctx.devices, ctx.dtypes, strict=True):
            out.append(torch.from_numpy(np.ascontiguousarray(result[name])).to(device=device,
                                                                                dtype=dtype)
                       if name in result else None)
        return tuple(out)


class _Wrapped:
    """A simulation as a torch function (see :func:`function`)."""

    def __init__(self, simulation: Simulation, inputs: Sequence[str], outputs: Sequence[str],
                 checkpoint: Schedule | None) -> None:
        self.simulation = simulation
        self.inputs = tuple(inputs)
        self.outputs = tuple(outputs)
        self.checkpoint = checkpoint
        self.dtype = _runtime_dtype()

    def __call__(self, *tensors: torch.Tensor | ArrayLike, **named: torch.Tensor | ArrayLike
                 ) -> torch.Tensor | tuple[torch.Tensor, ...]:
        values = list(tensors)
        if named:
            if tensors:
                raise TypeError("give the inputs either by position or by name, not both")
            unknown = set(named) - set(self.inputs)
            if unknown:
                raise TypeError(f"unknown inputs {sorted(unknown)}; this function takes "
                                f"{list(self.inputs)}")
            values = [named[name] for name in self.inputs if name in named]
            if len(values) != len(self.inputs):
                missing = [name for name in self.inputs if name not in named]
                raise TypeError(f"missing inputs {missing}")
        if len(values) != len(self.inputs):
            raise TypeError(f"expected {len(self.inputs)} inputs {list(self.inputs)}; got "
                            f"{len(values)}")
        as_tensors = [v if isinstance(v, torch.Tensor) else torch.as_tensor(
            np.asarray(v, dtype=np.float64)).to(self.dtype) for v in values]
        result = _Apply.apply(self, *as_tensors)
        return result[0] if len(self.outputs) == 1 else result


def function(simulation: Simulation, inputs: Sequence[str] | None = None,
             outputs: Sequence[str] | None = None, *, checkpoint: Schedule | None = None
             ) -> Callable[..., torch.Tensor | tuple[torch.Tensor, ...]]:
    """Any :class:`diffsim.Simulation` as a differentiable torch function.

    Args:
        simulation: the simulation (kept; each call updates its values).
        inputs: parameter names the function takes, in order (default: the simulation's
            ``default_wrt``), e.g. ``("velocity", "wavelet")``.
        outputs: output names it returns, in order (default: every output).
        checkpoint: the schedule of every backward pass (default: the memory budget).

    Returns:
        ``f(*tensors)`` (or ``f(name=tensor, ...)``) returning one tensor, or a tuple when
        there are several outputs.

    Example::

        sim = diffsim.acoustic.Simulation(v, 10.0, 1e-3, w, src, rec)
        f = diffsim.torch.function(sim, inputs=("velocity",), outputs=("traces",))
        v_t = torch.tensor(v, dtype=torch.float32, requires_grad=True)
        loss = (f(v_t) - d_obs).pow(2).sum()
        loss.backward()                               # v_t.grad: the exact gradient
    """
    names, outs = signature(simulation, inputs, outputs)
    return _Wrapped(simulation, names, outs, checkpoint)


# -- acoustic waves --------------------------------------------------------------------------

def acoustic(velocity: torch.Tensor, spacing: float | Sequence[float], dt: float,
             wavelet: torch.Tensor | ArrayLike, sources: ArrayLike, receivers: ArrayLike, *,
             checkpoint: Schedule | None = None, **options: Any) -> torch.Tensor:
    """Shot gathers ``[shot, receiver, nt]``, differentiable in ``velocity`` and ``wavelet``.

    The arguments are those of :func:`diffsim.acoustic.simulate` (``velocity`` ``[z, x]``
    or ``[z, y, x]`` in m/s; ``wavelet`` ``[nt]``, ``[shot, nt]`` or ``[shot, source, nt]``;
    positions in m as ``(z, x)``); ``velocity`` and ``wavelet`` may be tensors. Calls with
    the same geometry reuse one kept simulation (nothing recompiles).

    Example::

        v = torch.full((100, 150), 2000.0, requires_grad=True)
        d = diffsim.torch.acoustic(v, 10.0, 1e-3, w, src, rec)   # [shot, receiver, nt]
        ((d - d_obs) ** 2).sum().backward()                       # v.grad [100, 150]
    """
    from diffsim.acoustic import Simulation as AcousticSimulation

    dtype = _runtime_dtype()
    src = np.asarray(sources, dtype=np.float64)
    rec = np.asarray(receivers, dtype=np.float64)
    key = geometry_key("acoustic", tuple(np.shape(velocity)), spacing, dt,
                       tuple(np.shape(wavelet)), src, rec, sorted(options.items()))
    # built from this call's values the first time only; every call's values reach the
    # simulation once, in the forward pass
    sim = kept(key, lambda: AcousticSimulation(
        _to_numpy("velocity", velocity, dtype), spacing, dt, _to_numpy("wavelet", wavelet, dtype),
        src, rec, **options))
    wrapped = _Wrapped(sim, ("velocity", "wavelet"), ("traces",), checkpoint)
    w_t = wavelet if isinstance(wavelet, torch.Tensor) else torch.as_tensor(
        np.asarray(wavelet, dtype=np.float64)).to(dtype)
    result = wrapped(velocity, w_t)
    assert isinstance(result, torch.Tensor)
    return result


class Acoustic(torch.nn.Module):
    """The acoustic propagator as an ``nn.Module`` holding the velocity as a parameter.

    Args:
        velocity: ``[z, x]`` or ``[z, y, x]`` in m/s (becomes ``self.velocity``, an
            ``nn.Parameter`` in the runtime precision).
        spacing: grid spacing in m.
        requires_grad: whether the velocity is trained.
        checkpoint: the schedule of every backward pass.
        **options: :class:`diffsim.acoustic.AcousticStepper` options (``order``,
            ``pml_width``, ``boundary``, ``free_surface``, ...).

    ``forward(dt, wavelet, sources, receivers)`` returns the shot gathers
    ``[shot, receiver, nt]``, as :func:`acoustic`.
    """

    def __init__(self, velocity: torch.Tensor | ArrayLike, spacing: float | Sequence[float], *,
                 requires_grad: bool = True, checkpoint: Schedule | None = None,
                 **options: Any) -> None:
        super().__init__()
        v = torch.as_tensor(np.asarray(velocity.detach().cpu() if isinstance(velocity, torch.Tensor)
                                       else velocity, dtype=np.float64))
        self.velocity = torch.nn.Parameter(v.to(_runtime_dtype()), requires_grad=requires_grad)
        self.spacing = spacing
        self.checkpoint = checkpoint
        self.options = options

    def forward(self, dt: float, wavelet: torch.Tensor | ArrayLike, sources: ArrayLike,
                receivers: ArrayLike) -> torch.Tensor:
        """Shot gathers ``[shot, receiver, nt]`` for this velocity."""
        return acoustic(self.velocity, self.spacing, dt, wavelet, sources, receivers,
                        checkpoint=self.checkpoint, **self.options)


# -- mass-spring systems ---------------------------------------------------------------------

def springs(system: Any, steps: int, dt: float, *, checkpoint: Schedule | None = None,
            backend: Literal["auto", "fused", "fields"] = "auto",
            **params: torch.Tensor | ArrayLike) -> dict[str, torch.Tensor]:
    """Trajectories ``{"positions", "velocities"}`` ``[steps + 1, n, d]`` as tensors.

    Args:
        system: a :class:`diffsim.springs.SpringSystem` (its topology and default values).
        steps: rollout length.
        dt: time step in s.
        checkpoint: the schedule of every backward pass.
        backend: as :class:`diffsim.springs.Simulation`.
        **params: any of ``stiffness``, ``rest_length``, ``damping``, ``mass``,
            ``positions``, ``velocities``, ``actuation`` as tensors (or arrays); the
            trajectories are differentiable in the tensors among them.

    Returns:
        ``{"positions": Tensor, "velocities": Tensor}``.
    """
    from diffsim.springs import Simulation as SpringsSimulation

    sim = kept(springs_key(system, steps, dt, backend),
               lambda: SpringsSimulation(system, steps, dt, backend=backend))
    unknown = set(params) - set(sim.parameter_names)
    if unknown:
        raise TypeError(f"unknown parameters {sorted(unknown)}; choose from "
                        f"{list(sim.parameter_names)}")
    sim.update(**spring_defaults(system, steps, tuple(params)))
    names = tuple(params)
    if not names:   # nothing to differentiate: plain tensors
        out = sim.simulate()
        return {name: torch.from_numpy(np.ascontiguousarray(out[name]))
                for name in ("positions", "velocities")}
    wrapped = _Wrapped(sim, names, ("positions", "velocities"), checkpoint)
    positions, velocities = wrapped(*(params[name] for name in names))
    return {"positions": positions, "velocities": velocities}
