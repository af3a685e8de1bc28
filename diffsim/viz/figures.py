"""Figures of an inversion: models (3D ones as slices), shot gathers, gradient, loss, wavefield GIF.

Every figure is written atomically (a temporary file in the same folder, then a rename).
"""

from __future__ import annotations

import io
import pathlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from diffsim._plot import pyplot, save_figure
from diffsim.io import atomic_write

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["costate_figure", "gradient_figure", "image_figure", "loss_figure", "model_figure",
           "model_grid_figure", "model_slices_figure", "pyplot", "save_figure", "shot_figure",
           "wavefield_gif"]


def _extent_km(shape: tuple[int, int], spacing: float) -> list[float]:
    nz, nx = shape
    return [0.0, (nx - 1) * spacing / 1e3, (nz - 1) * spacing / 1e3, 0.0]


def _model_panel(fig: Figure, ax: Any, title: str, m: np.ndarray, spacing: float,
                 scale: tuple[float, float], unit: tuple[str, float], *,
                 sources: np.ndarray | None = None, receivers: np.ndarray | None = None,
                 ylabel: str = "depth (km)", colorbar: bool = True) -> Any:
    """One model ``[z, x]`` on the colour range ``scale`` (SI units), km axes, a colour bar.

    ``sources`` and ``receivers`` are ``(row, column)`` positions in m; returns the image.
    """
    label, div = unit
    im = ax.imshow(m / div, extent=_extent_km(m.shape, spacing), vmin=scale[0] / div,
                   vmax=scale[1] / div, cmap="viridis", aspect="equal")
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    if sources is not None:
        ax.plot(sources[:, 1] / 1e3, sources[:, 0] / 1e3, "r*", ms=6, label="sources")
    if receivers is not None:
        ax.plot(receivers[:, 1] / 1e3, receivers[:, 0] / 1e3, "wv", ms=2, label="receivers")
    if colorbar:
        fig.colorbar(im, ax=ax, label=label, shrink=0.9)
    return im


def model_figure(path: pathlib.Path, models: Sequence[tuple[str, np.ndarray]], spacing: float,
                 *, sources: np.ndarray | None = None, receivers: np.ndarray | None = None,
                 unit: tuple[str, float] = ("km/s", 1e3)) -> None:
    """Models stacked on one colour scale, axes in km, with the acquisition on the first.

    ``unit``: the colour bar's label and the divisor from SI units (velocity in km/s by
    default; ``("g/cm^3", 1e3)`` for a density in kg/m^3).
    """
    plt = pyplot()
    scale = (min(float(m.min()) for _, m in models), max(float(m.max()) for _, m in models))
    nz, nx = models[0][1].shape
    aspect = nz / nx
    fig, axes = plt.subplots(len(models), 1, figsize=(8, 0.6 + len(models) * (8 * aspect + 0.6)),
                             squeeze=False)
    for k, (title, m) in enumerate(models):
        _model_panel(fig, axes[k, 0], title, m, spacing, scale, unit,
                     sources=sources if k == 0 else None, receivers=receivers if k == 0 else None)
    axes[-1, 0].set_xlabel("distance (km)")
    fig.tight_layout()
    save_figure(fig, path)


def model_grid_figure(path: pathlib.Path,
                      rows: Sequence[tuple[tuple[str, float], Sequence[tuple[str, np.ndarray]]]],
                      spacing: float, *, sources: np.ndarray | None = None,
                      receivers: np.ndarray | None = None, title: str = "") -> None:
    """Several parameters, one row each (e.g. true / initial / inverted), axes in km.

    Every row shares one colour scale (its models' range), so its panels compare
    directly; the acquisition is drawn on the first panel.

    Args:
        path: the PNG to write.
        rows: ``(unit, panels)`` per parameter: ``unit`` is the colour bar's label and
            the divisor from SI units (``("km/s", 1e3)``, ``("g/cm^3", 1e3)``), ``panels``
            ``[(title, model [z, x])]``, the same count in every row.
        spacing: grid spacing in m.
        sources: ``[shot, 2]`` ``(z, x)`` in m, or ``None``.
        receivers: ``[receiver, 2]`` in m, or ``None``.
        title: the figure's title.
    """
    plt = pyplot()
    nz, nx = rows[0][1][0][1].shape
    ncol = max(len(panels) for _, panels in rows)
    width = 4.6 * ncol
    fig, axes = plt.subplots(len(rows), ncol, squeeze=False,
                             figsize=(width, 0.8 + len(rows) * (width / ncol * nz / nx + 0.8)))
    for r, (unit, panels) in enumerate(rows):
        scale = (min(float(m.min()) for _, m in panels), max(float(m.max()) for _, m in panels))
        for c, (name, m) in enumerate(panels):
            first = r == 0 and c == 0
            _model_panel(fig, axes[r, c], name, m, spacing, scale, unit,
                         sources=sources if first else None,
                         receivers=receivers if first else None)
            if r == len(rows) - 1:
                axes[r, c].set_xlabel("distance (km)")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path)


