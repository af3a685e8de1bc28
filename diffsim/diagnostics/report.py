"""``diffsim.diagnose``: one self-contained HTML report of a simulation's gradient.

It runs the gradient once under the checkpoint schedule the simulation would use and
gathers: the gradient health from the costate trace, the finite-difference V-curve along
the gradient, the step graph, the schedule's picture and the memory/recompute
trade-off with this run on it, and (given a problem factory) the float32/float64
comparison.
"""

from __future__ import annotations

import base64
import html
import pathlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from diffsim.diagnostics.graph import StepGraph
from diffsim.diagnostics.health import GradientHealth, VCurve, fd_vcurve, gradient_health
from diffsim.diagnostics.precision import PrecisionAdvice, ProblemFactory, precision_advice
from diffsim.diagnostics.schedules import Tradeoff, draw_tradeoff, plot_schedule, tradeoff

__all__ = ["Diagnosis", "diagnose"]


@dataclass
class Diagnosis:
    """What :func:`diagnose` found (the report's content).

    Attributes:
        loss: the loss at the current parameters.
        health: :class:`GradientHealth` of the run.
        vcurve: :class:`VCurve` along the gradient of the first ``wrt`` parameter
            (``None`` if not run).
        graph: the step graph.
        tradeoff: forward steps against memory, this run marked.
        precision: :class:`PrecisionAdvice` (``None`` without a problem factory).
        report: the run's :class:`~diffsim.TapeReport`.
        files: the figures and files written, by name.
        html: the report's path (``None`` without ``out``).
    """

    loss: float
    health: GradientHealth
    vcurve: VCurve | None
    graph: StepGraph
    tradeoff: Tradeoff
    precision: PrecisionAdvice | None
    report: Any
    files: dict[str, pathlib.Path] = field(default_factory=dict)
    html: pathlib.Path | None = None

    def summary(self) -> str:
        """The findings as text."""
        parts = [f"loss {self.loss:.6g}", self.health.summary()]
        if self.vcurve is not None:
            parts.append(self.vcurve.summary())
        parts.append(f"graph: {len(self.graph.stages)} stages, fan-out "
                     + ", ".join(f"{k} {v}" for k, v in self.graph.fan_out().items()))
        r = self.report
        parts.append(f"checkpointing: {r.schedule!r}, {r.forward_steps} forward steps for "
                     f"{r.steps} ({r.forward_steps / r.steps:.2f}x), {r.peak_checkpoints} "
                     f"stored states ({r.peak_checkpoint_bytes / 2**20:.1f} MiB)")
        if self.precision is not None:
            parts.append(self.precision.summary())
        return "\n".join(parts)


def _value_along(simulation: Any, loss: Any, name: str) -> Any:
    x0 = simulation.parameters()[name].copy()

    def value(x: np.ndarray) -> float:
        simulation.update(**{name: x})
        return float(simulation.loss_value(loss))

    return value, x0


def diagnose(simulation: Any, loss: Any, *, wrt: Sequence[str] | None = None,
             out: str | pathlib.Path | None = None, checkpoint: Any = None,
             vcurve: bool = True, vcurve_steps: Sequence[float] | None = None,
             precision: ProblemFactory | None = None, digits: float = 3.0,
             threshold: float = 6.0, title: str = "", dt: float | None = None) -> Diagnosis:
    """Diagnose the gradient of ``loss`` through ``simulation``; write an HTML report.

    Args:
        simulation: any diffsim ``Simulation`` (acoustic, springs, chain, linear, …).
        loss: a loss as ``value_and_grad`` takes it (``diffsim.losses`` or a callable
            returning ``(value, cotangents)``).
        wrt: parameters to differentiate (default: the simulation's).
        out: a folder for ``report.html`` and the figures (``None``: no files).
        checkpoint: the schedule (default: the simulation's choice for its budget).
        vcurve: run the finite-difference V-curve along the gradient of the first
            ``wrt`` parameter (two simulations per step size).
        vcurve_steps: step sizes relative to the parameter's size (default ``10^-1 …
            10^-9``).
        precision: a problem factory for :func:`precision_advice` (float32 against
            float64 in fresh processes); ``None`` skips it.
        digits: digits float32 must keep (precision advice).
        threshold: decades of growth or decay that make a health verdict.
        title: the report's title.
        dt: the time step in s, to label time axes (steps otherwise).

    Returns:
        :class:`Diagnosis`.
    """
    start = time.perf_counter()
    folder = None if out is None else pathlib.Path(out)
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    res = simulation.value_and_grad(loss, wrt=wrt, checkpoint=checkpoint)
    rep = res.report
    health = gradient_health(rep.costate, injection=rep.injection, threshold=threshold)
    names = list(res.grads)
    curve = None
    if vcurve and names:
        name = names[0]
        value, x0 = _value_along(simulation, loss, name)
        g = np.asarray(res.grads[name], dtype=np.float64)
        direction = g / max(float(np.abs(g).max()), np.finfo(np.float64).tiny)
        if not np.any(direction):
            direction = np.ones_like(x0)
        scale = float(np.abs(x0).max()) or 1.0
        rel = vcurve_steps or [10.0 ** -k for k in range(1, 10)]
        try:
            curve = fd_vcurve(value, x0, direction, g, steps=[r * scale for r in rel])
        finally:
            simulation.update(**{name: x0})
    graph = simulation.graph()
    trade = tradeoff(int(rep.state_nbytes), int(rep.steps), measured=[rep],
                     budgets=[_default_budget()])
    advice = precision_advice(precision, digits=digits) if precision is not None else None
    diag = Diagnosis(float(res.loss), health, curve, graph, trade, advice, rep)
    if folder is not None:
        files = diag.files
        files["costate"] = folder / "costate.png"
        health.plot(files["costate"], dt=dt)
        if curve is not None:
            files["vcurve"] = folder / "vcurve.png"
            curve.plot(files["vcurve"])
        files["graph"] = graph.save(folder / "graph.png")
        files["graph_expanded"] = graph.save(folder / "graph_steps.png", expand=3)
        files["graph_dot"] = graph.save(folder / "graph.dot")
        n_plot = min(int(rep.steps), 48)
        files["schedule"] = folder / "schedule.png"
        sched = rep.schedule if n_plot == rep.steps else _small(rep.schedule, n_plot, rep.steps)
        plot_schedule(sched, n_plot, files["schedule"],
                      title=f"{sched!r} on {n_plot} steps" + (
                          f" (the run: {rep.schedule!r} on {rep.steps})" if n_plot < rep.steps
                          else ""))
        files["tradeoff"] = folder / "tradeoff.png"
        draw_tradeoff(trade, files["tradeoff"])
        if advice is not None:
            files["precision"] = folder / "precision.png"
            advice.plot(files["precision"], dt=dt)
        diag.html = folder / "report.html"
        diag.html.write_text(_html(diag, title or "diffsim diagnosis",
                                   time.perf_counter() - start), encoding="utf-8")
    return diag


