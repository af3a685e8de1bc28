"""The first release's name of :mod:`diffsim.viz.render`: the same module object."""

import sys

from diffsim.viz import render as _render

sys.modules[__name__] = _render
