"""``ds.from_torch(module, example_inputs)``: a ``torch.nn.Module`` as a compiled ds graph.

The module is traced with ``torch.fx.symbolic_trace`` (torch.nn layers stay leaves); each fx
node then runs once on symbolic ds tensors, adding its ds ops to a Graph: call_function and
call_method through deepseek.torch (the same mapping as @ds.torch_compat), call_module
through the layer converters in ``_torch_modules``, parameters and buffers as constants.
Input shapes and dtypes are those of ``example_inputs``.
"""
from __future__ import annotations

import builtins
import operator

from . import _core, ops
from .torch._dispatch import resolve
from .torch._tensor import TorchCompatError, TorchTensor, unsupported


class TorchGraph:
    """A converted module: call it like the module (torch tensors, numpy arrays or ds
    tensors) to get numpy arrays back, in the structure of the module's outputs."""

    def __init__(self, graph, executable, input_names, outputs):
        self.graph = graph
        self.executable = executable
        self.input_names = input_names
        self._outputs = outputs  # the module's output structure; leaves are output names

    def __call__(self, *inputs):
        if len(inputs) != len(self.input_names):
            raise TypeError(f"from_torch graph takes {len(self.input_names)} inputs "
                            f"({', '.join(self.input_names)}), got {len(inputs)}")
        feeds = {name: _to_array(x) for name, x in zip(self.input_names, inputs)}
        results = self.executable.run(feeds)
        return _rebuild(self._outputs, results)


def _to_array(x):
    if type(x).__module__.startswith("torch"):
        return x.detach().cpu().contiguous().numpy()
    return x


def _rebuild(structure, results):
    if isinstance(structure, str):
        return results[structure]
    if isinstance(structure, dict):
        return {k: _rebuild(v, results) for k, v in structure.items()}
    return type(structure)(_rebuild(v, results) for v in structure)


def _dtype_name(t) -> str:
    return str(t.dtype).replace("torch.", "")


class _Converter:
    """Runs one fx graph on symbolic ds tensors of ``graph``."""

    def __init__(self, module, graph, dynamic_batch):
        self.module = module
        self.dynamic_batch = dynamic_batch
        self.graph = graph
        self.constants = {}  # id(torch tensor) -> TorchTensor constant
        self.names = {id(t): n for n, t in module.named_parameters()}
        self.names.update({id(t): n for n, t in module.named_buffers()})

    def constant(self, tensor, name=None):
        """A torch tensor (a parameter, buffer, or a slice of one) as a graph constant."""
        key = id(tensor)
        if key in self.constants:
            return self.constants[key]
        array = tensor.detach().cpu().contiguous().numpy()
        value = TorchTensor(self.graph.constant(array, name=name or self.names.get(key, "")))
        # Only the module's own tensors are shared: a temporary's id is reused once it dies.
        if key in self.names:
            self.constants[key] = value
        return value

    def call_module(self, submodule, *args, **kwargs):
        from ._torch_modules import converter_for
        convert = converter_for(submodule)
        if convert is None:
            raise unsupported(f"module {type(submodule).__module__}.{type(submodule).__name__}")
        return convert(self, submodule, *args, **kwargs)

    def run_node(self, node, env, inputs):
        def value(a):
            return env[a] if type(a).__name__ == "Node" else a

        args = _map(node.args, value)
        kwargs = _map(node.kwargs, value)
        if node.op == "placeholder":
            example = inputs.pop(0)
            shape = list(example.shape)
            if self.dynamic_batch and shape:
                shape[0] = None
            return TorchTensor(self.graph.placeholder(node.name, shape,
                                                      _dtype_name(example)))
        if node.op == "get_attr":
            attr = self.module
            for part in node.target.split("."):
                attr = getattr(attr, part)
            return self.constant(attr, node.target) if hasattr(attr, "detach") else attr
        if node.op == "call_function":
            if node.target.__module__ in (operator.__name__, "_operator", builtins.__name__):
                return node.target(*args, **kwargs)
            fn, name = resolve(node.target)
            if fn is None:
                raise unsupported(name)
            return fn(*args, **kwargs)
        if node.op == "call_method":
            return getattr(args[0], node.target)(*args[1:], **kwargs)
        if node.op == "call_module":
            return self.call_module(self.module.get_submodule(node.target), *args, **kwargs)
        raise unsupported(f"fx node kind {node.op!r}")


