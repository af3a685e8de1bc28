"""The tape: runs a stepper under a checkpoint schedule and returns exact gradients.

The reverse sweep is the adjoint-state (costate) recursion
``λ[t] = (∂f/∂x[t])ᵀ λ[t+1] + (∂g/∂x[t])ᵀ ∂L/∂y[t]``, ``∂L/∂θ = Σ_t (∂f/∂θ)ᵀ λ[t+1]``.
The tape records ``‖λ[t]‖`` for every ``t`` (the costate trace) so that vanishing or
exploding gradients are visible.
"""

from __future__ import annotations

import abc
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import numpy as np
import taichi as ti
from numpy.typing import ArrayLike
from taichi._lib.core.taichi_python import SNodeGradType
from taichi.lang.enums import AutodiffMode
from taichi.lang.exception import TaichiAssertionError

from diffsim._fields import Field, FieldTree, field_nbytes
from diffsim._runtime import ensure_init, np_real
from diffsim._validate import as_array
from diffsim.checkpoint import (
    Action,
    Advance,
    Budget,
    Free,
    Restore,
    Reverse,
    Save,
    Schedule,
    TierCost,
    simulate,
)
from diffsim.kernels.common import (
    load_level,
    store_level,
    sumsq_slot,
    sumsq_slot_vec,
    zero_slot,
)
from diffsim.stores import (
    CheckpointStore,
    DeviceStore,
    DiskStore,
    HostStore,
    TieredStore,
)

__all__ = [
    "DEFAULT_BUDGET",
    "DataAccessError",
    "Kernel",
    "Launch",
    "Stepper",
    "TaichiStepper",
    "Tape",
    "TapeReport",
    "ValueAndGrad",
    "rollout",
]

#: Checkpoint memory a tape may use when no schedule is given.
DEFAULT_BUDGET = "1GiB"

#: A Taichi kernel (``@ti.kernel``): called with its arguments, its reverse is ``kernel.grad``.
#: Taichi ships no type hints, so to a type checker this is ``Any``; the name says what is meant.
Kernel: TypeAlias = Any

#: One kernel launch of a step: ``(kernel, args)``; the tape may also call ``kernel.grad(*args)``.
Launch: TypeAlias = tuple[Kernel, tuple[Any, ...]]


class DataAccessError(RuntimeError):
    """A step overwrote a value its reverse step needs (found by ``Tape(validate=True)``)."""


def _first_line(exc: BaseException) -> str:
    for line in str(exc).splitlines():
        if "global data access rule" in line:
            return line.strip()
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


class Stepper(abc.ABC):
    """What a :class:`Tape` drives: a rollout ``x[t+1] = f(x[t], θ, s[t])`` and its adjoint.

    Live state: ``x[t]`` after :meth:`reset` (``t = 0``) or :meth:`advance` (``t = step+1``);
    :meth:`advance` keeps its input ``x[step]`` readable until the next action, so that
    :meth:`reverse` of the last step needs no checkpoint. Most users subclass
    :class:`TaichiStepper`, which implements all of this from field declarations.
    """

    #: number of steps the stepper's forcing and output buffers are sized for.
    steps: int

    @property
    @abc.abstractmethod
    def state_nbytes(self) -> int:
        """Bytes of one complete state (what one checkpoint costs)."""

    @abc.abstractmethod
    def allocate_checkpoints(self, slots: int) -> None:
        """Make room for ``slots`` stored states."""

    @abc.abstractmethod
    def reset(self) -> None:
        """Make ``x[0]`` live and record the outputs at time 0."""

    @abc.abstractmethod
    def advance(self, step: int) -> None:
        """Run forward step ``step`` (``x[step] -> x[step+1]``) and record its outputs."""

    @abc.abstractmethod
    def save(self, step: int, slot: int) -> None:
        """Store the live ``x[step]`` in checkpoint ``slot``."""

    @abc.abstractmethod
    def restore(self, step: int, slot: int) -> None:
        """Make ``x[step]``, held in checkpoint ``slot``, live."""

    @abc.abstractmethod
    def live_is_finite(self, step: int) -> bool:
        """Whether every value of the live state ``x[step]`` is finite."""

    # A complete state as plain arrays: what checkpoint stores other than the stepper's
    # own device pool (host RAM, disk) keep. A stepper that cannot export its state works
    # with the device store only.
    def state_spec(self) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        """Name, shape and dtype of each array of one complete state ``x[t]``."""
        raise NotImplementedError(
            f"{type(self).__name__} does not export its state, so it works only with the "
            "device checkpoint store (diffsim.stores.DeviceStore, the default); implement "
            "state_spec/export_state/import_state to use other stores")

    def export_state(self, step: int, out: Mapping[str, np.ndarray]) -> None:
        """Copy the live ``x[step]`` into ``out`` (arrays shaped by :meth:`state_spec`)."""
        raise NotImplementedError(self.state_spec.__doc__)

    def import_state(self, step: int, values: Mapping[str, np.ndarray]) -> None:
        """Make ``x[step]``, given as arrays shaped by :meth:`state_spec`, the live state."""
        raise NotImplementedError(self.state_spec.__doc__)

    @abc.abstractmethod
    def begin_reverse(self, cotangents: Mapping[str, np.ndarray]) -> None:
        """Zero every adjoint and seed the output cotangents ``∂L/∂y``."""

    @abc.abstractmethod
    def reverse(self, step: int, slot: int | None, *, measure: bool) -> float:
        """Reverse step ``step``: ``λ[step+1] -> λ[step]``, accumulating ``∂L/∂θ``.

        Args:
            step: the step to reverse.
            slot: checkpoint holding ``x[step]``, or ``None`` for the live buffers.
            measure: whether to return ``‖λ[step+1]‖`` (else NaN).

        Returns:
            The norm of the complete ``λ[step+1]`` when ``measure``.
        """

    @abc.abstractmethod
    def finish_reverse(self, *, measure: bool) -> float:
        """Add the time-0 output cotangents; return ``‖λ[0]‖`` when ``measure``."""

    # A tape hands a stepper whole runs of steps at once; a stepper that can run many
    # steps in one launch overrides these two (the defaults take one step at a time).
    def advance_range(self, start: int, stop: int, saves: Mapping[int, int]) -> None:
        """Run steps ``start … stop-1``, storing ``x[t]`` in checkpoint ``saves[t]``.

        A save at step ``t`` (``start <= t <= stop``) happens when ``x[t]`` is live:
        before step ``t`` runs, or after the last step for ``t = stop``. The result must
        equal :meth:`save` and :meth:`advance` called one at a time, bit for bit.
        """
        for t in range(start, stop):
            if t in saves:
                self.save(t, saves[t])
            self.advance(t)
        if stop in saves:
            self.save(stop, saves[stop])

    def reverse_range(self, steps: Sequence[int], slots: Sequence[int | None], *,
                      measure: bool) -> list[float]:
        """Reverse ``steps`` (consecutive, descending), ``x[t]`` held in ``slots``.

        Equivalent to :meth:`reverse` called for each pair in turn; returns its norms.
        """
        return [self.reverse(t, slot, measure=measure) for t, slot in zip(steps, slots, strict=True)]

    @abc.abstractmethod
    def outputs(self) -> dict[str, np.ndarray]:
        """The recorded outputs, each ``[steps+1, ...]``."""

    @abc.abstractmethod
    def gradients(self) -> dict[str, np.ndarray]:
        """``∂L/∂θ`` for every parameter, shaped like the parameter."""


