"""Figures and rendering (matplotlib and Pillow, imported when first used).

:mod:`diffsim.viz.figures`: models, wavefields, shot gathers, gradients, loss curves of
inversions and demos. :mod:`diffsim.viz.render`: mass-spring trajectories as GIF, MP4 or
PNG filmstrips.
"""
