"""The program from the product description, as written (target "cpu" here)."""
import numpy as np
import pytest

import deepseek as ds


def build():
    graph = ds.Graph()
    a = graph.placeholder("a", shape=[1024, 1024], dtype="float32")
    b = graph.placeholder("b", shape=[1024, 1024], dtype="float32")
    c = graph.matmul(a, b, name="c")
    return graph, c


def test_product_program_on_cpu():
    graph, c = build()
    compiled_graph = ds.compile(graph, target="cpu")
    a, b = np.random.rand(1024, 1024), np.random.rand(1024, 1024)
    output = compiled_graph.run({"a": a, "b": b})
    assert set(output) == {"c"} and output["c"].dtype == np.float32
    want = a.astype(np.float32).astype(np.float64) @ b.astype(np.float32).astype(np.float64)
    # float32 accumulation over k = 1024 terms of size ~0.25: a few ulps of the result.
    np.testing.assert_allclose(output["c"], want, rtol=1e-5, atol=1e-4)
    assert compiled_graph.target == "cpu"
    assert [i["name"] for i in compiled_graph.inputs] == ["a", "b"]
    assert compiled_graph.outputs[0]["shape"] == (1024, 1024)
    assert compiled_graph.stats()["flops"] == 2 * 1024 ** 3
    assert "matmul" in compiled_graph.explain()


@pytest.mark.parametrize("target", ["gpu", "npu"])
def test_other_targets_raise_listing_the_available_ones(target):
    if target in ds.available_targets():
        pytest.skip(f"target '{target}' is available on this machine")
    graph, _ = build()
    with pytest.raises(ds.Error, match="Available targets here: " + ", ".join(ds.available_targets())):
        ds.compile(graph, target=target)


def test_auto_target_runs():
    graph, _ = build()
    exe = ds.compile(graph)
    out = exe.run({"a": np.eye(1024), "b": np.full((1024, 1024), 2.0)})
    np.testing.assert_array_equal(out["c"], np.full((1024, 1024), 2.0, np.float32))


def test_quickstart_example_runs(capsys):
    import pathlib
    import runpy
    path = pathlib.Path(__file__).resolve().parents[2] / "examples" / "quickstart.py"
    runpy.run_path(str(path), run_name="__main__")
    out = capsys.readouterr().out
    assert out.startswith("[2. 4. 6.]") and "{'c': (1024, 1024)}" in out
