"""Matplotlib for the figures of every layer: the Agg backend, atomic writes.

Imported lazily by whatever draws (matplotlib is needed only for figures): the
diagnostics' plots, :mod:`diffsim.viz`.
"""

from __future__ import annotations

import io
import pathlib
import types
from typing import TYPE_CHECKING

from diffsim.io import atomic_write

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["pyplot", "save_figure"]


def pyplot() -> types.ModuleType:
    """``matplotlib.pyplot`` on the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Figure, path: pathlib.Path, *, dpi: int = 110) -> None:
    """Write ``fig`` atomically (SVG for a ``.svg`` path, else PNG) and close it."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="svg" if pathlib.Path(path).suffix == ".svg" else "png", dpi=dpi)
    pyplot().close(fig)
    atomic_write(path, lambda h: h.write(buffer.getvalue()), binary=True)
