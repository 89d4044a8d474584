"""Graph building from Python: placeholders, constants, op methods, symbolic operators,
printing, hashing, compile and run."""
import numpy as np
import pytest

import deepseek as ds


def mlp_graph():
    g = ds.Graph()
    x = g.placeholder("x", shape=[None, 4], dtype="float32")
    w = g.constant(np.arange(12, dtype=np.float32).reshape(3, 4) / 10, name="w")
    h = g.linear(x, w, name="h")
    y = g.relu(h - 1.0, name="y")
    g.output(y, "y")
    return g


def test_placeholder_and_symbolic_tensors():
    g = ds.Graph()
    x = g.placeholder("x", shape=[None, 784])
    assert x.is_symbolic and x.shape == (None, 784) and x.dtype == "float32"
    assert x.ndim == 2 and x.size is None
    assert "symbolic" in repr(x) and "float32[None, 784]" in str(x)
    with pytest.raises(ValueError, match="no data"):
        x.numpy()
    with pytest.raises(ValueError, match="truth value"):
        bool(x)
    assert g.placeholders == ["x"] and len(g) == 1


def test_operators_and_methods_build_nodes():
    g = ds.Graph()
    a = g.placeholder("a", [2, 3])
    b = g.placeholder("b", [3])
    c = (a + b) * 2 - a / 4
    d = ds.sum(c ** 2, axis=1)
    e = g.softmax(d, axis=0, name="e")
    f = a[:, 1:] @ a[:, :2].T
    assert c.is_symbolic and c.shape == (2, 3) and d.shape == (2,)
    assert e.shape == (2,) and f.shape == (2, 2)
    g.output(e, "e")
    g.output(f, "f")
    text = str(g)
    assert "softmax 'e'" in text and "placeholder 'a'" in text and "output 'f'" in text
    assert [n for n, _ in g.outputs] == ["e", "f"]
    g.verify()
    an, bn = np.random.rand(2, 3), np.random.rand(3)
    out = ds.compile(g, target="cpu").run({"a": an, "b": bn})
    cn = (an + bn) * 2 - an / 4
    dn = (cn ** 2).sum(axis=1)
    np.testing.assert_allclose(out["e"], np.exp(dn) / np.exp(dn).sum(), rtol=1e-5)
    np.testing.assert_allclose(out["f"], an[:, 1:] @ an[:, :2].T, rtol=1e-5)


def test_graph_method_turns_arrays_into_constants():
    g = ds.Graph()
    y = g.relu(np.array([-1.0, 2.0], np.float32), name="y")
    assert y.is_symbolic and "constant" in str(g)
    out = ds.compile(g, target="cpu").run({})
    np.testing.assert_array_equal(out["y"], [0.0, 2.0])


def test_generic_add_and_unknown_methods():
    g = ds.Graph()
    x = g.placeholder("x", [4])
    (y,) = g.add("leaky_relu", [x], {"negative_slope": 0.5}, name="y")
    out = ds.compile(g, target="cpu").run({"x": np.array([-2.0, 1.0, -1.0, 0.0])})
    np.testing.assert_allclose(out["y"], [-1.0, 1.0, -0.5, 0.0])
    with pytest.raises(AttributeError, match="no attribute or op 'frobnicate'"):
        g.frobnicate(x)


def test_values_of_another_graph_are_refused():
    g1, g2 = ds.Graph(), ds.Graph()
    x = g1.placeholder("x", [2])
    y = g2.placeholder("y", [2])
    with pytest.raises(ValueError, match="another graph"):
        x + y
    with pytest.raises(ValueError, match="not a value of this graph"):
        g2.output(x)


def test_text_dot_and_hash():
    g1, g2 = mlp_graph(), mlp_graph()
    assert g1.hash() == g2.hash()
    assert str(g1) == str(g2)
    dot = g1.to_dot()
    assert dot.startswith("digraph") and "linear" in dot
    g3 = ds.Graph()
    x = g3.placeholder("x", shape=[None, 4])
    g3.output(g3.sigmoid(x), "y")
    assert g3.hash() != g1.hash()
    assert repr(g1).startswith("<ds.Graph with")


