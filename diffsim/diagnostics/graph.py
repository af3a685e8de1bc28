"""The tape as a computational graph: one step's stages, what they read and write.

A rollout ``x[t+1] = f(x[t]; θ)``, ``y[t] = g(x[t])`` is a chain of identical steps. Its
graph, collapsed over time, is one step (its stages and the state, parameter and output
arrays they read and write) repeated ``n`` times; expanded, it shows the first few steps
side by side, with every parameter feeding every step. A parameter read by every step
*fans out* to ``n`` uses, so its adjoint is a sum of ``n`` contributions,
``∂L/∂θ = Σ_t (∂f/∂θ)ᵀ λ[t+1]``: the accumulation the reverse sweep performs.

Steppers describe their step with :class:`Stage` lists (``Stepper.graph_stages``); a
:class:`~diffsim.TaichiStepper` is read from its kernels' source (which arguments each
kernel stores into and which it loads); any other stepper gets one stage reading the
whole state and every parameter.
"""

from __future__ import annotations

import ast
import inspect
import pathlib
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

__all__ = ["Stage", "StepGraph", "kernel_access", "step_graph"]

Kind = Literal["state", "parameter", "output", "derived", "scratch"]


@dataclass(frozen=True)
class Stage:
    """One stage (kernel launch or fused group) of a step.

    Attributes:
        name: what the stage does, e.g. ``"update"``.
        reads: names of the arrays it reads.
        writes: names of the arrays it writes (a state written is its next level).
        per_step: runs at every step (``False`` for a one-off, e.g. a derived coefficient).
    """

    name: str
    reads: tuple[str, ...]
    writes: tuple[str, ...]
    per_step: bool = True


@dataclass(frozen=True)
class StepGraph:
    """The step-level computational graph of a rollout of ``steps`` steps.

    Attributes:
        steps: ``n``.
        arrays: ``name -> kind`` (``"state"``, ``"parameter"``, ``"output"``,
            ``"derived"`` (computed from parameters once, before the steps) or
            ``"scratch"`` (rewritten inside each step)).
        stages: the step's stages in execution order; one-off stages (``per_step``
            false) derive coefficients from parameters.
        title: what the graph shows.
        time_indexed: parameters with one row per step (``[steps, ...]``, e.g. a wavelet
            or a forcing): step ``t`` reads row ``t`` only, so each entry has one use.
    """

    steps: int
    arrays: dict[str, Kind]
    stages: tuple[Stage, ...]
    title: str = ""
    time_indexed: frozenset[str] = frozenset()

    # -- reading the graph ------------------------------------------------------------
    def uses_per_step(self, name: str) -> int:
        """How many per-step stages read ``name`` (directly)."""
        return sum(name in s.reads for s in self.stages if s.per_step)

    def fan_out(self) -> dict[str, int]:
        """Uses over the whole rollout of every parameter, through derived arrays too.

        A parameter that feeds a derived coefficient read by ``k`` stages each step has
        ``k n`` uses; its adjoint accumulates that many contributions. An entry of a
        time-indexed parameter is used by one step only (``k`` uses).
        """
        out: dict[str, int] = {}
        for name, kind in self.arrays.items():
            if kind != "parameter":
                continue
            per_step = self.uses_per_step(name)
            for stage in self.stages:
                if not stage.per_step and name in stage.reads:
                    per_step += sum(self.uses_per_step(d) for d in stage.writes)
            out[name] = per_step * (1 if name in self.time_indexed else self.steps)
        return out

    def edges(self) -> list[tuple[str, str, str]]:
        """``(source, target, "read" | "write")`` of the collapsed graph (stages by name)."""
        out = []
        for stage in self.stages:
            out += [(a, stage.name, "read") for a in stage.reads]
            out += [(stage.name, a, "write") for a in stage.writes]
        return out

    # -- DOT ----------------------------------------------------------------------------
    def to_dot(self, expand: int = 0) -> str:
        """Graphviz DOT text: collapsed (``expand=0``) or the first ``expand`` steps."""
        return _dot_expanded(self, expand) if expand > 0 else _dot_collapsed(self)

    def save(self, path: str | pathlib.Path, *, expand: int = 0) -> pathlib.Path:
        """Write the graph: ``.dot`` (DOT text), or ``.png`` / ``.svg`` (drawn with matplotlib)."""
        path = pathlib.Path(path)
        if path.suffix == ".dot":
            path.write_text(self.to_dot(expand), encoding="utf-8")
        elif path.suffix in (".png", ".svg"):
            _draw(self, path, expand)
        else:
            raise ValueError(f"graph path {str(path)!r}: use a .dot, .png or .svg suffix")
        return path


