"""ds.compile: a Graph, or a function traced once per input signature."""
import functools

from . import _core
from ._core import Graph, Tensor


def compile(fn_or_graph=None, target="auto", opt_level=2, memory_budget=0,
            symbolic_batch=False, precision="fp32"):
    """Compiles a ``ds.Graph`` into an ``Executable``, or wraps a function of tensors.

    ``ds.compile(graph, target="cpu")`` returns an Executable (``run(feeds)``).
    ``@ds.compile`` (or ``ds.compile(fn, ...)``) traces ``fn`` on symbolic tensors typed
    like its arguments and compiles the trace once per signature (dtypes and shapes).
    With ``symbolic_batch=True`` axis 0 is traced as ``None``, so one executable serves
    every batch size. The function may return a tensor, or a tuple/list of tensors.
    ``precision="bf16"`` or ``"fp16"`` runs matmul/linear/conv in that precision
    (inputs and outputs stay float32; reductions, norms, softmax and losses in float32).
    """
    options = dict(target=target, opt_level=opt_level, memory_budget=memory_budget,
                   precision=precision)
    if fn_or_graph is None:  # @ds.compile(target=...)
        return lambda fn: CompiledFunction(fn, options, symbolic_batch)
    if isinstance(fn_or_graph, Graph):
        return _core.compile(fn_or_graph, **options)
    if not callable(fn_or_graph):
        raise TypeError(f"ds.compile: expected a ds.Graph or a function, got "
                        f"{type(fn_or_graph).__name__}")
    return CompiledFunction(fn_or_graph, options, symbolic_batch)


class CompiledFunction:
    """A traced function: one Executable per input signature."""

    def __init__(self, fn, options, symbolic_batch):
        functools.update_wrapper(self, fn)
        self._fn = fn
        self._options = options
        self._symbolic_batch = symbolic_batch
        self._cache = {}  # signature -> (executable, output structure)

    @property
    def compilations(self):
        """How many signatures have been compiled."""
        return len(self._cache)

    def _shape(self, t):
        shape = list(t.shape)
        if self._symbolic_batch and shape:
            shape[0] = None
        return tuple(shape)

    def _trace(self, args):
        graph = Graph()
        params = [graph.placeholder(f"arg{i}", shape=list(self._shape(a)), dtype=a.dtype)
                  for i, a in enumerate(args)]
        result = self._fn(*params)
        single = isinstance(result, Tensor)
        outs = [result] if single else list(result)
        if not outs or not all(isinstance(o, Tensor) for o in outs):
            raise TypeError("ds.compile: the function must return a Tensor or a tuple/list "
                            "of Tensors")
        for i, o in enumerate(outs):
            if not o.is_symbolic:  # does not depend on the inputs
                o = graph.constant(o)
            graph.output(o, f"out{i}")
        return _core.compile(graph, **self._options), single

    def __call__(self, *args):
        # The per-call path is kept lean: at batch 1 it is a tenth of a compiled run.
        args = [a if isinstance(a, Tensor) else Tensor(a) for a in args]
        if self._symbolic_batch:
            key = tuple([(a.dtype, self._shape(a)) for a in args])
        else:
            key = tuple([(a.dtype, a.shape) for a in args])
        entry = self._cache.get(key)
        if entry is None:
            entry = self._cache[key] = self._trace(args)
        exe, single = entry
        outs = exe.run_tensors(args)
        return outs[0] if single else tuple(outs)
