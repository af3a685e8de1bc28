"""Analytic solutions of ``u_tt = c^2 lap(u) + f(t) delta(x)`` in a homogeneous medium."""

from __future__ import annotations

import numpy as np


def green_2d(wavelet: np.ndarray, dt: float, distance: float, velocity: float) -> np.ndarray:
    """2D solution: ``G = H(t - r/c) / (2 pi c sqrt(c^2 t^2 - r^2))`` convolved with f.

    With ``t' = (r/c) cosh(theta)`` the integral is smooth:
    ``u(t) = 1/(2 pi c^2) int_0^{acosh(ct/r)} f(t - (r/c) cosh(theta)) dtheta``.
    """
    nt = wavelet.size
    times = np.arange(nt) * dt
    out = np.zeros(nt)
    for i, t in enumerate(times):
        if velocity * t <= distance:
            continue
        theta = np.linspace(0.0, np.arccosh(velocity * t / distance), 4001)
        shifted = t - distance / velocity * np.cosh(theta)
        values = np.interp(shifted, times, wavelet, left=0.0, right=0.0)
        out[i] = np.trapezoid(values, theta) / (2.0 * np.pi * velocity**2)
    return out


def green_3d(wavelet: np.ndarray, dt: float, distance: float, velocity: float) -> np.ndarray:
    """3D solution: ``f(t - r/c) / (4 pi c^2 r)``."""
    times = np.arange(wavelet.size) * dt
    delayed = np.interp(times - distance / velocity, times, wavelet, left=0.0, right=0.0)
    return delayed / (4.0 * np.pi * velocity**2 * distance)


def smooth_field(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """A smooth random field (normal noise filtered by [1/4, 1/2, 1/4] along each axis)."""
    rng = np.random.default_rng(seed)
    field = rng.normal(size=shape)
    kernel = np.array([0.25, 0.5, 0.25])
    for axis in range(len(shape)):
        field = np.apply_along_axis(lambda v: np.convolve(v, kernel, mode="same"), axis, field)
    return field