# -- building ---------------------------------------------------------------------------
def step_graph(stepper: Any, *, title: str = "") -> StepGraph:
    """The :class:`StepGraph` of a stepper (any object of the Stepper protocol)."""
    steps = int(getattr(stepper, "steps", 0) or 0)
    timed: set[str] = set()
    if hasattr(stepper, "graph_stages"):
        arrays, stages = stepper.graph_stages()
        timed = set(getattr(stepper, "time_indexed_parameters", ()))
    elif hasattr(stepper, "_states") and hasattr(stepper, "substeps"):
        arrays, stages = taichi_stages(stepper)
        timed = {name for name, f in stepper._params.items()
                 if steps and f.shape and f.shape[0] == steps}
    else:
        arrays, stages = _generic(stepper)
    return StepGraph(steps, dict(arrays), tuple(stages), title or type(stepper).__name__,
                     frozenset(timed))


def _generic(stepper: Any) -> tuple[dict[str, Kind], list[Stage]]:
    """One stage reading the whole state and every parameter (no finer knowledge)."""
    state = tuple(stepper.state_spec())
    params = tuple(stepper.parameters()) if hasattr(stepper, "parameters") else ()
    outputs = tuple(stepper.outputs())
    arrays: dict[str, Kind] = {**dict.fromkeys(state, "state"), **dict.fromkeys(params, "parameter"),
                               **dict.fromkeys(outputs, "output")}
    return arrays, [Stage("step", state + params, state), Stage("record", state, outputs)]


