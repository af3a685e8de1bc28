"""Taichi kernels and ``ti.func``s of diffsim (import name ``diffsim.kernels``).

Every kernel receives the fields it touches as arguments (``ti.template()``), keeps
inputs apart from outputs, and reads no module globals. Importing this package calls
no ``ti.init`` and allocates no field.
"""