def _map(x, fn):
    if isinstance(x, slice):  # x[:, n // 2:] carries fx nodes inside the slice
        return slice(_map(x.start, fn), _map(x.stop, fn), _map(x.step, fn))
    if isinstance(x, (list, tuple)) and not hasattr(x, "_fields"):
        return type(x)(_map(v, fn) for v in x)
    if isinstance(x, dict):
        return {k: _map(v, fn) for k, v in x.items()}
    return fn(x)


def _target_name(node) -> str:
    t = node.target
    return t if isinstance(t, str) else f"{getattr(t, '__module__', '')}.{t.__name__}"


def _mark_outputs(graph, result):
    """Marks every tensor in ``result`` as a graph output; returns the structure with the
    output names in place of the tensors."""
    count = [0]

    def mark(v):
        if not isinstance(v, TorchTensor):
            raise TypeError(f"ds.from_torch: the module returns a {type(v).__name__}; only "
                            "tensors (in tuples, lists or dicts) are supported as outputs")
        name = f"output{count[0]}"
        count[0] += 1
        graph.output(v.ds, name=name)
        return name
    return _map(result, mark)


def _leaf_graph(torch, layer, num_inputs):
    fx_graph = torch.fx.Graph()
    args = tuple(fx_graph.placeholder(f"input{i}") for i in range(num_inputs))
    fx_graph.output(fx_graph.call_module("layer", args))
    root = torch.nn.Module()
    root.layer = layer
    return torch.fx.GraphModule(root, fx_graph)


def from_torch(module, example_inputs, target: str = "cpu",
               dynamic_batch: bool = False) -> TorchGraph:
    """Converts ``module`` (in eval mode) into a compiled ds graph for ``target``.

    ``example_inputs`` (a tensor or a tuple of them, one per forward argument) fix the
    input shapes and dtypes; ``dynamic_batch=True`` leaves every input's first extent
    open, so any batch size runs (code that computes with ``x.size(0)`` then needs the
    static form). Calls, methods or layers ds does not map raise a TorchCompatError naming
    the fx node and its target."""
    import torch
    import torch.fx

    if module.training:
        raise _core.InvalidArgument("ds.from_torch converts inference graphs: call "
                                    "module.eval() first (batch norm and dropout differ in "
                                    "training mode)")
    if isinstance(example_inputs, torch.Tensor):
        example_inputs = (example_inputs,)
    from ._torch_modules import converter_for
    if converter_for(module) is not None and type(module).__module__.startswith("torch.nn"):
        # fx never makes the root a leaf: a torch.nn layer itself (TransformerEncoder, whose
        # forward branches on its inputs) becomes a graph calling it as a leaf.
        traced = _leaf_graph(torch, module, len(example_inputs))
    else:
        traced = torch.fx.symbolic_trace(module)
    graph = _core.Graph()
    converter = _Converter(traced, graph, dynamic_batch)
    inputs = list(example_inputs)
    placeholders = [n.name for n in traced.graph.nodes if n.op == "placeholder"]
    if len(placeholders) != len(inputs):
        raise TypeError(f"ds.from_torch: the module's forward takes {len(placeholders)} inputs "
                        f"({', '.join(placeholders)}), example_inputs has {len(inputs)}")
    env = {}
    with ops.building(graph):
        for node in traced.graph.nodes:
            if node.op == "output":
                outputs = _mark_outputs(graph, _map(node.args[0], lambda a: env[a]
                                                    if type(a).__name__ == "Node" else a))
                break
            try:
                env[node] = converter.run_node(node, env, inputs)
            except (TorchCompatError, _core.Error, TypeError, ValueError) as e:
                # The same error type, naming the node whose conversion failed.
                raise type(e)(f"ds.from_torch: node '{node.name}' ({node.op} "
                              f"{_target_name(node)}): {e}") from e
    return TorchGraph(graph, _core.compile(graph, target), placeholders, outputs)