def _default_budget() -> int:
    from diffsim._tape import DEFAULT_BUDGET
    from diffsim.checkpoint import Budget

    return Budget(bytes=DEFAULT_BUDGET).bytes


def _small(schedule: Any, n: int, steps: int) -> Any:
    """The run's schedule kind scaled to ``n`` steps for a readable picture."""
    from diffsim.checkpoint import Binomial, Uniform

    if isinstance(schedule, Uniform):
        return Uniform(every=max(1, round(schedule.every * n / steps)) or 1)
    if isinstance(schedule, Binomial):
        return Binomial(slots=max(1, min(schedule.slots, n // 4)))
    return schedule


def _img(path: pathlib.Path | None, alt: str) -> str:
    if path is None or not path.is_file():
        return ""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _pre(text: str) -> str:
    return f"<pre>{html.escape(text)}</pre>"


def _html(d: Diagnosis, title: str, seconds: float) -> str:
    r, f = d.report, d.files
    rows = [("loss", f"{d.loss:.6g}"), ("gradient health", d.health.verdict),
            ("backward growth per step", f"{d.health.exponent:+.3g}"),
            ("steps", str(r.steps)), ("schedule", repr(r.schedule)),
            ("forward steps", f"{r.forward_steps} ({r.forward_steps / r.steps:.2f}x n)"),
            ("stored states", f"{r.peak_checkpoints} ({r.peak_checkpoint_bytes / 2**20:.1f} MiB)"),
            ("time split (s)", f"forward {r.forward_seconds:.2f}, recompute "
                               f"{r.recompute_seconds:.2f}, reverse {r.reverse_seconds:.2f}")]
    if d.precision is not None:
        rows.append(("precision", "use float64" if d.precision.use_float64
                     else "float32 is enough"))
    table = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
                    for k, v in rows)
    sections = [
        ("Gradient health", "The norm of the adjoint state λ[t] through the reverse sweep "
         "(the costate of the step map) and its growth rate per step going back in time: a "
         "finite-time Lyapunov exponent of the backward dynamics.",
         _img(f.get("costate"), "costate") + _pre(d.health.summary())),
    ]
    if d.vcurve is not None:
        sections.append(("Finite differences against the adjoint", "Central differences along "
                         "the gradient for a sweep of step sizes: the error falls like h² "
                         "(truncation) until round-off takes over (like ε/h); one-sided "
                         "slopes that disagree at every step show a kink (a branch switch).",
                         _img(f.get("vcurve"), "V-curve") + _pre(d.vcurve.summary())))
    fan = ", ".join(f"{k}: {v} uses" for k, v in d.graph.fan_out().items())
    sections.append(("The step as a computational graph", "One step's stages and the arrays "
                     "they read and write, repeated for every step; a parameter read by every "
                     "step fans out, and its adjoint sums one term per use "
                     f"({fan}).",
                     _img(f.get("graph"), "graph") + _img(f.get("graph_expanded"), "steps")
                     + "<details><summary>DOT</summary>" + _pre(d.graph.to_dot()) + "</details>"))
    sections.append(("Checkpointing", "The schedule's actions (time steps across, execution "
                     "order down) and forward steps against checkpoint memory for every "
                     "schedule, this run marked.",
                     _img(f.get("schedule"), "schedule") + _img(f.get("tradeoff"), "trade-off")
                     + _pre(d.tradeoff.table())))
    if d.precision is not None:
        sections.append(("float32 against float64", "The same problem in both precisions "
                         "(fresh processes): correct digits of the float32 outputs over the "
                         "horizon and the gradients' relative difference.",
                         _img(f.get("precision"), "precision") + _pre(d.precision.summary())))
    body = "".join(f"<h2>{html.escape(h)}</h2><p>{html.escape(p)}</p>{c}"
                   for h, p, c in sections)
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
            "</title><style>body{font-family:sans-serif;max-width:1000px;margin:2em auto;"
            "padding:0 1em}img{max-width:100%;display:block;margin:1em 0}th{text-align:left;"
            "padding-right:1em}pre{background:#f4f4f4;padding:.6em;overflow-x:auto}</style>"
            f"</head><body><h1>{html.escape(title)}</h1><table>{table}</table>{body}"
            f"<p><small>diffsim diagnose, {seconds:.1f} s</small></p></body></html>\n")
