"""Gradient health from the costate trace, and the finite-difference V-curve.

The reverse sweep is the costate recursion ``λ[t] = (∂f/∂x[t])ᵀ λ[t+1] + (∂g/∂x[t])ᵀ
∂L/∂y[t]``; the tape records ``‖λ[t]‖`` at every step (:attr:`TapeReport.costate`).
Where the backward dynamics contract, ``‖λ‖`` shrinks going back in time and the early
steps (and the parameters acting there) get no gradient: *vanishing*. Where they expand,
``‖λ‖`` grows without bound: *exploding*. The per-step growth rate
``r[t] = ln(‖λ[t]‖ / ‖λ[t+1]‖)`` averaged over a window is a finite-time Lyapunov
exponent of the backward dynamics.

:func:`gradient_health` turns a costate trace into a verdict with the step range and
what to try; :func:`fd_vcurve` sweeps finite differences over many step sizes and says
where truncation gives way to round-off and whether the loss has a kink (a branch
switch: contact, friction, a clamp) closer than the steps.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

__all__ = ["GradientHealth", "VCurve", "fd_vcurve", "gradient_health"]

Verdict = Literal["stable", "vanishing", "exploding", "unmeasured"]

ADVICE: dict[str, tuple[str, ...]] = {
    "exploding": (
        "shorten the horizon: differentiate fewer steps at a time",
        "split the horizon (multiple shooting: optimise the state at segment starts with a "
        "continuity penalty)",
        "add damping (physical, or a sponge/PML) so the backward dynamics contract",
        "run in float64 (diffsim.init(precision='f64')): a grown adjoint overflows float32 "
        "and swamps the late steps' contributions",
        "put loss terms on intermediate states, so the final-time sensitivity does not "
        "dominate",
    ),
    "vanishing": (
        "put loss terms on intermediate states or earlier outputs: the early steps get no "
        "signal from a loss at the end",
        "shorten the horizon or split it (multiple shooting)",
        "reduce the damping if it is a modelling choice rather than physics",
        "run in float64 if the decades lost approach float32's 7 digits: early-step "
        "contributions fall below the round-off of the late ones",
    ),
    "stable": ("nothing to do: the adjoint neither grows nor decays beyond the threshold",),
    "unmeasured": ("run the gradient with costate=True (the default) to record the trace",),
}


@dataclass(frozen=True)
class GradientHealth:
    """What :func:`gradient_health` found.

    Attributes:
        verdict: ``"stable"``, ``"vanishing"``, ``"exploding"`` or ``"unmeasured"``.
        costate: the trace ``‖λ[t]‖``, ``t = 0 … n`` (float64).
        rate: per-step backward growth ``ln(‖λ[t]‖ / ‖λ[t+1]‖)``, ``[n]`` (NaN where a norm
            is zero or missing).
        window_rate: ``rate`` averaged over ``window`` steps (a finite-time Lyapunov
            exponent of the backward dynamics, per step).
        exponent: the least-squares slope of ``ln ‖λ[t]‖`` against ``-t`` over the
            measured steps: mean growth per step going back in time.
        decades: decades gained (exploding, > 0) or lost (vanishing, < 0) against the
            level where the loss enters; 0 when stable.
        steps: the step range ``(first, last)`` where the adjoint is beyond the threshold
            (``None`` when stable).
        threshold: decades that make a verdict.
        window: the smoothing window in steps.
        advice: what to try, most useful first.
        non_finite: steps whose norm is Inf or NaN from an overflow.
    """

    verdict: Verdict
    costate: np.ndarray
    rate: np.ndarray
    window_rate: np.ndarray
    exponent: float
    decades: float
    steps: tuple[int, int] | None
    threshold: float
    window: int
    advice: tuple[str, ...]
    non_finite: tuple[int, ...] = field(default=())

    def summary(self) -> str:
        """A few lines: the verdict, where, how much, what to try."""
        lines = [f"gradient health: {self.verdict}"]
        if self.verdict == "unmeasured":
            return "\n".join([*lines, *("  - " + a for a in self.advice)])
        n = self.costate.size - 1
        lines.append(f"  mean backward growth {self.exponent:+.3g} per step "
                     f"(x{math.exp(self.exponent * n) if abs(self.exponent * n) < 700 else math.inf:.3g} "
                     f"over {n} steps)")
        if self.steps is not None:
            what = "above" if self.verdict == "exploding" else "below"
            lines.append(f"  steps {self.steps[0]}-{self.steps[1]}: |λ| {abs(self.decades):.1f} "
                         f"decades {what} the level where the loss enters (threshold "
                         f"{self.threshold:g})")
        if self.non_finite:
            lines.append(f"  {len(self.non_finite)} steps with a non-finite adjoint, the latest "
                         f"{max(self.non_finite)}")
        lines += ["  - " + a for a in self.advice]
        return "\n".join(lines)

    def plot(self, path: object, *, dt: float | None = None, title: str | None = None) -> None:
        """The trace and the windowed growth rate, with the flagged range shaded (PNG)."""
        import pathlib

        from diffsim._plot import pyplot, save_figure

        plt = pyplot()
        fig, (ax, bx) = plt.subplots(2, 1, figsize=(6.5, 5), sharex=True)
        scale = dt or 1.0
        t = np.arange(self.costate.size) * scale
        shown = np.where(self.costate > 0, self.costate, np.nan)
        ax.semilogy(t, shown, color="C0")
        ax.set_ylabel("‖λ[t]‖")
        ax.set_title(title or f"Gradient health: {self.verdict}")
        bx.plot(t[:-1], self.window_rate, color="C1")
        bx.axhline(0.0, color="0.5", lw=0.8)
        bx.set_ylabel(f"growth / step\n({self.window}-step window)")
        bx.set_xlabel("time (s)" if dt else "time step t")
        if self.steps is not None:
            for a in (ax, bx):
                a.axvspan(self.steps[0] * scale, self.steps[1] * scale,
                          color="C3" if self.verdict == "exploding" else "C2", alpha=0.15)
        fig.tight_layout()
        save_figure(fig, pathlib.Path(str(path)))


def gradient_health(costate: Sequence[float] | np.ndarray, *,
                    injection: Sequence[float] | np.ndarray | None = None,
                    threshold: float = 6.0, window: int | None = None,
                    entry: int | None = None) -> GradientHealth:
    """Diagnose vanishing or exploding gradients from a costate trace ``‖λ[t]‖``.

    Args:
        costate: ``[n+1]`` norms, e.g. ``result.report.costate`` of ``value_and_grad``.
        injection: ``[n+1]`` norms of the loss's direct term at each time
            (``result.report.injection``). With it, ``‖λ[t]‖`` is measured against the
            largest signal injected at or after ``t``, so a loss on every state (whose
            own terms make the trace rise and fall) is judged by the dynamics alone.
            Without it (or where it is NaN) the loss is taken to enter at the end.
        threshold: decades (powers of ten) of growth or decay that make a verdict
            (default 6: a millionfold).
        window: steps to average the growth rate over (default ``max(1, n // 50)``).
        entry: the last ``entry`` steps give the level where the loss enters (default
            ``max(1, n // 20)``): growth is measured against the largest norm there.

    Returns:
        :class:`GradientHealth`. Exploding: somewhere the norm exceeds the reference (the
        largest later injection, or the entry level) by more than ``threshold`` decades,
        or overflows. Vanishing: somewhere it is more than ``threshold`` decades below the
        largest later injection (or its own largest value at any later step). The larger
        excess wins when both happen.
    """
    c = np.asarray(costate, dtype=np.float64).reshape(-1)
    if c.size < 2:
        raise ValueError(f"costate has {c.size} entries; a trace of n+1 >= 2 norms is needed")
    if not (isinstance(threshold, (int, float)) and threshold > 0):
        raise ValueError(f"threshold={threshold!r} must be a positive number of decades")
    n = c.size - 1
    window = max(1, n // 50) if window is None else int(window)
    entry = max(1, n // 20) if entry is None else int(entry)
    if window < 1 or entry < 1:
        raise ValueError(f"window={window} and entry={entry} must be >= 1 steps")
    overflow = tuple(int(t) for t in np.flatnonzero(np.isinf(c)))
    good = np.isfinite(c) & (c > 0)
    log = np.where(good, np.log10(np.where(good, c, 1.0)), np.nan)
    rate = (log[:-1] - log[1:]) * math.log(10.0)
    if not good.any():
        verdict: Verdict = "exploding" if overflow else "unmeasured"
        return GradientHealth(verdict, c, rate, rate.copy(), math.nan, math.inf if overflow else 0.0,
                              (0, max(overflow)) if overflow else None, threshold, window,
                              ADVICE[verdict], overflow)
    kernel = np.ones(window) / window
    filled = np.where(np.isfinite(rate), rate, 0.0)
    counts = np.convolve(np.isfinite(rate).astype(float), kernel, mode="same")
    window_rate = np.where(counts > 0, np.convolve(filled, kernel, mode="same")
                           / np.maximum(counts, 1e-300), np.nan)
    ts = np.flatnonzero(good)
    exponent = (-float(np.polyfit(ts, log[ts] * math.log(10.0), 1)[0]) if ts.size > 1
                else 0.0)
    inj = None if injection is None else np.asarray(injection, dtype=np.float64).reshape(-1)
    if inj is not None and inj.shape != c.shape:
        raise ValueError(f"injection has {inj.size} entries; expected {c.size} (one per time "
                         "level, like the costate)")
    if inj is not None and np.all(np.isfinite(inj)) and np.any(inj > 0):
        # against the largest signal injected at or after t
        later = np.maximum.accumulate(inj[::-1])[::-1]
        ok = good & (later > 0)
        rel = np.where(ok, log - np.log10(np.where(later > 0, later, 1.0)), np.nan)
        excess = np.where(ok, rel, -np.inf)
        deficit = np.where(ok, -rel, -np.inf)
    else:
        # the level where the loss enters: the largest norm among the last measured steps
        tail = ts[ts >= ts.max() - entry + 1]
        ref = float(np.nanmax(log[tail]))
        excess = np.where(good, log - ref, -np.inf)
        later_max = np.fmax.accumulate(np.where(good, log, -np.inf)[::-1])[::-1]
        deficit = np.where(good, later_max - log, -np.inf)
    up, down = float(excess.max()), float(deficit.max())
    if overflow:
        up = math.inf
    if up > threshold and up >= down:
        flagged = np.flatnonzero(excess > threshold)
        span = (int(min(flagged.min(), min(overflow, default=n))) if flagged.size else min(overflow),
                int(max(flagged.max(), max(overflow, default=0))) if flagged.size else max(overflow))
        return GradientHealth("exploding", c, rate, window_rate, exponent, up, span, threshold,
                              window, ADVICE["exploding"], overflow)
    if down > threshold:
        flagged = np.flatnonzero(deficit > threshold)
        return GradientHealth("vanishing", c, rate, window_rate, exponent, -down,
                              (int(flagged.min()), int(flagged.max())), threshold, window,
                              ADVICE["vanishing"], overflow)
    return GradientHealth("stable", c, rate, window_rate, exponent, 0.0, None, threshold, window,
                          ADVICE["stable"], overflow)


@dataclass(frozen=True)
class VCurve:
    """What :func:`fd_vcurve` measured.

    Attributes:
        steps: step sizes ``h`` along the direction, descending.
        central: central differences ``(J(x+hd) - J(x-hd)) / 2h``.
        forward, backward: one-sided differences ``(J(x+hd) - J(x)) / h`` and
            ``(J(x) - J(x-hd)) / h``.
        directional: ``<∇J, d>`` of the gradient under test.
        errors: relative error of the central differences.
        best_step, best_error: the bottom of the V.
        truncation: steps above the bottom where the error falls as ``h`` shrinks.
        round_off: steps below the bottom, where cancellation takes over.
        kink: the one-sided slopes disagree by more than curvature explains at these
            steps: a branch switch (a kink in ``J``) lies within ``h`` of ``x``.
    """

    steps: np.ndarray
    central: np.ndarray
    forward: np.ndarray
    backward: np.ndarray
    directional: float
    errors: np.ndarray
    best_step: float
    best_error: float
    truncation: np.ndarray
    round_off: np.ndarray
    kink: np.ndarray

    @property
    def has_kink(self) -> bool:
        """Whether a branch switch closer than some tested step was detected."""
        return bool(self.kink.size)

    def summary(self) -> str:
        """The V-curve's reading in a few lines."""
        lines = [f"finite-difference V-curve: best relative error {self.best_error:.2e} at "
                 f"h = {self.best_step:.2e}"]
        if self.truncation.size:
            lines.append(f"  truncation (error falls with h) for h >= {self.truncation.min():.2e}")
        if self.round_off.size:
            lines.append(f"  round-off (error grows as h shrinks) for h <= "
                         f"{self.round_off.max():.2e}")
        if self.has_kink:
            lines.append(f"  a kink (branch switch) lies within h = {self.kink.min():.2e} of x: "
                         "finite differences there straddle two branches; the adjoint gives the "
                         "derivative of the branch actually taken")
        return "\n".join(lines)

    def plot(self, path: object, *, title: str | None = None) -> None:
        """Relative error against step size (log-log), kinks marked (PNG)."""
        import pathlib

        from diffsim._plot import pyplot, save_figure

        plt = pyplot()
        fig, ax = plt.subplots(figsize=(6, 3.8))
        err = np.maximum(self.errors, 1e-18)
        ax.loglog(self.steps, err, "o-", label="central difference vs adjoint")
        if self.has_kink:
            mask = np.isin(self.steps, self.kink)
            ax.loglog(self.steps[mask], err[mask], "s", color="C3", ms=9, mfc="none",
                      label="one-sided slopes disagree (kink)")
        ax.axvline(self.best_step, color="0.5", lw=0.8, ls="--")
        ax.set_xlabel("step h")
        ax.set_ylabel("relative error")
        ax.set_title(title or "Finite differences: truncation, round-off and kinks")
        ax.legend(fontsize=8)
        fig.tight_layout()
        save_figure(fig, pathlib.Path(str(path)))


def fd_vcurve(fun: Callable[[np.ndarray], float], x: np.ndarray, direction: np.ndarray,
              grad: np.ndarray, *, steps: Sequence[float] | None = None) -> VCurve:
    """Finite differences of ``J`` at ``x`` along ``direction`` over a sweep of steps.

    Args:
        fun: ``J(x) -> float``.
        x: the point.
        direction: the perturbation direction, shaped like ``x``.
        grad: ``∇J(x)`` under test, shaped like ``x``.
        steps: step sizes (default 17 from ``s`` down to ``1e-16 s``, ``s = ‖x‖/‖d‖``).

    Returns:
        :class:`VCurve`: the errors, the bottom of the V, the truncation and round-off
        branches, and the steps at which the one-sided slopes disagree by more than a
        smooth ``J`` allows (a kink closer than ``h``).
    """
    x = np.asarray(x, dtype=np.float64)
    d = np.asarray(direction, dtype=np.float64)
    if d.shape != x.shape or not np.any(d):
        raise ValueError(f"direction must be a nonzero array shaped like x {x.shape}; got "
                         f"shape {d.shape}")
    if np.shape(grad) != x.shape:
        raise ValueError(f"grad has shape {np.shape(grad)}; expected {x.shape}")
    if steps is None:
        nx, nd = float(np.linalg.norm(x)), float(np.linalg.norm(d))
        s = nx / nd if nx > 0 else 1.0 / nd
        steps = [s * 10.0 ** (-k) for k in range(0, 17)]
    hs = np.sort(np.asarray(steps, dtype=np.float64))[::-1]
    f0 = fun(x)
    fp = np.array([fun(x + h * d) for h in hs])
    fm = np.array([fun(x - h * d) for h in hs])
    central = (fp - fm) / (2.0 * hs)
    forward = (fp - f0) / hs
    backward = (f0 - fm) / hs
    directional = float(np.vdot(np.asarray(grad, dtype=np.float64), d))
    scale = max(abs(directional), float(np.max(np.abs(central))), np.finfo(np.float64).tiny)
    errors = np.abs(central - directional) / max(abs(directional), np.finfo(np.float64).tiny)
    best = int(np.argmin(errors))
    truncation = hs[:best][np.diff(errors[:best + 1]) < 0] if best > 0 else hs[:0]
    round_off = hs[best + 1:]
    # Smooth J: forward - backward = h J'' + O(h^3), so it halves with h. A kink within h
    # keeps the gap near the jump in slope however small h is. Compare each step's gap with
    # the next smaller one's (the steps shrink 10x: a smooth gap shrinks about 10x too).
    # Only steps above the round-off floor count.
    gap = np.abs(forward - backward)
    noise = 4.0 * np.finfo(np.float64).eps * max(abs(f0), np.finfo(np.float64).tiny) / hs
    kink = []
    for i in range(len(hs) - 1):
        if gap[i] <= 10.0 * noise[i] or gap[i + 1] <= 10.0 * noise[i + 1]:
            continue
        shrink = gap[i] / gap[i + 1]
        ratio = hs[i] / hs[i + 1]
        if gap[i] > 1e-6 * scale and shrink < ratio ** 0.5:
            kink.append(hs[i])
    truncation = np.asarray([h for h in truncation if h not in kink])   # a kink is no truncation
    return VCurve(hs, central, forward, backward, directional, errors, float(hs[best]),
                  float(errors[best]), truncation, np.asarray(round_off), np.asarray(kink))