class TaichiStepper(Stepper):
    """A stepper whose state, parameters and outputs are Taichi fields.

    A subclass declares its fields in ``__init__`` with :meth:`_state`, :meth:`_param`,
    :meth:`_output` and :meth:`_scratch`, calls :meth:`_finalize`, and implements:

    * :meth:`substeps` ``(step)``: the kernel launches of forward step ``step``. A state
      field with ``history=h`` is a ring of ``h + 1`` time levels; ``x[t]`` holds its
      levels ``t-h+1 … t`` and the step writes level ``t+1``; :meth:`level` maps a
      time to its ring index. Intermediates live in scratch fields; they are recomputed
      inside each reverse step, so one scratch field may serve every step.
    * :meth:`record` ``(t)``: launches that write the outputs at time ``t`` into
      time-indexed output fields (optional).
    * :meth:`load_initial`: write ``x[0]`` (default: zeros).

    The reverse step defaults to Taichi autodiff: the executor zeroes the new level of
    ``λ[t]``, reruns the step's launches but the last, then calls ``kernel.grad`` in
    reverse order. A subclass may override :meth:`reverse_step` with a hand-written
    adjoint that reads ``λ[t+1]`` from the ``.grad`` levels of ``x[t+1]`` and writes
    ``λ[t]`` into the ``.grad`` levels of ``x[t]``; it must pass the same gradient tests.
    """

    def __init__(self, *, steps: int) -> None:
        ensure_init()
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps={steps!r} must be an int >= 1")
        self.steps = steps
        self._tree = FieldTree()
        self._states: dict[str, Field] = {}
        self._history: dict[str, int] = {}
        self._params: dict[str, Field] = {}
        self._outputs: dict[str, Field] = {}
        self._scratches: dict[str, Field] = {}
        self._pool: dict[str, Field] = {}
        self._pool_tree: FieldTree | None = None
        self._pool_slots = 0
        self._validate = False
        self._validated: set[int] = set()

    # -- declarations ---------------------------------------------------------------
    def _state(self, name: str, shape: tuple[int, ...], *, vector: int | None = None,
               history: int = 1) -> Field:
        """Declare a state field that keeps ``history`` time levels (a ring of ``history + 1``)."""
        if history not in (1, 2):
            raise ValueError(f"history={history!r}: a state keeps 1 or 2 time levels")
        f = self._tree.field((history + 1, *shape), vector=vector, needs_grad=True)
        self._states[name] = f
        self._history[name] = history
        return f

    @staticmethod
    def level(t: int, history: int = 1) -> int:
        """Ring index of time level ``t`` in a state field keeping ``history`` levels."""
        return t % (history + 1)

    def _levels(self, name: str, t: int) -> list[int]:
        """Ring indices of the levels of ``x[t]`` in field ``name``, oldest first."""
        h = self._history[name]
        return [(t - h + 1 + j) % (h + 1) for j in range(h)]

    def _param(self, name: str, shape: tuple[int, ...], *, vector: int | None = None) -> Field:
        f = self._tree.field(shape, vector=vector, needs_grad=True)
        self._params[name] = f
        return f

    def _output(self, name: str, shape: tuple[int, ...], *, vector: int | None = None) -> Field:
        f = self._tree.field((self.steps + 1, *shape), vector=vector, needs_grad=True)
        self._outputs[name] = f
        return f

    def _scratch(self, name: str, shape: tuple[int, ...], *, vector: int | None = None) -> Field:
        f = self._tree.field(shape, vector=vector, needs_grad=True)
        self._scratches[name] = f
        return f

    def _finalize(self) -> None:
        self._tree.finalize()

    # -- what a subclass provides -----------------------------------------------------
    @abc.abstractmethod
    def substeps(self, step: int) -> Sequence[Launch]:
        """The launches of forward step ``step`` (``x[step] -> x[step+1]``)."""

    def record(self, t: int) -> Sequence[Launch]:  # noqa: ARG002
        """The launches that record the outputs at time ``t`` from the levels of ``x[t]``."""
        return ()

    def load_initial(self) -> None:
        """Write the initial state ``x[0]`` (default: every state field zero)."""
        for f in self._states.values():
            f.fill(0)

    def reverse_step(self, step: int) -> None:
        """Adjoint of step ``step``: ``λ[step+1]`` to ``λ[step]`` in the state fields' ``.grad``.

        The default differentiates :meth:`substeps` with Taichi autodiff.
        """
        for name, f in self._states.items():
            zero_slot(f.grad, self._levels(name, step)[0])
        self._run(self.recompute(step))
        for kernel, args in reversed(self.substeps(step)):
            kernel.grad(*args)

    def recompute(self, step: int) -> Sequence[Launch]:
        """Launches rerun before the autodiff reverse of ``step`` to rebuild intermediates.

        Default: every launch of the step but the last. Override with fewer when the
        later kernels' gradients read nothing an earlier kernel of the step wrote.
        """
        return self.substeps(step)[:-1]

    # -- Stepper protocol -------------------------------------------------------------
    @property
    def state_nbytes(self) -> int:
        """Bytes of one complete state: the levels of ``x[t]`` of every state field."""
        return sum(field_nbytes(f) // f.shape[0] * self._history[name]
                   for name, f in self._states.items())

    def enable_validation(self) -> None:
        """Run every forward step under Taichi's global-data-access checks (debug mode)."""
        if not ensure_init().debug:
            raise RuntimeError(
                "validation needs Taichi debug mode: call diffsim.init(..., debug=True) "
                "before creating the stepper"
            )
        self._validate = True

    def _run(self, launches: Sequence[Launch]) -> None:
        if self._validate:
            ti.ad.clear_all_gradients(gradient_type=SNodeGradType.ADJOINT_CHECKBIT)
            for kernel, _ in launches:
                if id(kernel) not in self._validated:
                    kernel._primal.autodiff_mode = AutodiffMode.VALIDATION
                    self._validated.add(id(kernel))
            for kernel, args in launches:
                try:
                    kernel(*args)
                except TaichiAssertionError as exc:
                    name = getattr(kernel, "__name__", repr(kernel))
                    raise DataAccessError(
                        f"kernel {name!r} of {type(self).__name__} overwrote a value that it, or "
                        "an earlier kernel of the same step, had read (Taichi's global data access "
                        "rule); its reverse step would read the overwritten value and give a wrong "
                        "gradient. Write the step's result into the dst state slot or into a "
                        f"scratch field instead. Taichi said: {_first_line(exc)}"
                    ) from exc
            return
        for kernel, args in launches:
            kernel(*args)

    def allocate_checkpoints(self, slots: int) -> None:
        """Allocate (or reuse) a pool of ``slots`` stored states."""
        if slots <= self._pool_slots:
            return
        if self._pool_tree is not None:
            self._pool_tree.destroy()
        tree = FieldTree()
        self._pool = {
            name: tree.field((slots, self._history[name], *f.shape[1:]),
                             vector=getattr(f, "n", None))
            for name, f in self._states.items()
        }
        tree.finalize()
        self._pool_tree = tree
        self._pool_slots = slots

    def reset(self) -> None:
        """Make ``x[0]`` live and record the outputs at time 0."""
        self.load_initial()
        self._run(self.record(0))

    def advance(self, step: int) -> None:
        """Run forward step ``step`` and record the outputs at ``step + 1``."""
        self._run(self.substeps(step))
        self._run(self.record(step + 1))

    def save(self, step: int, slot: int) -> None:
        """Store the live ``x[step]`` in checkpoint ``slot``."""
        for name, f in self._states.items():
            for j, lvl in enumerate(self._levels(name, step)):
                store_level(f, lvl, self._pool[name], slot, j)

    def restore(self, step: int, slot: int) -> None:
        """Make ``x[step]`` from checkpoint ``slot`` live."""
        for name, f in self._states.items():
            for j, lvl in enumerate(self._levels(name, step)):
                load_level(self._pool[name], slot, j, f, lvl)

    def state_spec(self) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        """Each state field's levels of ``x[t]``: ``(history, *shape[, n])``."""
        return {name: ((self._history[name], *f.shape[1:],
                        *((f.n,) if hasattr(f, "n") else ())), np.dtype(np_real()))
                for name, f in self._states.items()}

    def export_state(self, step: int, out: Mapping[str, np.ndarray]) -> None:
        """Copy the levels of the live ``x[step]`` into ``out``."""
        for name, f in self._states.items():
            out[name][...] = f.to_numpy()[self._levels(name, step)]

    def import_state(self, step: int, values: Mapping[str, np.ndarray]) -> None:
        """Write ``values`` into the ring levels of ``x[step]``."""
        for name, f in self._states.items():
            arr = f.to_numpy()
            arr[self._levels(name, step)] = values[name]
            f.from_numpy(arr)

    def _sumsq(self, f: Field, slot: int) -> float:
        return (sumsq_slot_vec if hasattr(f, "n") else sumsq_slot)(f, slot)

    def live_is_finite(self, step: int) -> bool:
        """Whether the live state ``x[step]`` holds only finite values."""
        return all(math.isfinite(self._sumsq(f, lvl)) for name, f in self._states.items()
                   for lvl in self._levels(name, step))

    def begin_reverse(self, cotangents: Mapping[str, np.ndarray]) -> None:
        """Zero every adjoint, then set the outputs' adjoints to ``cotangents``."""
        unknown = set(cotangents) - set(self._outputs)
        if unknown:
            raise ValueError(
                f"cotangents for unknown outputs {sorted(unknown)}; this stepper's outputs are "
                f"{sorted(self._outputs)}"
            )
        for group in (self._states, self._params, self._outputs, self._scratches):
            for f in group.values():
                f.grad.fill(0)
        for name, value in cotangents.items():
            f = self._outputs[name]
            arr = np.asarray(value)
            expected = tuple(f.shape) + ((f.n,) if hasattr(f, "n") else ())
            if arr.shape != expected:
                raise ValueError(
                    f"cotangent for output {name!r} has shape {arr.shape}; expected {expected} "
                    "(the shape of the recorded output)"
                )
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"cotangent for output {name!r} contains NaN or Inf")
            f.grad.from_numpy(np.ascontiguousarray(arr, dtype=np_real()))

    def costate_fields(self) -> tuple[str, ...]:
        """State fields whose adjoint enters the costate norm (default: all of them)."""
        return tuple(self._states)

    def _norm_grad(self, t: int) -> float:
        """``‖λ[t]‖`` over the levels of ``x[t]`` of the :meth:`costate_fields`."""
        return math.sqrt(sum(self._sumsq(self._states[name].grad, lvl)
                             for name in self.costate_fields() for lvl in self._levels(name, t)))

    def reverse(self, step: int, slot: int | None, *, measure: bool) -> float:
        """See :meth:`Stepper.reverse`."""
        if slot is not None:
            self.restore(step, slot)
        for kernel, args in reversed(self.record(step + 1)):
            kernel.grad(*args)
        norm = self._norm_grad(step + 1) if measure else math.nan
        self.reverse_step(step)
        return norm

    def finish_reverse(self, *, measure: bool) -> float:
        """Add the time-0 output cotangents into ``λ[0]``."""
        for kernel, args in reversed(self.record(0)):
            kernel.grad(*args)
        return self._norm_grad(0) if measure else math.nan

    def parameters(self) -> dict[str, np.ndarray]:
        """Current parameter values, each a NumPy copy shaped like the parameter."""
        return {name: f.to_numpy() for name, f in self._params.items()}

    def set_param(self, name: str, value: ArrayLike) -> None:
        """Replace a parameter's values in place (no recompilation, unlike a new stepper).

        Args:
            name: a parameter name, one of :meth:`parameters`.
            value: array shaped like the parameter (a scalar fills it).

        Raises:
            ValueError: unknown name, wrong shape, non-finite values, or values the
                subclass's :meth:`_check_param` rejects.
        """
        if name not in self._params:
            raise ValueError(f"unknown parameter {name!r}; this stepper has {sorted(self._params)}")
        f = self._params[name]
        shape = tuple(f.shape) + ((f.n,) if hasattr(f, "n") else ())
        arr = as_array(f"parameter {name!r}", value, shape)
        self._check_param(name, arr)
        f.from_numpy(np.ascontiguousarray(arr, dtype=np_real()))

    def _check_param(self, name: str, value: np.ndarray) -> None:
        """Subclass hook: raise ValueError for values outside the parameter's range."""

    def outputs(self) -> dict[str, np.ndarray]:
        """The recorded outputs, each ``[steps+1, ...]``."""
        return {name: f.to_numpy() for name, f in self._outputs.items()}

    def gradients(self) -> dict[str, np.ndarray]:
        """``∂L/∂θ`` for every parameter, after :meth:`Tape.backward`."""
        return {name: f.grad.to_numpy() for name, f in self._params.items()}

    def initial_state_gradient(self) -> dict[str, np.ndarray]:
        """``∂L/∂x[0]`` for every state field (its newest level), after :meth:`Tape.backward`."""
        return {name: f.grad.to_numpy()[0] for name, f in self._states.items()}

    def destroy(self) -> None:
        """Free every field of this stepper; it cannot be used afterwards."""
        if self._pool_tree is not None:
            self._pool_tree.destroy()
        self._tree.destroy()


