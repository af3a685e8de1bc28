"""The unit system of diffsim: SI, stated once.

Every public argument and result is in SI units: metres (m), seconds (s), metres per
second (m/s), kilograms (kg), newtons per metre (N/m), hertz (Hz), pascals (Pa). Arrays
are ``[z, x]`` (2D) or ``[z, y, x]`` (3D), slowest axis first; time series put time
last for traces (``[shot, receiver, time]``) and first for rollouts
(``[step, ...]``). No km/s, no milliseconds.
"""

METRE = 1.0
SECOND = 1.0
KILOGRAM = 1.0
NEWTON_PER_METRE = 1.0
HERTZ = 1.0