def model_slices_figure(path: pathlib.Path, models: Sequence[tuple[str, np.ndarray]],
                        spacing: float, *, sources: np.ndarray | None = None,
                        receivers: np.ndarray | None = None,
                        unit: tuple[str, float] = ("km/s", 1e3), title: str = "") -> None:
    """Volumes ``[z, y, x]`` as three orthogonal slices through the middle, one row each.

    Columns: the ``z-x`` section at the middle ``y``, the ``z-y`` section at the middle
    ``x`` and the ``y-x`` map at the middle depth; every panel on one colour scale, axes
    in km. The acquisition (``[n, 3]`` positions ``(z, y, x)`` in m) is drawn on the first
    row's map.

    Args:
        path: the PNG to write.
        models: ``[(title, model [z, y, x])]``, all of one shape.
        spacing: grid spacing in m.
        sources: ``[shot, 3]`` in m, or ``None``.
        receivers: ``[receiver, 3]`` in m, or ``None``.
        unit: the colour bar's label and the divisor from SI units.
        title: the figure's title.
    """
    plt = pyplot()
    scale = (min(float(m.min()) for _, m in models), max(float(m.max()) for _, m in models))
    nz, ny, nx = models[0][1].shape
    iz, iy, ix = nz // 2, ny // 2, nx // 2
    km = spacing / 1e3
    height = 3.0 * max(nz, ny) / nx + 0.9
    fig, axes = plt.subplots(len(models), 3, squeeze=False, layout="constrained",
                             figsize=(13, 0.6 + len(models) * height),
                             gridspec_kw={"width_ratios": [nx, ny, nx]})
    image = None
    for r, (name, m) in enumerate(models):
        map_view = r == 0
        panels = [(f"{name}: z-x at y = {iy * km:.2f} km", m[:, iy, :], "x (km)", "depth (km)",
                   None, None),
                  (f"{name}: z-y at x = {ix * km:.2f} km", m[:, :, ix], "y (km)", "depth (km)",
                   None, None),
                  (f"{name}: y-x at z = {iz * km:.2f} km", m[iz], "x (km)", "y (km)",
                   None if sources is None or not map_view else sources[:, 1:],
                   None if receivers is None or not map_view else receivers[:, 1:])]
        for c, (label, cut, xlabel, ylabel, src, rec) in enumerate(panels):
            image = _model_panel(fig, axes[r, c], label, cut, spacing, scale, unit,
                                 sources=src, receivers=rec, ylabel=ylabel, colorbar=False)
            axes[r, c].set_xlabel(xlabel)
            axes[r, c].title.set_fontsize(9)
    fig.colorbar(image, ax=axes.ravel().tolist(), label=unit[0], shrink=0.8)
    if title:
        fig.suptitle(title)
    save_figure(fig, path)


def shot_figure(path: pathlib.Path, observed: np.ndarray, synthetic: np.ndarray, dt: float,
                receivers: np.ndarray, title: str) -> None:
    """Observed, synthetic and residual gathers of one shot on one clip."""
    plt = pyplot()
    clip = float(np.percentile(np.abs(observed), 99)) or 1.0
    x = receivers[:, 1] / 1e3
    extent = [float(x[0]), float(x[-1]), (observed.shape[-1] - 1) * dt, 0.0]
    fig, axes = plt.subplots(1, 3, figsize=(11, 4.5), sharey=True)
    for ax, (name, d) in zip(axes, (("observed", observed), ("synthetic", synthetic),
                                    ("residual", synthetic - observed)), strict=True):
        ax.imshow(d.T, extent=extent, cmap="gray", vmin=-clip, vmax=clip, aspect="auto")
        ax.set_title(name)
        ax.set_xlabel("receiver (km)")
    axes[0].set_ylabel("time (s)")
    fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path)


