"""The one front-end shape every physics shares: :class:`Simulation` and :class:`ValueAndGrad`.

A physics module builds its ``Simulation`` from the same arguments as its ``simulate()``
function and implements three small hooks (which stepper to run, how its raw outputs,
cotangents and gradients map to the public names and shapes). Everything a user calls is
written here once:

- ``simulate() -> dict`` of named outputs;
- ``vjp(cotangents, wrt=, checkpoint=) -> dict``: the vector-Jacobian product of the
  outputs for any cotangent (the primitive that custom losses and interop wrap);
- ``value_and_grad(loss, wrt=, checkpoint=) -> ValueAndGrad``;
- ``update(**params)``: new parameter values without recompiling.

Gradients are those of the discrete simulation (discretise-then-differentiate), computed
by a :class:`~diffsim.Tape` under any checkpoint schedule.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Self

import numpy as np
from numpy.typing import ArrayLike

from diffsim._tape import (
    _STEP_SECONDS,
    DEFAULT_BUDGET,
    Stepper,
    Tape,
    TapeReport,
    ValueAndGrad,
    rollout,
)
from diffsim.checkpoint import Budget, Schedule
from diffsim.stores import CheckpointStore

__all__ = ["LossFunction", "Simulation", "ValueAndGrad"]

#: Any callable ``outputs -> (value, cotangents)``: the loss protocol. ``cotangents``
#: maps output names to ``∂L/∂output`` shaped like that output (missing names: zero).
LossFunction = Callable[[Mapping[str, np.ndarray]], tuple[float, Mapping[str, np.ndarray]]]


def check_cotangents(cotangents: object, shapes: Mapping[str, tuple[int, ...]]
                     ) -> dict[str, np.ndarray]:
    """``cotangents`` as float64 arrays, checked against the output ``shapes``.

    Raises:
        TypeError: not a mapping.
        ValueError: an unknown output name, a wrong shape, NaN or Inf.
    """
    if not isinstance(cotangents, Mapping):
        raise TypeError(f"cotangents must be a dict of output name -> array, got "
                        f"{type(cotangents).__name__}")
    out: dict[str, np.ndarray] = {}
    for name, value in cotangents.items():
        if name not in shapes:
            raise ValueError(f"cotangent for unknown output {name!r}; the outputs are "
                             f"{sorted(shapes)}")
        arr = np.asarray(value, dtype=np.float64)
        if arr.shape != tuple(shapes[name]):
            raise ValueError(f"cotangent for output {name!r} has shape {arr.shape}; expected "
                             f"{tuple(shapes[name])} (the shape of the output)")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"cotangent for output {name!r} contains NaN or Inf")
        out[name] = arr
    return out


def _call_loss(loss: LossFunction, outputs: Mapping[str, np.ndarray]
               ) -> tuple[float, Mapping[str, np.ndarray]]:
    """``loss(outputs)`` checked to be ``(finite value, cotangents)``."""
    result = loss(outputs)
    if not (isinstance(result, tuple) and len(result) == 2):
        raise TypeError(f"the loss returned {type(result).__name__}; a loss must return "
                        "(value, cotangents): the value and a dict of d value / d output "
                        "shaped like the outputs")
    value = float(result[0])
    if not np.isfinite(value):
        raise FloatingPointError(f"the loss is {value}; it must be finite")
    return value, result[1]


def _wrt(wrt: Sequence[str] | None, allowed: Sequence[str], default: Sequence[str]
         ) -> tuple[str, ...]:
    if wrt is None:
        return tuple(default)
    names = (wrt,) if isinstance(wrt, str) else tuple(wrt)
    if not names:
        raise ValueError(f"wrt is empty; name at least one of {', '.join(allowed)}")
    for name in names:
        if name not in allowed:
            raise ValueError(f"wrt contains {name!r}; choose from {', '.join(allowed)}")
    return names


class Simulation(abc.ABC):
    """A reusable differentiable simulation: the shape every physics module shares.

    Subclasses set :attr:`parameter_names` and :attr:`default_wrt` and implement
    :meth:`_stepper`, :meth:`output_shapes`, :meth:`_outputs`, :meth:`_cotangents`,
    :meth:`_gradients`, :meth:`parameters` and :meth:`update`. A physics whose stepper
    already speaks in public names and shapes only needs :meth:`_stepper`,
    :meth:`parameters` and :meth:`update` (the defaults pass arrays through).

    Use it as a context manager (or call :meth:`close`) to free its Taichi memory early.
    """

    #: Names ``wrt`` and :meth:`update` accept.
    parameter_names: tuple[str, ...] = ()
    #: What ``wrt=None`` means.
    default_wrt: tuple[str, ...] = ()
    #: The tape report of the last :meth:`vjp`.
    last_report: TapeReport | None = None

    # -- hooks -------------------------------------------------------------------------
    @abc.abstractmethod
    def _stepper(self, loss: LossFunction | None = None) -> Stepper:
        """The stepper to run, holding the current parameter values.

        ``loss`` may narrow what it records (its ``times``).
        """

    @abc.abstractmethod
    def parameters(self) -> dict[str, np.ndarray]:
        """Current parameter values by name, shaped as the user gave them."""

    @abc.abstractmethod
    def update(self, **params: ArrayLike) -> None:
        """New parameter values (validated); nothing recompiles."""

    def output_shapes(self) -> dict[str, tuple[int, ...]]:
        """Shape of each named output (what :meth:`simulate` returns)."""
        s = self._stepper()
        return {name: tuple(arr.shape) for name, arr in self._outputs(s, s.outputs()).items()}

    def _outputs(self, stepper: Stepper, raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The stepper's outputs (time first) as the public outputs (default: the same)."""
        return raw

    def _cotangents(self, stepper: Stepper, cot: dict[str, np.ndarray]
                    ) -> dict[str, np.ndarray]:
        """Public cotangents as the stepper's (default: the same)."""
        return cot

    def _gradients(self, stepper: Stepper, raw: dict[str, np.ndarray], wrt: tuple[str, ...],
                   partials: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """The stepper's gradients as the public ones for ``wrt``, plus a loss's partials.

        Default: the stepper's arrays as they are; a scalar parameter receives the sum of
        a per-entry partial.
        """
        grads = {name: np.asarray(raw[name], dtype=np.float64) for name in wrt}
        for name, direct in (partials or {}).items():
            if name in grads:
                d = np.asarray(direct, dtype=np.float64)
                grads[name] = grads[name] + (d.sum() if grads[name].ndim == 0 else
                                             d.reshape(grads[name].shape))
        return grads

    def _resolve_wrt(self, wrt: Sequence[str] | None) -> tuple[str, ...]:
        """``wrt`` checked: first by :meth:`_check_wrt` (physics-specific hints), then by name."""
        if wrt is not None:
            self._check_wrt((wrt,) if isinstance(wrt, str) else tuple(wrt))
        names = _wrt(wrt, self.parameter_names, self.default_wrt)
        if wrt is None:
            self._check_wrt(names)
        return names

    def _check_wrt(self, wrt: tuple[str, ...]) -> None:  # noqa: B027
        """Hook: reject names that this instance cannot differentiate (default: none)."""

    def _blew_up(self, exc: FloatingPointError) -> None:  # noqa: B027
        """Hook: re-raise a blow-up of a taped rollout with a better message (default: no)."""

    # -- the four methods --------------------------------------------------------------
    def simulate(self) -> dict[str, np.ndarray]:
        """Run the rollout (nothing recorded for a reverse sweep) and return the outputs.

        Raises:
            FloatingPointError: the state became NaN or Inf, naming the step.
        """
        stepper = self._stepper()
        return self._outputs(stepper, rollout(stepper))

    def graph(self) -> Any:
        """The step-level computational graph (:class:`diffsim.diagnostics.StepGraph`).

        Collapsed over time with the repeat count, or expanded for a few steps by
        ``.save(path, expand=k)``; ``.fan_out()`` counts each parameter's uses over the
        rollout (the terms its adjoint sums).
        """
        from diffsim.diagnostics.graph import step_graph

        return step_graph(self._stepper(), title=type(self).__module__.removeprefix("diffsim.")
                          + "." + type(self).__name__)

    def schedule(self, checkpoint: Schedule | None = None) -> Schedule:
        """The concrete schedule a gradient runs under ``checkpoint`` (a budget resolved).

        Nothing runs; use it to check a budget (and see its cost with
        ``schedule.cost(steps)``) before starting a long job.

        Raises:
            ValueError: the budget cannot hold one state (the message gives the size).
        """
        stepper = self._stepper()
        plan = Budget(bytes=DEFAULT_BUDGET) if checkpoint is None else checkpoint
        if not isinstance(plan, Schedule):
            raise TypeError(f"checkpoint must be a schedule such as StoreAll(), Uniform(every=10), "
                            f"Binomial(slots=16) or Budget(bytes='1GiB'); got {checkpoint!r}")
        return plan.resolve(stepper.steps, state_nbytes=stepper.state_nbytes,
                            step_seconds=_STEP_SECONDS.get(id(stepper)))

    def snapshots(self, every: int, callback: Callable[[int, dict[str, np.ndarray]], None]
                  ) -> dict[str, np.ndarray]:
        """Run the rollout, showing the state to ``callback(t, state)`` every ``every`` steps.

        Args:
            every: steps between snapshots (>= 1); ``t = every, 2 every, ...``.
            callback: receives the time level and the state by name (copies; the
                physics decides what it shows: the acoustic simulation gives
                ``{"wavefield": [shot, *model shape]}``, others their exported state).

        Returns:
            The outputs, as :meth:`simulate` returns them.
        """
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every={every!r} must be a positive number of steps")
        stepper = self._stepper()
        stepper.reset()
        for start in range(0, stepper.steps, every):
            stop = min(start + every, stepper.steps)
            stepper.advance_range(start, stop, {})
            if stop % every == 0:
                callback(stop, self._snapshot(stepper, stop))
        return self._outputs(stepper, stepper.outputs())

    def _snapshot(self, stepper: Stepper, t: int) -> dict[str, np.ndarray]:
        """The live state ``x[t]`` as :meth:`snapshots` shows it (default: the exported state)."""
        out = {name: np.empty(shape, dtype) for name, (shape, dtype) in stepper.state_spec().items()}
        stepper.export_state(t, out)
        return out

    def vjp(self, cotangents: Mapping[str, np.ndarray], *, wrt: Sequence[str] | None = None,
            checkpoint: Schedule | None = None, store: CheckpointStore | None = None
            ) -> dict[str, np.ndarray]:
        """``(∂outputs/∂params)ᵀ · cotangents``: gradients of ``Σ <cotangent, output>``.

        Args:
            cotangents: per output name, an array shaped like that output (missing
                outputs count as zero).
            wrt: parameter names (default :attr:`default_wrt`).
            checkpoint: a schedule; ``None`` means a ``Budget`` of ``diffsim.DEFAULT_BUDGET``.
            store: where the checkpoints live (:mod:`diffsim.stores`; default the device).

        Returns:
            Per name in ``wrt``, a float64 array shaped like the parameter.
        """
        names = self._resolve_wrt(wrt)
        cot = check_cotangents(cotangents, self.output_shapes())
        stepper = self._stepper()
        tape = Tape(stepper, checkpoint=checkpoint, store=store)
        self._forward(tape)
        raw = tape.backward(self._cotangents(stepper, cot))
        grads = self._gradients(stepper, raw, names)
        self.last_report = tape.report
        return grads

    def loss_value(self, loss: LossFunction) -> float:
        """The loss at the current parameters: one forward run, no tape, no gradient.

        The value :meth:`value_and_grad` would return, for finite-difference checks.
        """
        bind = getattr(loss, "bind", None)
        if bind is not None:
            bind(self)
        stepper = self._stepper(loss)
        return _call_loss(loss, self._outputs(stepper, rollout(stepper)))[0]

    def value_and_grad(self, loss: LossFunction, *, wrt: Sequence[str] | None = None,
                       checkpoint: Schedule | None = None, store: CheckpointStore | None = None
                       ) -> ValueAndGrad:
        """A loss of the outputs and its exact gradient.

        Args:
            loss: a loss from :mod:`diffsim.losses` or any callable
                ``outputs -> (value, cotangents)``.
            wrt: parameter names (default :attr:`default_wrt`).
            checkpoint: a schedule; ``None`` means a ``Budget`` of ``diffsim.DEFAULT_BUDGET``.
            store: where the checkpoints live (:mod:`diffsim.stores`; default the device).

        Returns:
            A :class:`ValueAndGrad`: ``.loss``, ``.grads``, ``.outputs``, ``.report``.
        """
        if not callable(loss):
            raise TypeError(f"loss must be a diffsim.losses loss or a callable outputs -> "
                            f"(value, cotangents); got {type(loss).__name__}")
        names = self._resolve_wrt(wrt)
        bind = getattr(loss, "bind", None)
        if bind is not None:
            bind(self)
        stepper = self._stepper(loss)
        tape = Tape(stepper, checkpoint=checkpoint, store=store)
        outputs = self._outputs(stepper, self._forward(tape))
        value, cot = _call_loss(loss, outputs)
        shapes = {name: tuple(arr.shape) for name, arr in outputs.items()}
        raw = tape.backward(self._cotangents(stepper, check_cotangents(cot, shapes)))
        partials = getattr(loss, "partials", None)
        grads = self._gradients(stepper, raw, names, partials() if partials else None)
        return ValueAndGrad(value, grads, outputs, tape.report)

    def _forward(self, tape: Tape) -> dict[str, np.ndarray]:
        try:
            return tape.forward()
        except FloatingPointError as exc:
            self._blew_up(exc)
            raise

    # -- resources ---------------------------------------------------------------------
    def close(self) -> None:  # noqa: B027
        """Free this simulation's Taichi memory (default: nothing to free)."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class KeptStepperSimulation(Simulation):
    """A :class:`Simulation` over one stepper built once and kept (a ``TaichiStepper``).

    The subclass sets ``self.stepper`` in ``__init__`` and declares
    :attr:`parameter_names`; :meth:`update` checks the names and sets the values in place
    (nothing recompiles), :meth:`close` frees the stepper's fields.
    """

    stepper: Any

    def _stepper(self, loss: LossFunction | None = None) -> Stepper:
        return self.stepper

    def parameters(self) -> dict[str, np.ndarray]:
        """Current values by name."""
        return dict(self.stepper.parameters())

    def update(self, **params: ArrayLike) -> None:
        """New parameter values (a scalar fills the array); nothing recompiles."""
        unknown = set(params) - set(self.parameter_names)
        if unknown:
            raise ValueError(f"cannot update {sorted(unknown)}; allowed: "
                             f"{list(self.parameter_names)}")
        for name, value in params.items():
            self.stepper.set_param(name, value)

    def close(self) -> None:
        """Free the stepper's fields."""
        self.stepper.destroy()
