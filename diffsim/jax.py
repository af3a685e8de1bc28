"""JAX interop: every diffsim simulation as a differentiable JAX function.

The simulation runs on the host through :func:`jax.pure_callback`; its exact adjoint
(:meth:`diffsim.Simulation.vjp`) is the reverse rule of a :func:`jax.custom_vjp`, so the
functions work under :func:`jax.jit`, :func:`jax.grad` and :func:`jax.value_and_grad`.

- :func:`function` wraps any simulation; :func:`acoustic` and :func:`springs` mirror
  :func:`diffsim.torch.acoustic` and :func:`diffsim.torch.springs`.
- Inputs must have the runtime precision's dtype (for float64, enable JAX's
  ``jax_enable_x64`` and call ``diffsim.init(precision="f64")``); a mismatch is a
  ``TypeError`` at trace time. Outputs have that dtype.
- Reverse mode only (forward-mode ``jax.jvp`` of the simulation is not defined); the
  reverse pass reruns the forward pass under the ``checkpoint`` schedule, and gives the
  gradient of every input (JAX does not say which ones are needed).
- Simulations are kept between calls with the same geometry: new values recompile
  nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
from numpy.typing import ArrayLike

from diffsim._interop import geometry_key, kept, signature, spring_defaults, springs_key
from diffsim._runtime import ensure_init
from diffsim._simulation import Simulation
from diffsim.checkpoint import Schedule

__all__ = ["acoustic", "function", "springs"]


def _runtime_dtype() -> np.dtype:
    return np.dtype(np.float32 if ensure_init().precision == "f32" else np.float64)


Prepare = Callable[[dict[str, np.ndarray]], Simulation]


class _Function:
    """Simulations as a JAX function (see :func:`function`).

    ``prepare(values)`` returns the simulation holding ``values`` (the inputs, by name, as
    float64 arrays) and every other parameter; it runs on the host, so a simulation can
    be built there from concrete values even when the caller is being traced.
    """

    def __init__(self, prepare: Prepare, inputs: tuple[str, ...], outputs: tuple[str, ...],
                 shapes: dict[str, tuple[int, ...]], checkpoint: Schedule | None) -> None:
        self.prepare = prepare
        self.inputs = inputs
        self.outputs = outputs
        self.checkpoint = checkpoint
        self.dtype = _runtime_dtype()
        self.result = tuple(jax.ShapeDtypeStruct(shapes[name], self.dtype) for name in outputs)
        apply = jax.custom_vjp(self._forward)
        apply.defvjp(self._fwd, self._bwd)
        self._apply = apply

    # host side ----------------------------------------------------------------------------
    def _values(self, arrays: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        return {name: np.asarray(a, dtype=np.float64)
                for name, a in zip(self.inputs, arrays, strict=True)}

    def _host_forward(self, *arrays: np.ndarray) -> tuple[np.ndarray, ...]:
        out = self.prepare(self._values(arrays)).simulate()
        return tuple(np.asarray(out[name], dtype=self.dtype) for name in self.outputs)

    def _host_vjp(self, *arrays: np.ndarray) -> tuple[np.ndarray, ...]:
        n = len(self.inputs)
        values, cts = arrays[:n], arrays[n:]
        sim = self.prepare(self._values(values))
        cot = {name: np.asarray(c, dtype=np.float64)
               for name, c in zip(self.outputs, cts, strict=True)}
        grads = sim.vjp(cot, wrt=self.inputs, checkpoint=self.checkpoint)
        return tuple(np.asarray(grads[name], dtype=np.asarray(v).dtype)
                     for name, v in zip(self.inputs, values, strict=True))

    # traced side --------------------------------------------------------------------------
    def _forward(self, *args: jax.Array) -> tuple[jax.Array, ...]:
        return tuple(jax.pure_callback(self._host_forward, self.result, *args))

    def _fwd(self, *args: jax.Array) -> tuple[tuple[jax.Array, ...], tuple[jax.Array, ...]]:
        return self._forward(*args), args

    def _bwd(self, args: tuple[jax.Array, ...], cts: tuple[jax.Array, ...]
             ) -> tuple[jax.Array, ...]:
        shapes = tuple(jax.ShapeDtypeStruct(a.shape, a.dtype) for a in args)
        return tuple(jax.pure_callback(self._host_vjp, shapes, *args, *cts))

    def __call__(self, *args: jax.Array | ArrayLike) -> jax.Array | tuple[jax.Array, ...]:
        if len(args) != len(self.inputs):
            raise TypeError(f"expected {len(self.inputs)} inputs {list(self.inputs)}; got "
                            f"{len(args)}")
        arrays = []
        for name, a in zip(self.inputs, args, strict=True):
            arr = a if isinstance(a, jax.Array) else jnp.asarray(np.asarray(a), dtype=self.dtype)
            if arr.dtype != self.dtype:
                other = "f32" if self.dtype == np.float64 else "f64"
                raise TypeError(
                    f"{name} has dtype {arr.dtype} but the runtime precision is {self.dtype}; "
                    f"pass {self.dtype} arrays (float64 needs jax.config.update("
                    f"'jax_enable_x64', True)), or call diffsim.init(precision={other!r}) "
                    "before anything runs")
            arrays.append(arr)
        out = self._apply(*arrays)
        return out[0] if len(self.outputs) == 1 else out


def function(simulation: Simulation, inputs: Sequence[str] | None = None,
             outputs: Sequence[str] | None = None, *, checkpoint: Schedule | None = None
             ) -> Callable[..., jax.Array | tuple[jax.Array, ...]]:
    """Any :class:`diffsim.Simulation` as a differentiable JAX function.

    Args:
        simulation: the simulation (kept; each call updates its values).
        inputs: parameter names the function takes, in order (default: ``default_wrt``).
        outputs: output names it returns, in order (default: every output).
        checkpoint: the schedule of every reverse pass (default: the memory budget).

    Returns:
        ``f(*arrays)``: one array, or a tuple when there are several outputs.

    Example::

        f = diffsim.jax.function(sim, inputs=("velocity",), outputs=("traces",))
        loss = lambda v: jnp.sum((f(v) - d_obs) ** 2)
        g = jax.jit(jax.grad(loss))(v)
    """
    names, outs = signature(simulation, inputs, outputs)
    shapes = simulation.output_shapes()

    def prepare(values: dict[str, np.ndarray]) -> Simulation:
        simulation.update(**values)
        return simulation

    return _Function(prepare, names, outs, shapes, checkpoint)


def acoustic(velocity: jax.Array | ArrayLike, spacing: float | Sequence[float], dt: float,
             wavelet: jax.Array | ArrayLike, sources: ArrayLike, receivers: ArrayLike, *,
             checkpoint: Schedule | None = None, **options: Any) -> jax.Array:
    """Shot gathers ``[shot, receiver, nt]``, differentiable in ``velocity`` and ``wavelet``.

    As :func:`diffsim.torch.acoustic`; ``velocity`` and ``wavelet`` may be traced arrays
    (their shapes, like the positions, are fixed at trace time).
    """
    from diffsim.acoustic import Simulation as AcousticSimulation

    shape = tuple(np.shape(velocity))
    w_shape = tuple(np.shape(wavelet))
    src = np.asarray(sources, dtype=np.float64)
    rec = np.asarray(receivers, dtype=np.float64)
    key = geometry_key("acoustic", shape, spacing, dt, w_shape, src, rec, sorted(options.items()))

    def prepare(values: dict[str, np.ndarray]) -> Simulation:
        # built on the host from the first call's values (as diffsim.torch.acoustic does)
        sim = kept(key, lambda: AcousticSimulation(values["velocity"], spacing, dt,
                                                   values["wavelet"], src, rec, **options))
        sim.update(**values)
        return sim

    receivers_per_shot = rec.shape[-2]
    traces_shape = (src.shape[0], receivers_per_shot, w_shape[-1])
    fn = _Function(prepare, ("velocity", "wavelet"), ("traces",), {"traces": traces_shape},
                   checkpoint)
    result = fn(velocity, wavelet)
    assert isinstance(result, jax.Array)
    return result


def springs(system: Any, steps: int, dt: float, *, checkpoint: Schedule | None = None,
            backend: Literal["auto", "fused", "fields"] = "auto",
            **params: jax.Array | ArrayLike) -> dict[str, jax.Array]:
    """Trajectories ``{"positions", "velocities"}`` ``[steps + 1, n, d]`` as JAX arrays.

    As :func:`diffsim.torch.springs`: ``params`` (``stiffness``, ``rest_length``,
    ``damping``, ``mass``, ``positions``, ``velocities``, ``actuation``) are the inputs;
    the others take the system's values.
    """
    from diffsim.springs import Simulation as SpringsSimulation

    known = ("stiffness", "rest_length", "damping", "mass", "positions", "velocities",
             "actuation")
    unknown = set(params) - set(known)
    if unknown or not params:
        raise TypeError(f"parameters {sorted(params)}: give at least one, from {list(known)}")
    names = tuple(params)
    key = springs_key(system, steps, dt, backend)

    def prepare(values: dict[str, np.ndarray]) -> Simulation:
        sim = kept(key, lambda: SpringsSimulation(system, steps, dt, backend=backend))
        sim.update(**spring_defaults(system, steps, names), **values)
        return sim

    shape = (steps + 1, system.n_particles, system.dim)
    fn = _Function(prepare, names, ("positions", "velocities"),
                   {"positions": shape, "velocities": shape}, checkpoint)
    positions, velocities = fn(*(params[name] for name in names))
    return {"positions": positions, "velocities": velocities}