def rollout(stepper: Stepper, *, steps: int | None = None,
            check_finite_every: int | None = 100) -> dict[str, np.ndarray]:
    """Run a stepper forward without recording anything for a reverse sweep.

    Args:
        stepper: the simulation.
        steps: number of steps, at most ``stepper.steps`` (default: all).
        check_finite_every: check the state for NaN/Inf every this many steps.

    Returns:
        The stepper's outputs, each ``[steps+1, ...]``.

    Raises:
        FloatingPointError: when the state becomes NaN or Inf, naming the steps.
    """
    steps = stepper.steps if steps is None else steps
    _check_tape_steps(steps, stepper)
    stepper.reset()
    last = done = 0
    every = check_finite_every or steps
    while done < steps:  # runs of steps between the checks, each one advance_range
        stop = min(steps, (done // every + 1) * every)
        stepper.advance_range(done, stop, {})
        done = stop
        if check_finite_every:
            if not stepper.live_is_finite(done):
                raise FloatingPointError(_blow_up_message(last, done))
            last = done
    return stepper.outputs()


def _check_tape_steps(steps: object, stepper: Stepper) -> None:
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= stepper.steps:
        raise ValueError(
            f"steps={steps!r} must be an int in [1, {stepper.steps}] (the stepper's length)"
        )


def _blow_up_message(last: int, step: int) -> str:
    return (
        f"the state became NaN or Inf between step {last} (finite) and step {step}; the "
        "rollout is unstable: reduce the time step or check the parameters"
    )


def _injection(stepper: Stepper, cotangents: Mapping[str, np.ndarray], steps: int) -> np.ndarray:
    """``‖∂L/∂y[t]‖`` per time level from output cotangents with time on the first axis.

    Outputs recorded at chosen levels (a stepper's ``times``) land at those levels; any
    other cotangent leaves the trace NaN.
    """
    out = np.zeros(steps + 1)
    times = getattr(stepper, "times", None)
    for value in cotangents.values():
        arr = np.asarray(value, dtype=np.float64)
        sq = np.sum(arr.reshape(arr.shape[0], -1) ** 2, axis=1) if arr.ndim else None
        if sq is not None and arr.shape[0] == steps + 1:
            out += sq
        elif sq is not None and times is not None and arr.shape[0] == len(times):
            np.add.at(out, np.asarray(times, dtype=int), sq)
        else:
            return np.full(steps + 1, np.nan)
    return np.sqrt(out)


@dataclass
class TapeReport:
    """What one gradient evaluation did.

    Attributes:
        schedule: the schedule that ran (a :class:`Budget` resolved to a concrete one).
        steps: rollout length ``n``.
        forward_steps: forward-step executions (forward sweep plus recomputation).
        recompute_steps: forward-step executions after the first reverse step.
        reverse_steps: reverse-step executions.
        saves: checkpoint stores; restores: checkpoint loads (reverse steps reading a
            checkpoint included).
        peak_checkpoints: most stored states held at once.
        state_nbytes: bytes of one stored state.
        peak_checkpoint_bytes: ``peak_checkpoints * state_nbytes``.
        forward_seconds, recompute_seconds, reverse_seconds, checkpoint_seconds: wall
            time of the forward sweep, of recomputation, of reverse steps, and of
            checkpoint copies.
        costate: ``‖λ[t]‖`` for ``t = 0 … n`` (float64 ``[n+1]``); NaN where not measured.
        injection: ``‖∂L/∂y[t]‖``, the loss's direct term entering ``λ[t]`` (float64
            ``[n+1]``, over every output recorded at time ``t``; NaN where the outputs are
            not indexed by time): what :func:`diffsim.diagnostics.gradient_health`
            measures the trace against.
        store: the checkpoint store's name (``"device"``, ``"host"``, ``"device+disk"``).
        tiers: the schedule's per-tier counts (:class:`~diffsim.checkpoint.TierCost`:
            slots, peak, saves, loads), fastest first.
        io: the disk tier's traffic when there is one: ``bytes_written`` (file bytes),
            ``state_bytes``, ``bytes_read``, ``write_seconds`` (the writer thread, which
            overlaps the steps), ``read_seconds`` and ``wait_seconds`` (steps waiting
            for the disk); empty without a disk tier.
    """

    schedule: Schedule
    steps: int
    forward_steps: int = 0
    recompute_steps: int = 0
    reverse_steps: int = 0
    saves: int = 0
    restores: int = 0
    peak_checkpoints: int = 0
    state_nbytes: int = 0
    peak_checkpoint_bytes: int = 0
    forward_seconds: float = 0.0
    recompute_seconds: float = 0.0
    reverse_seconds: float = 0.0
    checkpoint_seconds: float = 0.0
    costate: np.ndarray = field(default_factory=lambda: np.zeros(0))
    injection: np.ndarray = field(default_factory=lambda: np.zeros(0))
    store: str = "device"
    tiers: tuple[TierCost, ...] = ()
    io: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        """A few human-readable lines."""
        mib = self.peak_checkpoint_bytes / 2**20
        text = (
            f"schedule {self.schedule!r}: {self.steps} steps, {self.forward_steps} forward "
            f"({self.forward_steps / self.steps:.2f}x), {self.reverse_steps} reverse; "
            f"peak {self.peak_checkpoints} checkpoints = {mib:.2f} MiB\n"
            f"time: forward {self.forward_seconds:.3f} s, recompute {self.recompute_seconds:.3f} s, "
            f"reverse {self.reverse_seconds:.3f} s, checkpoint copies {self.checkpoint_seconds:.3f} s"
        )
        if len(self.tiers) > 1:
            text += "\ntiers: " + ", ".join(
                f"{t.name} {t.peak_states} states ({t.peak_states * self.state_nbytes / 2**20:.0f} "
                f"MiB), {t.saves} saves, {t.loads} loads" for t in self.tiers)
        if self.io:
            text += (f"\ndisk: {self.io['bytes_written'] / 2**20:.0f} MiB written "
                     f"({self.io['write_seconds']:.2f} s in the writer), "
                     f"{self.io['bytes_read'] / 2**20:.0f} MiB read "
                     f"({self.io['read_seconds']:.2f} s), steps waited "
                     f"{self.io['wait_seconds']:.2f} s")
        return text


@dataclass(frozen=True)
class ValueAndGrad:
    """A loss, its gradients, the outputs it was computed from, and what the tape did.

    Attributes:
        loss: the loss value.
        grads: ``∂loss/∂p`` per requested parameter, float64, shaped like the parameter.
        outputs: the outputs the loss read, by name.
        report: the tape's :class:`~diffsim.TapeReport` (schedule, recomputation,
            checkpoint memory, time split, costate norm ``‖λ[t]‖`` at every step).

    It also behaves as the pair ``(loss, grads)`` (``jax.value_and_grad``'s result, and
    what :meth:`Tape.value_and_grad` returned before): ``loss, grads = result``,
    ``result[1]``.
    """

    loss: float
    grads: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray]
    report: TapeReport

    def __iter__(self) -> Iterator[Any]:
        return iter((self.loss, self.grads))

    def __getitem__(self, index: int) -> Any:
        return (self.loss, self.grads)[index]

    def __len__(self) -> int:
        return 2


#: Seconds per forward step of each stepper's fastest forward sweep so far (by ``id``),
#: for the checkpoint planner of the next tape on that stepper.
_STEP_SECONDS: dict[int, float] = {}


def _tiered(store: CheckpointStore | None, layout: dict[str, int] | None,
            directory: str | None, state_nbytes: int) -> CheckpointStore:
    """The store a schedule's tier layout needs, built around ``store`` where given.

    One memory tier: ``store`` itself (default :class:`DeviceStore`). More tiers: a
    :class:`TieredStore` whose memory tier is ``store`` (default the device pool) with a
    :class:`HostStore` and a :class:`DiskStore` (in ``directory``) as the layout asks;
    a :class:`TieredStore` passed in is used as it is.
    """
    if layout is None or set(layout) <= {"memory"} or isinstance(store, TieredStore):
        return DeviceStore() if store is None else store
    tiers: list[tuple[str, CheckpointStore, int | None]] = [
        ("memory", DeviceStore() if store is None else store, None)]
    if "host" in layout:
        tiers.append(("host", HostStore(), None))
    if "disk" in layout:
        # one write in flight for large states: each holds a state's copy in RAM
        pending = 1 if state_nbytes > 64 * 2**20 else 2
        tiers.append(("disk", DiskStore(directory, max_pending=pending), None))
    return TieredStore(*tiers)


def _disk_stats(store: CheckpointStore) -> dict[str, float]:
    """The disk tier's counters now (empty without one)."""
    disk = store.store("disk") if isinstance(store, TieredStore) and any(
        name == "disk" for name, _, _ in store.tiers) else store
    if not isinstance(disk, DiskStore):
        return {}
    keys = ("bytes_written", "state_bytes", "bytes_read", "write_seconds", "read_seconds",
            "wait_seconds")
    return {k: float(disk.stats[k]) for k in keys}


class Tape:
    """Run a stepper forward under a checkpoint schedule, then its reverse sweep.

    Example::

        tape = Tape(stepper, checkpoint=Binomial(slots=16))
        outputs = tape.forward()                     # {"positions": [steps+1, r]}
        grads = tape.backward({"positions": outputs["positions"] - observed})

    Args:
        stepper: the simulation (a :class:`Stepper`).
        steps: number of steps, at most ``stepper.steps`` (default: all of them).
        checkpoint: a schedule from :mod:`diffsim.checkpoint`; ``None`` means
            ``Budget(bytes=DEFAULT_BUDGET)``.
        validate: run each forward step under Taichi's global-data-access checks so a
            kernel that overwrites what it read fails loudly (needs ``init(debug=True)``).
        costate: record ``‖λ[t]‖`` at every step (one reduction per step).
        check_finite_every: check the live state for NaN/Inf every this many forward
            steps (``None`` to skip).
        store: where checkpoints live, a :mod:`diffsim.stores` store owned by this tape
            (default :class:`~diffsim.stores.DeviceStore`: the stepper's device pool,
            read in place by its kernels).
    """

    def __init__(
        self,
        stepper: Stepper,
        *,
        steps: int | None = None,
        checkpoint: Schedule | None = None,
        validate: bool = False,
        costate: bool = True,
        check_finite_every: int | None = 100,
        store: CheckpointStore | None = None,
    ) -> None:
        if not isinstance(stepper, Stepper):
            raise TypeError(f"stepper must be a diffsim Stepper, got {type(stepper).__name__}")
        steps = stepper.steps if steps is None else steps
        _check_tape_steps(steps, stepper)
        if checkpoint is None:
            checkpoint = Budget(bytes=DEFAULT_BUDGET)
        if not isinstance(checkpoint, Schedule):
            raise TypeError(
                f"checkpoint must be a schedule such as StoreAll(), Uniform(every=10), "
                f"Binomial(slots=16) or Budget(bytes='1GiB'); got {checkpoint!r}"
            )
        if check_finite_every is not None and (not isinstance(check_finite_every, int)
                                               or check_finite_every < 1):
            raise ValueError(f"check_finite_every={check_finite_every!r} must be >= 1 or None")
        self.stepper = stepper
        self.steps = steps
        nbytes = stepper.state_nbytes
        self.schedule = checkpoint.resolve(steps, state_nbytes=nbytes,
                                           step_seconds=_STEP_SECONDS.get(id(stepper)))
        self._actions = self.schedule.actions(steps, state_nbytes=nbytes)
        self._layout = self.schedule.tier_slots(steps, state_nbytes=nbytes)
        self.predicted = simulate(self._actions, steps, tiers=self._layout)
        self._split = next(i for i, a in enumerate(self._actions) if type(a) is Reverse)
        self._costate = costate
        self._check_every = check_finite_every
        if validate and hasattr(stepper, "enable_validation"):
            stepper.enable_validation()
        elif validate:
            raise ValueError(f"{type(stepper).__name__} does not support validate=True")
        if store is not None and not isinstance(store, CheckpointStore):
            raise TypeError(f"store must be a diffsim.stores store such as DeviceStore() or "
                            f"HostStore(); got {store!r}")
        self.store = _tiered(store, self._layout, getattr(checkpoint, "directory", None),
                             nbytes)
        if isinstance(self.store, TieredStore):
            self.store.bind(stepper, self.predicted.slots, tiers=self._layout)
        else:
            self.store.bind(stepper, self.predicted.slots)
        self._state = "new"
        self.report = self._new_report()

    def _new_report(self) -> TapeReport:
        return TapeReport(schedule=self.schedule, steps=self.steps,
                          state_nbytes=self.stepper.state_nbytes, store=self.store.name,
                          costate=np.full(self.steps + 1, np.nan), tiers=self.predicted.tiers)

    def graph(self) -> Any:
        """The stepper's step-level computational graph (see :meth:`Simulation.graph`)."""
        from diffsim.diagnostics.graph import step_graph

        return step_graph(self.stepper)

    def forward(self) -> dict[str, np.ndarray]:
        """Run the forward sweep (storing checkpoints) and return the outputs.

        Returns:
            The stepper's outputs, each ``[steps+1, ...]`` (time on the leading axis).

        Raises:
            FloatingPointError: when the state becomes NaN or Inf, naming the steps.
        """
        self.report = self._new_report()
        self._disk_before = _disk_stats(self.store)
        self._held: set[int] = set()
        self.stepper.reset()
        self._last_finite = 0
        self._execute(self._actions[: self._split], recompute=False)
        if self.report.forward_steps:   # the fastest sweep: a first one includes compiling
            per_step = self.report.forward_seconds / self.report.forward_steps
            key = id(self.stepper)
            _STEP_SECONDS[key] = min(per_step, _STEP_SECONDS.get(key, per_step))
        self._state = "forward"
        return self.stepper.outputs()

    def backward(self, cotangents: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the reverse sweep and return ``∂L/∂θ``.

        Args:
            cotangents: ``∂L/∂y`` per output name, each shaped like that output.

        Returns:
            ``∂L/∂θ`` per parameter name, NumPy arrays shaped like the parameters.
        """
        if self._state != "forward":
            raise RuntimeError(
                "backward() needs a fresh forward(): call tape.forward() first "
                "(each forward sweep supports one reverse sweep)"
            )
        self.stepper.begin_reverse(cotangents)
        self.report.injection = _injection(self.stepper, cotangents, self.steps)
        self._execute(self._actions[self._split:], recompute=True)
        t0 = time.perf_counter()
        self.report.costate[0] = self.stepper.finish_reverse(measure=self._costate)
        self.report.reverse_seconds += time.perf_counter() - t0
        self.report.peak_checkpoint_bytes = self.report.peak_checkpoints * self.report.state_nbytes
        after = _disk_stats(self.store)
        if after:
            self.report.io = {k: v - self._disk_before.get(k, 0) for k, v in after.items()}
        self._state = "done"
        return self.stepper.gradients()

    def value_and_grad(
        self, loss: Callable[[dict[str, np.ndarray]], tuple[float, Mapping[str, np.ndarray]]]
    ) -> ValueAndGrad:
        """Forward, loss, backward in one call.

        Args:
            loss: maps the outputs to ``(value, cotangents)``.

        Returns:
            A :class:`ValueAndGrad` (unpacks as ``value, gradients``), gradients in the
            stepper's own shapes.
        """
        outputs = self.forward()
        value, cot = loss(outputs)
        return ValueAndGrad(float(value), self.backward(cot), outputs, self.report)

    def _check_finite(self, step: int) -> None:
        if not self.stepper.live_is_finite(step):
            raise FloatingPointError(_blow_up_message(self._last_finite, step))
        self._last_finite = step

    def _execute(self, actions: Sequence[Action], *, recompute: bool) -> None:
        """Run ``actions``: each run of consecutive steps goes to the stepper in one call.

        A run of :class:`Advance` and :class:`Save` actions that follow the live step
        becomes one :meth:`Stepper.advance_range` (split where the forward sweep checks
        the state for NaN/Inf); a run of :class:`Reverse` actions over consecutive steps
        (with :class:`Free` bookkeeping between them) becomes one
        :meth:`Stepper.reverse_range`. Saves and the reverse's checkpoint reads are timed
        with the steps they are fused with.
        """
        check = None if recompute else self._check_every
        i, n = 0, len(actions)
        while i < n:
            act = actions[i]
            if type(act) is Advance or type(act) is Save:
                i = self._advance_run(actions, i, check, recompute=recompute)
            elif type(act) is Reverse:
                i = self._reverse_run(actions, i)
            elif type(act) is Restore:
                t0 = time.perf_counter()
                self.store.load(act.step, act.slot)
                self.report.restores += 1
                self.report.checkpoint_seconds += time.perf_counter() - t0
                i += 1
            elif type(act) is Free:
                self._held.discard(act.slot)
                i += 1
            else:  # pragma: no cover - schedules emit only the five actions
                raise TypeError(f"unknown checkpoint action {act!r}")

    def _advance_run(self, actions: Sequence[Action], i: int, check: int | None, *,
                     recompute: bool) -> int:
        """Execute the run of Advance/Save actions starting at ``actions[i]``."""
        stepper, rep = self.stepper, self.report
        first = actions[i]
        start = stop = first.start if type(first) is Advance else first.step
        saves: dict[int, int] = {}
        n = len(actions)
        while i < n:
            act = actions[i]
            if type(act) is Advance and act.start == stop:
                stop = act.stop
            elif type(act) is Save and act.step == stop and stop not in saves:
                saves[act.step] = act.slot
                self._held.add(act.slot)
                rep.saves += 1
                rep.peak_checkpoints = max(rep.peak_checkpoints, len(self._held))
            else:
                break
            i += 1
        t0 = time.perf_counter()
        # split where the forward sweep checks for NaN/Inf (after steps check, 2 check, …);
        # a store that is not in place also splits where it saves, between the runs
        cuts = [stop] if check is None else [
            *range((start // check + 1) * check, stop, check), stop]
        store = self.store
        fused = {t: k for t, k in saves.items() if store.in_place_slot(k)}
        moved = {t: k for t, k in saves.items() if t not in fused}
        # a save the store makes (not in place) splits the run where it saves
        points = sorted({*cuts, *(t for t in moved if t > start)})
        stored = 0.0   # seconds in the store: checkpoint time, not step time
        if start in moved:
            stored += self._store_save(start, moved[start])
        lo = start
        pending = iter(fused.items())  # in step order
        ahead = next(pending, None)
        for hi in points:
            part: dict[int, int] = {}
            while ahead is not None and (ahead[0] < hi or ahead[0] == hi == stop):
                part[ahead[0]] = ahead[1]
                ahead = next(pending, None)
            stepper.advance_range(lo, hi, part)
            if hi in moved:
                stored += self._store_save(hi, moved[hi])
            if check is not None and hi > lo and (hi % check == 0 or hi == self.steps):
                self._check_finite(hi)
            lo = hi
        rep.forward_steps += stop - start
        elapsed = time.perf_counter() - t0 - stored
        if recompute:
            rep.recompute_steps += stop - start
            rep.recompute_seconds += elapsed
        else:
            rep.forward_seconds += elapsed
        return i

    def _store_save(self, step: int, slot: int) -> float:
        """Have the store save the live ``x[step]``; the seconds it took."""
        t0 = time.perf_counter()
        self.store.save(step, slot)
        dt = time.perf_counter() - t0
        self.report.checkpoint_seconds += dt
        return dt

    def _reverse_loading(self, steps: list[int], slots: list[int | None]
                         ) -> tuple[list[float], float]:
        """Reverse ``steps``, the store loading each checkpointed ``x[t]`` it keeps first.

        Slots the stepper reads in place stay in the runs; each other slot starts a run
        after its load. Returns the norms and the seconds spent in the store.
        """
        norms: list[float] = []
        stored = 0.0
        moved = [slot is not None and not self.store.in_place_slot(slot) for slot in slots]
        i, n = 0, len(steps)
        while i < n:
            slot = slots[i]
            if moved[i]:
                assert slot is not None
                t0 = time.perf_counter()
                self.store.load(steps[i], slot)
                stored += time.perf_counter() - t0
            j = i + 1
            while j < n and not moved[j]:
                j += 1
            run = [None if moved[k] else slots[k] for k in range(i, j)]
            norms += self.stepper.reverse_range(steps[i:j], run, measure=self._costate)
            i = j
        self.report.checkpoint_seconds += stored
        return norms, stored

    def _reverse_run(self, actions: Sequence[Action], i: int) -> int:
        """Execute the run of Reverse (and Free) actions starting at ``actions[i]``."""
        steps: list[int] = []
        slots: list[int | None] = []
        frees: list[int] = []
        n = len(actions)
        while i < n:
            act = actions[i]
            if type(act) is Reverse and (not steps or act.step == steps[-1] - 1):
                steps.append(act.step)
                slots.append(act.slot)
            elif type(act) is Free and steps:
                frees.append(act.slot)
            else:
                break
            i += 1
        t0 = time.perf_counter()
        stored = 0.0
        if all(slot is None or self.store.in_place_slot(slot) for slot in slots):
            norms = self.stepper.reverse_range(steps, slots, measure=self._costate)
        else:
            norms, stored = self._reverse_loading(steps, slots)
        rep = self.report
        for t, norm in zip(steps, norms, strict=True):
            rep.costate[t + 1] = norm
        rep.reverse_steps += len(steps)
        rep.restores += sum(slot is not None for slot in slots)
        rep.reverse_seconds += time.perf_counter() - t0 - stored
        for slot in frees:
            self._held.discard(slot)
        return i
