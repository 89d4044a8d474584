"""deepseek: a deep-learning compute framework (C++ core, this thin Python API).

Eager tensors::

    t = ds.Tensor([1.0, 2.0, 3.0])
    print(t * 2)                      # [2. 4. 6.]

Graphs, compiled for a target::

    graph = ds.Graph()
    a = graph.placeholder("a", shape=[None, 784], dtype="float32")
    c = graph.relu(a, name="c")
    exe = ds.compile(graph, target="cpu")
    out = exe.run({"a": np.ones((2, 784))})    # {"c": numpy array}
"""
from . import _core
from ._core import (  # noqa: F401
    DType, DTypeError, Error, Executable, Graph, InvalidArgument, IOError, NotFoundError,
    OutOfMemoryError, ShapeError, Tensor, UnavailableError, apply, available_targets,
    dtype, empty_cache, from_dlpack, info, memory_stats, num_threads, op_info, op_names,
    reset_peak_memory, scalar_like, set_num_threads,
    bool, uint8, int8, int32, int64, float16, bfloat16, float32, float64,
)
from . import hdl, ops  # noqa: F401
from ._compile import CompiledFunction, compile  # noqa: F401
from ._core import (  # noqa: F401
    load_safetensors, load_safetensors_metadata, read_idx, save_safetensors,
)
from . import data, tensorboard  # noqa: F401
from ._core import monitor, profile, record_function, schedule  # noqa: F401
from ._core import cuda  # noqa: F401
from . import nn, optim  # noqa: F401
from . import models  # noqa: F401
from ._core import debug  # noqa: F401
from ._core import load, save  # noqa: F401
from . import sched  # noqa: F401
from .autodiff import grad, value_and_grad  # noqa: F401
from .torch_compat import from_torch, torch_compat  # noqa: F401
from .ops import *  # noqa: F401,F403
from . import _methods

_methods.attach()

__version__ = _core.__version__


def tensor(data, dtype=None) -> Tensor:
    """A new tensor holding a copy of ``data`` (array, nested lists or scalar)."""
    return Tensor(data, dtype=dtype)


array = tensor
