"""ds.tensorboard.SummaryWriter, read back with the real `tensorboard` package."""
import re
import sys
import time

import numpy as np
import pytest

import deepseek as ds

pytest.importorskip("tensorboard", reason="pip install tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader  # noqa: E402

KEEP_ALL = {"scalars": 0, "histograms": 0, "tensors": 0, "compressedHistograms": 0}


def accumulate(path):
    acc = EventAccumulator(str(path), size_guidance=KEEP_ALL)
    acc.Reload()  # reads through TensorBoard's record reader, which checks the CRCs
    return acc


def tf_default_limits():
    """TensorFlow's default histogram bucket edges, computed independently."""
    pos, v = [], 1e-12
    while v < 1e20:
        pos.append(v)
        v *= 1.1
    pos.append(sys.float_info.max)
    return np.array([-x for x in reversed(pos)] + [0.0] + pos)


def test_event_file_name_and_scalars(tmp_path):
    with ds.tensorboard.SummaryWriter(tmp_path, filename_suffix=".v2") as w:
        for step in range(20):
            w.add_scalar("loss", 1.0 / (step + 1), global_step=step)
        w.add_scalar("lr", np.float32(0.5), global_step=3, walltime=1700000000.25)
        path = w.file_path
    assert re.fullmatch(r"events\.out\.tfevents\.\d{10}\..+\.\d+\.\d+\.v2",
                        path.split("/")[-1]), path
    acc = accumulate(tmp_path)
    assert sorted(acc.Tags()["scalars"]) == ["loss", "lr"]
    loss = acc.Scalars("loss")
    assert [e.step for e in loss] == list(range(20))
    np.testing.assert_allclose([e.value for e in loss], [1.0 / (s + 1) for s in range(20)],
                               rtol=1e-7)
    [lr] = acc.Scalars("lr")
    assert (lr.step, lr.value, lr.wall_time) == (3, 0.5, 1700000000.25)
    assert acc.file_version == 2.0
    first = next(iter(EventFileLoader(path).Load()))
    assert first.file_version == "brain.Event:2"


def test_add_scalars_makes_one_run_per_key(tmp_path):
    with ds.tensorboard.SummaryWriter(tmp_path) as w:
        for step in range(3):
            w.add_scalars("acc", {"train": 0.5 + step, "test": 0.25 + step}, step)
    for key, base in (("train", 0.5), ("test", 0.25)):
        acc = accumulate(tmp_path / f"acc_{key}")
        events = acc.Scalars("acc")
        assert [(e.step, e.value) for e in events] == [(s, base + s) for s in range(3)]


def test_histograms_use_tensorflow_buckets(tmp_path, rng):
    values = np.concatenate([rng.standard_normal(1000) * 3, [0.0, 0.0, 1e-13, -1e5]])
    with ds.tensorboard.SummaryWriter(tmp_path) as w:
        w.add_histogram("w", values, global_step=7)
        w.add_histogram("w", ds.Tensor(values[:10], dtype="float16"), global_step=8)
        with pytest.raises(ValueError, match="bins"):
            w.add_histogram("w", values, global_step=9, bins="auto")
    acc = accumulate(tmp_path)
    first, second = acc.Histograms("w")
    assert (first.step, second.step) == (7, 8)
    h = first.histogram_value
    assert h.num == len(values)
    assert h.min == values.min() and h.max == values.max()
    np.testing.assert_allclose(h.sum, values.sum(), rtol=1e-12)
    np.testing.assert_allclose(h.sum_squares, (values ** 2).sum(), rtol=1e-12)
    # Expand the written (run-length compressed) buckets and compare them with
    # TensorFlow's rule: a value v counts in the first bucket whose limit is > v.
    limits = tf_default_limits()
    want = np.bincount(np.searchsorted(limits, values, side="right"), minlength=len(limits))
    got = np.zeros(len(limits))
    for limit, count in zip(h.bucket_limit, h.bucket):
        if count > 0:
            got[np.searchsorted(limits, limit)] = count
    np.testing.assert_array_equal(got, want)
    assert second.histogram_value.num == 10


def test_text(tmp_path):
    with ds.tensorboard.SummaryWriter(tmp_path) as w:
        w.add_text("notes", "# Run\n*lr* = 1e-3", global_step=2)
        w.add_text("notes", "second", global_step=5)
    acc = accumulate(tmp_path)
    events = acc.Tensors("notes")
    assert [e.step for e in events] == [2, 5]
    assert [e.tensor_proto.string_val[0].decode() for e in events] == [
        "# Run\n*lr* = 1e-3", "second"]
    assert [d.size for d in events[0].tensor_proto.tensor_shape.dim] == [1]
    assert acc.SummaryMetadata("notes").plugin_data.plugin_name == "text"


def test_graph_from_a_ds_graph(tmp_path):
    g = ds.Graph()
    x = g.placeholder("x", shape=[None, 4])
    w = g.constant(np.ones((4, 3), np.float32), name="fc.weight")
    y = g.matmul(x, w, name="fc.out")
    g.relu(y, name="act")
    with ds.tensorboard.SummaryWriter(tmp_path) as writer:
        writer.add_graph(g)
    graph = accumulate(tmp_path).Graph()
    nodes = {n.name: n for n in graph.node}
    assert set(nodes) == {"x", "fc/weight", "fc/out", "act"}
    assert nodes["fc/out"].op == "matmul"
    assert list(nodes["fc/out"].input) == ["x", "fc/weight"]
    assert list(nodes["act"].input) == ["fc/out"]
    shape = nodes["fc/out"].attr["_output_shapes"].list.shape[0]
    assert [d.size for d in shape.dim] == [-1, 3]  # None is TensorFlow's unknown extent
    assert nodes["x"].attr["dtype"].type == 1  # DT_FLOAT


def test_purge_step_hides_stale_events_on_resume(tmp_path):
    with ds.tensorboard.SummaryWriter(tmp_path) as w:
        for step in range(10):
            w.add_scalar("loss", step, global_step=step)
    # The run crashed after step 4's checkpoint; resume from step 5.
    with ds.tensorboard.SummaryWriter(tmp_path, purge_step=5) as w:
        for step in range(5, 8):
            w.add_scalar("loss", 100 + step, global_step=step)
    events = accumulate(tmp_path).Scalars("loss")
    assert [(e.step, e.value) for e in events] == (
        [(s, s) for s in range(5)] + [(s, 100 + s) for s in range(5, 8)])


def test_background_flush_without_close(tmp_path):
    w = ds.tensorboard.SummaryWriter(tmp_path, flush_secs=0.05, max_queue=1000)
    w.add_scalar("x", 1.0, global_step=1)
    deadline = time.time() + 10
    while time.time() < deadline and not accumulate(tmp_path).Tags()["scalars"]:
        time.sleep(0.02)
    assert [e.value for e in accumulate(tmp_path).Scalars("x")] == [1.0]
    w.close()
    with pytest.raises(ValueError, match="closed"):
        w.add_scalar("x", 2.0, global_step=2)


@pytest.mark.skipif(not hasattr(ds, "nn"), reason="ds.nn is not in this build")
def test_graph_of_a_model(tmp_path):
    model = ds.nn.Sequential(ds.nn.Linear(4, 3), ds.nn.ReLU(), ds.nn.Linear(3, 2))
    with ds.tensorboard.SummaryWriter(tmp_path / "shape") as w:
        w.add_graph(model, (None, 4))
    with ds.tensorboard.SummaryWriter(tmp_path / "example") as w:
        w.add_graph(model, np.zeros((5, 4), np.float32))
        with pytest.raises(ValueError, match="input_to_model"):
            w.add_graph(model)
    for run, batch in (("shape", -1), ("example", 5)):
        nodes = {n.name: n for n in accumulate(tmp_path / run).Graph().node}
        assert {"input", "0/weight", "0/bias", "2/weight", "2/bias"} <= set(nodes)
        scoped = [n for n in nodes.values() if n.name.startswith("2/") and "2/weight" in n.input]
        assert len(scoped) == 1
        out = scoped[0].attr["_output_shapes"].list.shape[0]
        assert [d.size for d in out.dim] == [batch, 2]