def test_dynamic_batch_runs_at_any_size():
    exe = ds.compile(mlp_graph(), target="cpu", opt_level=1)
    w = np.arange(12, dtype=np.float32).reshape(3, 4) / 10
    for n in [1, 5, 0]:
        x = np.random.rand(n, 4).astype(np.float32)
        out = exe.run({"x": x})["y"]
        assert out.shape == (n, 3)
        np.testing.assert_allclose(out, np.maximum(x @ w.T - 1.0, 0), rtol=1e-5, atol=1e-6)
    assert exe.inputs == [{"name": "x", "shape": (None, 4), "dtype": ds.float32}]
    assert exe.outputs[0]["name"] == "y"
    assert isinstance(exe.graph, ds.Graph)
    stats = exe.stats()
    assert {"kernels", "flops", "bytes", "peak_bytes"} <= set(stats) and stats["kernels"] >= 1


def test_run_accepts_tensors_and_returns_independent_arrays():
    g = ds.Graph()
    x = g.placeholder("x", [3], dtype="int32")
    g.output(x * 3, "y")
    exe = ds.compile(g, target="cpu")
    first = exe.run({"x": ds.Tensor([1, 2, 3], dtype="int32")})["y"]
    second = exe.run({"x": [4, 5, 6]})["y"]
    assert first.tolist() == [3, 6, 9] and second.tolist() == [12, 15, 18]


def test_compile_options_are_checked():
    with pytest.raises(ds.InvalidArgument, match="opt_level"):
        ds.compile(mlp_graph(), target="cpu", opt_level=7)
    with pytest.raises(ds.InvalidArgument, match="no outputs"):
        ds.compile(ds.Graph(), target="cpu")


def test_module_level_information():
    assert "cpu" in ds.available_targets()
    assert ds.info().startswith("deepseek")
    assert ds.__version__ == ds.info().split()[1]
    stats = ds.memory_stats()
    assert {"current_bytes", "peak_bytes", "allocations"} <= set(stats)
    before = ds.num_threads()
    ds.set_num_threads(1)
    assert ds.num_threads() == 1
    ds.set_num_threads(before)
    names = ds.op_names()
    assert "matmul" in names and "placeholder" in names
    info = ds.op_info("softmax")
    assert info["attrs"] == [("axis", "int", -1)] and info["num_inputs"] == 1
    assert ds.hdl.matmul is ds.matmul and "conv2d" in ds.hdl.__all__


def test_run_from_many_threads():
    from concurrent.futures import ThreadPoolExecutor
    g = ds.Graph()
    x = g.placeholder("x", [None, 64])
    w = g.constant(np.random.rand(64, 64).astype(np.float32))
    g.output(ds.tanh(x @ w), "y")
    exe = ds.compile(g, target="cpu")
    inputs = [np.random.rand(8, 64).astype(np.float32) for _ in range(16)]
    want = [exe.run({"x": i})["y"] for i in inputs]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda i: exe.run({"x": i})["y"], inputs))
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)


def test_indexing_symbolic_tensors():
    g = ds.Graph()
    x = g.placeholder("x", [None, 5, 6])
    parts = {"a": x[:, 1:4, ::2], "b": x[..., 0], "c": x[:, [4, 0]], "d": x[:, 2, None],
             "e": x.T, "f": x.reshape(-1, 30).astype("float64")}
    assert parts["a"].shape == (None, 3, 3) and parts["c"].shape == (None, 2, 6)
    for name, v in parts.items():
        g.output(v, name)
    with pytest.raises(ds.ShapeError, match="symbolic axis"):
        x[0]
    xn = np.random.rand(3, 5, 6).astype(np.float32)
    out = ds.compile(g, target="cpu").run({"x": xn})
    for name, want in {"a": xn[:, 1:4, ::2], "b": xn[..., 0], "c": xn[:, [4, 0]],
                       "d": xn[:, 2, None], "e": xn.T, "f": xn.reshape(-1, 30)}.items():
        np.testing.assert_array_equal(out[name], want, err_msg=name)
    assert out["f"].dtype == np.float64


def test_attribute_conversion():
    # Tensor attributes stay tensors (even one-element integer ones), lists of ints stay ints.
    g = ds.Graph()
    c = g.constant(ds.Tensor([3], dtype="int32"))
    assert "constant" in str(g) and c.dtype == "int32"
    y = ds.apply("reshape", [ds.arange(6)], {"shape": (np.int64(2), 3)})[0]
    assert y.shape == (2, 3)
    with pytest.raises(ds.DTypeError, match="unsupported attribute value"):
        ds.apply("reshape", [ds.arange(6)], {"shape": object()})
    (k,) = g.add("constant", [], {"value": ds.Tensor([7], dtype="int64")})
    g.output(k + 1, "k")
    assert ds.compile(g, target="cpu").run({})["k"].tolist() == [8]