def gradient_figure(path: pathlib.Path, gradient: np.ndarray, spacing: float, *,
                    title: str = "gradient of the misfit at the starting model") -> None:
    """The misfit gradient with respect to velocity ``[z, x]`` (symmetric colour scale).

    The colour bar is in the loss's units per m/s (the loss is ``0.5 sum (d - d_obs)^2``
    in the data's units squared); the scale is clipped at the 99.5th percentile.
    """
    plt = pyplot()
    clip = float(np.percentile(np.abs(gradient), 99.5)) or 1.0
    nz, nx = gradient.shape
    fig, ax = plt.subplots(figsize=(8, 0.8 + 8 * nz / nx + 0.4))
    im = ax.imshow(gradient, extent=_extent_km(gradient.shape, spacing), cmap="seismic",
                   vmin=-clip, vmax=clip, aspect="equal")
    ax.set_title(title)
    ax.set_xlabel("distance (km)")
    ax.set_ylabel("depth (km)")
    bar = fig.colorbar(im, ax=ax, shrink=0.9)
    bar.set_label("dL/dv (loss units per m/s)")
    fig.tight_layout()
    save_figure(fig, path)


def image_figure(path: pathlib.Path, panels: Sequence[tuple[str, np.ndarray, str]],
                 spacing: float, *, title: str = "", clip: float = 99.0,
                 clip_from_row: int = 0) -> None:
    """Images stacked, each on its own symmetric grey scale, axes in km (RTM and reflectivity).

    Args:
        path: the PNG to write.
        panels: ``(title, [z, x] array, colour-bar label)`` per panel.
        spacing: m.
        title: the figure's title.
        clip: each panel's scale is clipped at this percentile of its absolute values.
        clip_from_row: the percentile is taken over rows from this one down (leave out a
            muted water layer and the strong water-bottom reflection).
    """
    plt = pyplot()
    nz, nx = panels[0][1].shape
    aspect = nz / nx
    fig, axes = plt.subplots(len(panels), 1, squeeze=False,
                             figsize=(8, 0.6 + len(panels) * (8 * aspect + 0.6)))
    for k, (name, image, label) in enumerate(panels):
        ax = axes[k, 0]
        part = np.abs(image[clip_from_row:]) if clip_from_row < image.shape[0] else np.abs(image)
        lim = float(np.percentile(part, clip)) or float(np.abs(image).max()) or 1.0
        im = ax.imshow(image, extent=_extent_km(image.shape, spacing), cmap="gray", vmin=-lim,
                       vmax=lim, aspect="equal")
        ax.set_title(name)
        ax.set_ylabel("depth (km)")
        fig.colorbar(im, ax=ax, label=label, shrink=0.9)
    axes[-1, 0].set_xlabel("distance (km)")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path)


def loss_figure(path: pathlib.Path, history: Sequence[dict[str, Any]], *, title: str = "",
                error: str | Sequence[str] | None = "model_error",
                error_label: str = "relative model error") -> None:
    """The loss of every iteration of an optimisation history, for every driver.

    Args:
        path: the PNG to write.
        history: :class:`diffsim.optim.History` entries (``iteration``, ``loss``, and
            ``stage`` for staged runs: stage boundaries are marked and labelled).
        title: the figure's title (default: "optimisation progress").
        error: an entry key plotted on a second axis when every entry has it (e.g.
            ``model_error``), several keys (one curve each, with a legend), or ``None``.
        error_label: that axis's label.
    """
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    it = [h["iteration"] for h in history]
    values = np.array([h["loss"] for h in history], dtype=np.float64)
    staged = all("stage" in h for h in history)
    ax.plot(it, values, "k.-", label="loss (each stage's data)" if staged else "loss")
    if np.all(values > 0):
        ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    if staged:
        for a, b in zip(history, history[1:], strict=False):
            if b["stage"] != a["stage"]:
                ax.axvline(a["iteration"] + 0.5, color="0.6", lw=0.8, ls="--")
        for stage in sorted({h["stage"] for h in history}):
            first = next(h for h in history if h["stage"] == stage)
            cutoff = first.get("cutoff_hz") or 0.0
            ax.annotate(f"stage {stage + 1}" + (f"\n{cutoff:g} Hz" if cutoff else "\nfull band"),
                        (first["iteration"], 1.0), xycoords=("data", "axes fraction"),
                        xytext=(2, -2), textcoords="offset points", va="top", fontsize=7)
    keys = [error] if isinstance(error, str) else list(error or ())
    curves = [(k, [h.get(k) for h in history]) for k in keys]
    curves = [(k, e) for k, e in curves if all(v is not None for v in e)]
    if curves:
        ax2 = ax.twinx()
        styles = ("r.-", "b.--", "g.:", "m.-.")
        for k, (key, errors) in enumerate(curves):
            ax2.plot(it, errors, styles[k % len(styles)], label=key)
        ax2.set_ylabel(error_label, color="r" if len(curves) == 1 else "k")
        if len(curves) > 1:
            ax2.legend(loc="upper right", fontsize=7)
    ax.set_title(title or "optimisation progress")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)


