"""deepseek quick start: eager tensors, numpy/DLPack interop, and a compiled graph.

Run from a build tree:  PYTHONPATH=build/python python3 examples/quickstart.py
or after `pip install .`:  python3 examples/quickstart.py
"""
import numpy as np

import deepseek as ds

# ---- eager tensors: ops run at once
x = ds.Tensor([1.0, 2.0, 3.0])
print(x * 2)                                   # [2. 4. 6.]
m = ds.arange(12).reshape(3, 4)
print(m[:, ::2], m.sum(axis=0), ds.softmax(m, axis=-1).max(axis=1))
print(m.T @ m[:, :2])                          # (4, 2) matrix product

# ---- numpy in and out, without copies where possible
a = np.random.rand(2, 3).astype(np.float32)
t = ds.from_dlpack(a)                          # shares a's memory
a[0, 0] = 100.0
assert t[0, 0].item() == 100.0
view = t.numpy()                               # and back, still the same memory
assert np.shares_memory(view, a)

# ---- the product-description program: build, compile, run
graph = ds.Graph()
a = graph.placeholder("a", shape=[1024, 1024], dtype="float32")
b = graph.placeholder("b", shape=[1024, 1024], dtype="float32")
c = graph.matmul(a, b, name="c")
try:
    ds.compile(graph, target="gpu")
except ds.Error as e:                          # no CUDA here: the message lists the targets
    print("gpu:", e)
compiled_graph = ds.compile(graph, target="cpu")
output = compiled_graph.run({"a": np.random.rand(1024, 1024), "b": np.random.rand(1024, 1024)})
print({name: arr.shape for name, arr in output.items()})   # {'c': (1024, 1024)}

# ---- a small MLP with a symbolic batch dimension
g = ds.Graph()
inp = g.placeholder("x", shape=[None, 784])
w1 = g.constant(np.random.randn(128, 784).astype(np.float32) * 0.05)
w2 = g.constant(np.random.randn(10, 128).astype(np.float32) * 0.05)
logits = g.linear(g.relu(g.linear(inp, w1)), w2)
g.output(g.softmax(logits, axis=-1), "probs")
mlp = ds.compile(g, target="auto")
print(mlp.explain())
for batch in (1, 32):
    probs = mlp.run({"x": np.random.rand(batch, 784)})["probs"]
    print(batch, probs.shape, probs.sum(axis=1)[:3])
