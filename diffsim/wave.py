"""The first release's name of :mod:`diffsim.acoustic`: the same module object.

``import diffsim.wave`` and ``from diffsim.wave import simulate`` keep working; attributes
set through either name are seen through both.
"""

import sys

from diffsim import acoustic as _acoustic

sys.modules[__name__] = _acoustic