def wavefield_frame(frame: np.ndarray, velocity: np.ndarray, spacing: float, t: float, *,
                    clip: float, shot: int | None = None,
                    source: Sequence[float] | None = None) -> Figure:
    """One frame of :func:`wavefield_gif`: the wavefield over the model, titled and marked."""
    plt = pyplot()
    nz, nx = velocity.shape
    fig, ax = plt.subplots(figsize=(7, 0.7 + 7 * nz / nx))
    ax.imshow(velocity / 1e3, extent=_extent_km(velocity.shape, spacing), cmap="gray",
              aspect="equal")
    ax.imshow(frame, extent=_extent_km(velocity.shape, spacing), cmap="seismic",
              vmin=-clip, vmax=clip, alpha=0.6, aspect="equal")
    if source is not None:
        ax.plot(source[1] / 1e3, source[0] / 1e3, "*", color="gold", ms=12, mec="k")
    ax.set_title(("" if shot is None else f"shot {shot}, ") + f"t = {t:.3f} s"
                 + ("" if source is None else f" (source at x = {source[1] / 1e3:.2f} km)"))
    ax.set_xlabel("distance (km)")
    ax.set_ylabel("depth (km)")
    fig.tight_layout()
    return fig


def wavefield_gif(path: pathlib.Path, frames: np.ndarray, velocity: np.ndarray, spacing: float,
                  times: Sequence[float], *, shot: int | None = None,
                  source: Sequence[float] | None = None) -> None:
    """An animated GIF of a wavefield over the velocity model.

    Args:
        path: the ``.gif`` to write.
        frames: ``[frame, z, x]`` wavefield snapshots.
        velocity: ``[z, x]`` in m/s (drawn underneath).
        spacing: m.
        times: time of each frame in s.
        shot: the shot's number, named in every frame's title.
        source: its source position ``(z, x)`` in m, marked with a star.
    """
    from PIL import Image

    plt = pyplot()
    clip = float(np.percentile(np.abs(frames), 99.5)) or 1.0
    images = []
    for frame, t in zip(frames, times, strict=True):
        fig = wavefield_frame(frame, velocity, spacing, t, clip=clip, shot=shot, source=source)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=70)
        plt.close(fig)
        buffer.seek(0)
        images.append(Image.open(buffer).convert("P", palette=Image.Palette.ADAPTIVE))
    out = io.BytesIO()
    images[0].save(out, format="GIF", save_all=True, append_images=images[1:], duration=120,
                   loop=0)
    atomic_write(path, lambda h: h.write(out.getvalue()), binary=True)


def costate_figure(path: pathlib.Path, costate: np.ndarray, *, title: str | None = None,
                   dt: float | None = None) -> None:
    """``‖λ[t]‖`` through the reverse sweep: where gradients vanish or explode.

    Args:
        path: the ``.png`` to write.
        costate: ``[n+1]`` norms (NaN where not measured).
        title: figure title.
        dt: the time step in s, to label the axis in seconds (steps otherwise).
    """
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    t = np.arange(costate.size) * (dt or 1.0)
    ax.semilogy(t, costate)
    ax.set_xlabel("time (s)" if dt else "time step t")
    ax.set_ylabel("|λ[t]| (costate norm)")
    ax.set_title(title or "Adjoint state during the reverse sweep")
    fig.tight_layout()
    save_figure(fig, path)
