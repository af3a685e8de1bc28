"""Absorbing boundaries as small strategy objects: :class:`CPML` and :class:`Sponge`.

A boundary says how wide its layer is on every face and computes its own coefficient
arrays on the padded grid; the engines only place those arrays in their storage. Pass
one as ``boundary=`` to :func:`diffsim.acoustic.simulate`, :class:`Simulation` or
:class:`AcousticStepper`::

    acoustic.simulate(v, 10.0, dt, w, src, rec, boundary=CPML(width=30))
    acoustic.simulate(v, 10.0, dt, w, src, rec, boundary=Sponge(width=40))

The strings ``"pml"`` and ``"sponge"`` with ``pml_width=`` (and ``pml_velocity=``,
``pml_frequency=``) remain accepted and mean the same objects.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

if TYPE_CHECKING:
    from diffsim.acoustic._setup import _Geometry

__all__ = ["CPML", "DEFAULT_WIDTH", "PML_REFLECTION", "SPONGE_A", "SPONGE_EDGE", "Boundary",
           "Sponge", "as_boundary"]

#: Cells of absorbing layer on each face unless a width is given.
DEFAULT_WIDTH = 20
#: Target reflection coefficient of the C-PML damping profile.
PML_REFLECTION = 1e-3
#: Cerjan sponge: ``g = exp(-(SPONGE_A depth / width)^2)``; the outermost cell keeps
#: ``SPONGE_EDGE`` of the wave per step (Cerjan et al. 1985: 0.015 a cell over 20 cells).
SPONGE_A = 0.3
SPONGE_EDGE = math.exp(-(SPONGE_A**2))

Width = int | Sequence[int]


def _faces(width: Width, ndim: int, free_surface: bool, owner: str) -> tuple[tuple[int, int], ...]:
    """``((z_lo, z_hi), ..., (x_lo, x_hi))`` cells; the top face is 0 under a free surface."""
    widths = np.atleast_1d(np.asarray(width))
    if widths.size == 1:
        widths = np.repeat(widths, 2 * ndim)
    if (widths.shape != (2 * ndim,) or not np.issubdtype(widths.dtype, np.number)
            or np.any(widths < 0) or np.any(widths != np.round(widths))):
        raise ValueError(f"{owner}={width!r} must be a non-negative int or {2 * ndim} ints "
                         "(low and high face of each axis, in array order)")
    faces = [(int(widths[2 * d]), int(widths[2 * d + 1])) for d in range(ndim)]
    if free_surface:
        faces[0] = (0, faces[0][1])
    return tuple(faces)


def _positive_or_none(value: object) -> bool:
    return value is None or (isinstance(value, (int, float)) and bool(np.isfinite(value))
                             and value > 0)


def _layer_cells(lo: int, hi: int, n: int, halo: int) -> list[tuple[int, int, int]]:
    """``(index, cells into the layer, layer width)`` of every layer cell of an axis of ``n``.

    The outermost cell is ``width`` cells deep, the innermost 1.
    """
    cells = [(i, halo + lo - i, lo) for i in range(halo, halo + lo)]
    return cells + [(i, i - (n - halo - hi) + 1, hi) for i in range(n - halo - hi, n - halo)]


@dataclass(frozen=True)
class CPML:
    """Convolutional PML (Komatitsch and Martin 2007): memory variables on every face.

    Attributes:
        width: cells of layer, one int or one per face ``[z_lo, z_hi, (y_lo, y_hi,)
            x_lo, x_hi]``; ``0`` makes a face reflecting.
        velocity: velocity in m/s the damping is scaled to (default: the model's maximum).
            Fix it, with ``frequency``, when one stepper must behave the same for every
            model it is given (the coefficients are set when it is built).
        frequency: frequency in Hz the complex frequency shift is tuned to (default: the
            wavelet's dominant frequency).
    """

    width: Width = DEFAULT_WIDTH
    velocity: float | None = None
    frequency: float | None = None
    kind: ClassVar[str] = "pml"

    def __post_init__(self) -> None:
        for name in ("velocity", "frequency"):
            value = getattr(self, name)
            if not _positive_or_none(value):
                raise ValueError(f"CPML {name}={value!r} must be a positive number or None "
                                 "(None: the model's maximum velocity, the wavelet's dominant "
                                 "frequency)")

    def faces(self, ndim: int, free_surface: bool) -> tuple[tuple[int, int], ...]:
        """Cells of layer per face, ``((lo, hi), ...)`` in array order."""
        return _faces(self.width, ndim, free_surface, "CPML width")

    def profiles(self, geometry: _Geometry, c_max: float, f_dom: float, dt: float,
                 offset: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """The C-PML recursion coefficients ``a, b`` ``[axis, max padded]``.

        ``psi <- b psi + a d/dx``; both are zero outside the layer, so the memory
        variables stay zero there. ``c_max`` and ``f_dom`` apply unless this object fixes
        ``velocity`` or ``frequency``. ``offset``: where entry ``i`` sits, in cells
        (``0.5``: the half points ``i + 1/2`` of a staggered grid).
        """
        c_max = self.velocity or c_max
        f_dom = self.frequency or f_dom
        g = geometry
        a = np.zeros((g.ndim, max(g.padded)))
        b = np.zeros((g.ndim, max(g.padded)))
        for d in range(g.ndim):
            for i, depth, width in _layer_depths(*g.pml[d], g.padded[d], g.halo, offset):
                length = width * g.spacing[d]
                d0 = 3.0 * c_max * math.log(1.0 / PML_REFLECTION) / (2.0 * length)
                damp = d0 * depth**2
                alpha = math.pi * f_dom * (1.0 - depth)
                bb = math.exp(-(damp + alpha) * dt)
                a[d, i] = damp / (damp + alpha) * (bb - 1.0)
                b[d, i] = bb
        return a, b


def _layer_depths(lo: int, hi: int, n: int, halo: int, offset: float
                  ) -> list[tuple[int, float, int]]:
    """``(index, depth in (0, 1], layer width)`` of the layer points of an axis of ``n``.

    Point ``i`` sits at ``x = i + offset``; the depth is ``(cells into the layer) /
    width``, 1 at the outermost cell and ``1 / width`` at the innermost (``offset = 0``
    gives :func:`_layer_cells`).
    """
    out: dict[int, tuple[float, int]] = {}
    for i in range(n):
        x = i + offset
        if lo and halo - 0.5 <= x < halo + lo:
            out[i] = (min(1.0, (halo + lo - x) / lo), lo)
        if hi and n - halo - hi - 1 < x <= n - halo - 0.5:
            out[i] = (min(1.0, (x - (n - halo - hi) + 1) / hi), hi)
    return [(i, depth, width) for i, (depth, width) in out.items()]


@dataclass(frozen=True)
class Sponge:
    """Cerjan et al. (1985) damping: the wavefield is multiplied by ``g <= 1`` in the layer.

    Cheaper than :class:`CPML` (no memory variables) but it reflects more, so it needs
    wider layers for the same absorption.

    Attributes:
        width: cells of layer, one int or one per face (as for :class:`CPML`).
    """

    width: Width = DEFAULT_WIDTH
    kind: ClassVar[str] = "sponge"

    def faces(self, ndim: int, free_surface: bool) -> tuple[tuple[int, int], ...]:
        """Cells of layer per face, ``((lo, hi), ...)`` in array order."""
        return _faces(self.width, ndim, free_surface, "Sponge width")

    def damping(self, geometry: _Geometry, layers: tuple[tuple[int, int], ...]) -> np.ndarray:
        """``g = prod_d exp(-(a depth_d)^2)`` on the padded grid (1 outside the layers)."""
        g = geometry
        damp = np.ones(g.padded)
        for d in range(g.ndim):
            prof = np.ones(g.padded[d])
            for i, cells, width in _layer_cells(*layers[d], g.padded[d], g.halo):
                prof[i] = math.exp(-(SPONGE_A / width * cells) ** 2)
            shape = [1] * g.ndim
            shape[d] = g.padded[d]
            damp = damp * prof.reshape(shape)
        return damp


Boundary = CPML | Sponge


def as_boundary(boundary: str | Boundary, ndim: int, pml_width: Width | None = None,
                pml_velocity: float | None = None, pml_frequency: float | None = None
                ) -> Boundary:
    """The boundary object for ``boundary=`` (an object, or ``"pml"``/``"sponge"`` with options).

    ``ndim`` is the grid's dimension (the widths are checked against it).

    Raises:
        ValueError: an unknown name, or a boundary object together with ``pml_*`` options
            (say everything in the object).
        TypeError: neither a name nor a boundary object.
    """
    if isinstance(boundary, (CPML, Sponge)):
        given = {k: v for k, v in (("pml_width", pml_width), ("pml_velocity", pml_velocity),
                                   ("pml_frequency", pml_frequency)) if v is not None}
        if given:
            names = ", ".join(f"{k}={v!r}" for k, v in given.items())
            raise ValueError(f"{names} given together with boundary={boundary!r}; put the "
                             f"settings in the boundary object, e.g. CPML(width=..., "
                             "velocity=..., frequency=...) or Sponge(width=...)")
        boundary.faces(ndim, False)
        return boundary
    if not isinstance(boundary, str):
        raise TypeError(f"boundary={boundary!r} must be CPML(...), Sponge(...), 'pml' or 'sponge'")
    width = DEFAULT_WIDTH if pml_width is None else pml_width
    if boundary in ("pml", "sponge"):
        _faces(width, ndim, False, "pml_width")
        for name, value in (("pml_velocity", pml_velocity), ("pml_frequency", pml_frequency)):
            if not _positive_or_none(value):
                raise ValueError(f"{name}={value!r} must be a positive number or None")
    if boundary == "pml":
        return CPML(width=width, velocity=pml_velocity, frequency=pml_frequency)
    if boundary == "sponge":
        for name, value in (("pml_velocity", pml_velocity), ("pml_frequency", pml_frequency)):
            if value is not None:
                raise ValueError(f"{name}={value!r} tunes a C-PML; boundary='sponge' has no "
                                 "such setting (drop it, or use boundary='pml')")
        return Sponge(width=width)
    raise ValueError(f"boundary={boundary!r}; choose 'pml' (convolutional PML) or 'sponge' "
                     "(Cerjan damping), or pass CPML(width=...) / Sponge(width=...)")