def kernel_access(kernel: Any) -> tuple[set[int], set[int]]:
    """Argument positions a Taichi kernel loads from and stores into (from its source).

    A subscript store (``a[i] = …``, ``a[i] += …``) writes ``a``; any other use of ``a``
    (a subscript load, an argument of a ``ti.func``) reads it, but for ``a.shape`` and
    ``a.dtype``; ``+=`` both reads and writes.
    """
    func = getattr(getattr(kernel, "_primal", None), "func", None) or kernel
    tree = ast.parse(textwrap.dedent(inspect.getsource(func)))
    fdef = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef))
    names = [a.arg for a in fdef.args.args]
    reads: set[int] = set()
    writes: set[int] = set()

    def base(node: ast.AST) -> ast.Name | None:
        while isinstance(node, (ast.Subscript, ast.Attribute)):
            node = node.value
        return node if isinstance(node, ast.Name) else None

    store_bases: set[int] = set()   # Name nodes that are only the array of a plain store
    for node in ast.walk(fdef):
        if isinstance(node, (ast.Assign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                b = base(t) if isinstance(t, ast.Subscript) else None
                if b is not None and b.id in names:
                    writes.add(names.index(b.id))
                    if isinstance(node, ast.Assign):
                        store_bases.add(id(b))
                    else:
                        reads.add(names.index(b.id))
    for node in ast.walk(fdef):   # a.shape, a.dtype: metadata, not data
        if (isinstance(node, ast.Attribute) and node.attr in ("shape", "dtype", "n", "m")
                and isinstance(node.value, ast.Name)):
            store_bases.add(id(node.value))
    for node in ast.walk(fdef):
        if (isinstance(node, ast.Name) and node.id in names and isinstance(node.ctx, ast.Load)
                and id(node) not in store_bases):
            reads.add(names.index(node.id))
    return reads, writes


def taichi_stages(stepper: Any) -> tuple[dict[str, Kind], list[Stage]]:
    """The stages of a :class:`~diffsim.TaichiStepper`, read from its launches of step 0."""
    by_id: dict[int, tuple[str, Any]] = {}
    for kind, group in (("state", stepper._states), ("parameter", stepper._params),
                        ("output", stepper._outputs), ("scratch", stepper._scratches)):
        for name, f in group.items():
            by_id[id(f)] = (name, kind)
    arrays: dict[str, Kind] = {name: kind for name, kind in by_id.values()}
    stages: list[Stage] = []
    seen: dict[str, int] = {}
    for launches in (stepper.substeps(0), stepper.record(1)):
        for kernel, args in launches:
            reads, writes = kernel_access(kernel)
            r = tuple(by_id[id(args[i])][0] for i in sorted(reads) if id(args[i]) in by_id)
            w = tuple(by_id[id(args[i])][0] for i in sorted(writes) if id(args[i]) in by_id)
            name = getattr(kernel, "__name__", "kernel")
            seen[name] = seen.get(name, 0) + 1
            stages.append(Stage(name if seen[name] == 1 else f"{name} ({seen[name]})", r, w))
    return arrays, stages


# -- drawing ----------------------------------------------------------------------------
_SHAPES = {"state": "box", "parameter": "ellipse", "output": "note", "derived": "ellipse",
           "scratch": "box"}
_COLOURS = {"state": "#cfe2f3", "parameter": "#fce5cd", "output": "#d9ead3",
            "derived": "#fff2cc", "scratch": "#eeeeee"}


def _q(text: str) -> str:
    return '"' + text.replace('"', r"\"") + '"'


def _dot_collapsed(g: StepGraph) -> str:
    fan = g.fan_out()
    title = g.title + f" (collapsed over {g.steps} steps)"
    lines = ["digraph step {", "  rankdir=LR;", f"  label={_q(title)};",
             "  node [fontname=Helvetica fontsize=10];"]
    for name, kind in g.arrays.items():
        label = name
        if kind == "state":
            label = f"{name}[t]"
        elif kind == "parameter" and name in g.time_indexed:
            label = f"{name}\\nrow t read by step t only"
        elif kind == "parameter" and fan.get(name):
            label = f"{name}\\n{fan[name]} uses: adjoint sums {fan[name]} terms"
        lines.append(f"  {_q(name)} [shape={_SHAPES[kind]} style=filled "
                     f"fillcolor={_q(_COLOURS[kind])} label={_q(label)}];")
        if kind == "state":
            lines.append(f"  {_q(name + '+')} [shape=box style=filled fillcolor="
                         f"{_q(_COLOURS['state'])} label={_q(name + '[t+1]')}];")
    lines.append(f"  subgraph cluster_step {{ label={_q(f'step t, repeated x {g.steps}')}; "
                 "style=rounded;")
    for s in g.stages:
        if s.per_step:
            lines.append(f"    {_q('stage:' + s.name)} [shape=box style=bold label={_q(s.name)}];")
    lines.append("  }")
    for s in g.stages:
        if not s.per_step:
            lines.append(f"  {_q('stage:' + s.name)} [shape=box style=dashed "
                         f"label={_q(s.name + ' (once)')}];")
    for src, dst, how in _wiring(g):
        if how == "derive":
            continue
        lines.append(f"  {_q(src)} -> {_q(dst)}"
                     + (' [color="#e69138"]' if how == "param" else "") + ";")
    for s in g.stages:
        if not s.per_step:
            node = _q("stage:" + s.name)
            lines += [f"  {_q(a)} -> {node};" for a in s.reads]
            lines += [f"  {node} -> {_q(a)};" for a in s.writes]
    for name, kind in g.arrays.items():
        if kind == "state":
            lines.append(f"  {_q(name + '+')} -> {_q(name)} [style=dashed "
                         f"label={_q('next step')} constraint=false];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _dot_expanded(g: StepGraph, k: int) -> str:
    k = min(k, g.steps) if g.steps else k
    title = g.title + f" (first {k} of {g.steps} steps)"
    lines = ["digraph rollout {", "  rankdir=LR;", f"  label={_q(title)};",
             "  node [fontname=Helvetica fontsize=10];"]
    state = [a for a, kind in g.arrays.items() if kind == "state"]
    params = [a for a, kind in g.arrays.items() if kind in ("parameter", "derived")]
    for p in params:
        lines.append(f"  {_q(p)} [shape=ellipse style=filled fillcolor={_q(_COLOURS[g.arrays[p]])}];")
    for t in range(k + 1):
        for a in state:
            lines.append(f"  {_q(f'{a}[{t}]')} [shape=box style=filled "
                         f"fillcolor={_q(_COLOURS['state'])}];")
    for t in range(k):
        node = _q(f"step {t}")
        lines.append(f"  {node} [shape=box style=bold];")
        per_step_reads = {a for s in g.stages if s.per_step for a in s.reads}
        for a in state:
            if a in per_step_reads:
                lines.append(f"  {_q(f'{a}[{t}]')} -> {node};")
            lines.append(f"  {node} -> {_q(f'{a}[{t + 1}]')};")
        for p in params:
            if p in per_step_reads:
                lines.append(f"  {_q(p)} -> {node} [color=\"#e69138\"];")
    for s in g.stages:
        if not s.per_step:
            for a in s.reads:
                for d in s.writes:
                    lines.append(f"  {_q(a)} -> {_q(d)} [label={_q(s.name)}];")
    if g.steps > k:
        lines.append(f"  {_q('...')} [shape=plaintext label={_q(f'... {g.steps - k} more steps')}];")
        for a in state:
            lines.append(f"  {_q(f'{a}[{k}]')} -> {_q('...')};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _draw(g: StepGraph, path: pathlib.Path, expand: int) -> None:
    """A layered drawing with matplotlib (no Graphviz binary needed)."""
    from diffsim._plot import pyplot, save_figure

    plt = pyplot()
    if expand > 0:
        columns, edges = _expanded_layout(g, expand)
    else:
        columns, edges = _collapsed_layout(g)
    width = max(6.0, 2.3 * len(columns))
    height = max(3.0, 0.75 * max(len(c) for c in columns) + 1.2)
    fig, ax = plt.subplots(figsize=(width, height))
    pos: dict[str, tuple[float, float]] = {}
    for i, col in enumerate(columns):
        for j, (key, _label, _kind) in enumerate(col):
            pos[key] = (i, -(j - (len(col) - 1) / 2.0))
    for src, dst, colour in edges:
        if src in pos and dst in pos:
            (x0, y0), (x1, y1) = pos[src], pos[dst]
            ax.annotate("", xy=(x1 - 0.28, y1), xytext=(x0 + 0.28, y0),
                        arrowprops=dict(arrowstyle="->", color=colour, lw=0.9,
                                        connectionstyle="arc3,rad=0.05"))
    for col in columns:
        for key, label, kind in col:
            x, y = pos[key]
            ax.text(x, y, label, ha="center", va="center", fontsize=7.5,
                    bbox=dict(boxstyle="round,pad=0.3" if kind in ("parameter", "derived")
                              else "square,pad=0.3", fc=_COLOURS.get(kind, "white"),
                              ec="0.3", lw=0.8 if kind != "stage" else 1.6))
    ax.set_xlim(-0.6, len(columns) - 0.4)
    ys = [y for _, y in pos.values()]
    ax.set_ylim(min(ys) - 0.8, max(ys) + 0.8)
    ax.axis("off")
    ax.set_title(g.title + (f": first {min(expand, g.steps)} of {g.steps} steps" if expand
                            else f": one step, repeated x {g.steps}"), fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)


def _wiring(g: StepGraph) -> list[tuple[str, str, str]]:
    """Edges of one step, the state's levels told apart (``a`` is ``a[t]``, ``a+`` ``a[t+1]``).

    A stage reading a state that an earlier stage of the step wrote (the receivers'
    record, for one) reads the new level.
    """
    edges = []
    written: set[str] = set()
    for s in g.stages:
        node = "stage:" + s.name
        if not s.per_step:
            edges += [(a, d, "derive") for a in s.reads for d in s.writes]
            continue
        for a in s.reads:
            src = a + "+" if g.arrays.get(a) == "state" and a in written else a
            edges.append((src, node, "param" if g.arrays.get(a) in ("parameter", "derived")
                          else "read"))
        for a in s.writes:
            edges.append((node, a + "+" if g.arrays.get(a) == "state" else a, "write"))
            written.add(a)
    return edges


def _collapsed_layout(g: StepGraph) -> tuple[list[list[tuple[str, str, str]]],
                                             list[tuple[str, str, str]]]:
    fan, timed = g.fan_out(), g.time_indexed
    edges = _wiring(g)
    nodes: dict[str, tuple[str, str]] = {}
    for a, k in g.arrays.items():
        if k == "state":
            nodes[a] = (f"{a}[t]", k)
            nodes[a + "+"] = (f"{a}[t+1]", k)
        elif k == "parameter":
            nodes[a] = (f"{a}\n(row t: 1 use)" if a in timed else
                        (f"{a}\n{fan[a]} uses" if fan.get(a) else a), k)
        else:
            nodes[a] = (a, k)
    for st in g.stages:
        if st.per_step:
            nodes["stage:" + st.name] = (st.name, "stage")
    layer = dict.fromkeys(nodes, 0)
    for _ in range(len(nodes)):          # longest path from the sources
        changed = False
        for src, dst, _kind in edges:
            if src in layer and dst in layer and layer[dst] < layer[src] + 1:
                layer[dst] = layer[src] + 1
                changed = True
        if not changed:
            break
    columns: list[list[tuple[str, str, str]]] = [[] for _ in range(max(layer.values()) + 1)]
    for key, (label, kind) in nodes.items():
        columns[layer[key]].append((key, label, kind))
    colour = {"param": "#e69138", "derive": "#e69138", "read": "0.3", "write": "0.3"}
    return [c for c in columns if c], [(a, b, colour[k]) for a, b, k in edges]


def _expanded_layout(g: StepGraph, k: int) -> tuple[list[list[tuple[str, str, str]]],
                                                    list[tuple[str, str, str]]]:
    k = min(k, g.steps) if g.steps else k
    state = [a for a, kind in g.arrays.items() if kind == "state"]
    params: list[tuple[str, str, str]] = [(a, a, str(g.arrays[a])) for a, kind in g.arrays.items()
                                          if kind in ("parameter", "derived")]
    reads = {a for s in g.stages if s.per_step for a in s.reads}
    columns: list[list[tuple[str, str, str]]] = [params]
    edges = []
    for t in range(k + 1):
        columns.append([(f"{a}[{t}]", f"{a}[{t}]", "state") for a in state])
        if t < k:
            columns.append([(f"step {t}", f"step {t}", "stage")])
            for a in state:
                if a in reads:
                    edges.append((f"{a}[{t}]", f"step {t}", "0.3"))
                edges.append((f"step {t}", f"{a}[{t + 1}]", "0.3"))
            for p, _, _ in params:
                if p in reads:
                    edges.append((p, f"step {t}", "#e69138"))
    if g.steps > k:
        columns.append([("more", f"... {g.steps - k}\nmore steps", "scratch")])
        edges += [(f"{a}[{k}]", "more", "0.3") for a in state]
    return columns, edges


def declared(arrays: Mapping[str, str], stages: Sequence[Stage]
             ) -> tuple[dict[str, Kind], list[Stage]]:
    """Check a stepper's declared graph (every name an array, known kinds) and return it."""
    for name, kind in arrays.items():
        if kind not in _SHAPES:
            raise ValueError(f"array {name!r} has kind {kind!r}; use one of {sorted(_SHAPES)}")
    for s in stages:
        for a in (*s.reads, *s.writes):
            if a not in arrays:
                raise ValueError(f"stage {s.name!r} names {a!r}, which is not one of the "
                                 f"declared arrays {sorted(arrays)}")
    return cast(dict[str, Kind], dict(arrays)), list(stages)
