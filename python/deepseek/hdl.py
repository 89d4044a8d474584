"""The device-neutral op namespace: ``ds.hdl.matmul``, ``ds.hdl.conv2d``, ... (the same
functions as ``ds.matmul``; mirrors ``ds::hdl`` in C++)."""
from .ops import *  # noqa: F401,F403
from .ops import __all__  # noqa: F401
