"""Ready-made problems as data (import name ``diffsim.scenarios``).

A scenario is a frozen dataclass built by a named factory and registered by name; the
seismic and mass-spring scenarios arrive with their physics. Nothing in ``diffsim``
imports this package.
"""
