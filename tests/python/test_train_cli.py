"""`ds train --tensorboard DIR --profile` end to end on a tiny IDX dataset the
test writes itself; the event file is read back with TensorBoard's EventAccumulator."""
import json
import os
import struct
import subprocess

import numpy as np
import pytest

pytest.importorskip("tensorboard", reason="pip install tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

DS = os.path.join(os.environ.get("DS_BUILD_DIR", "build"), "ds")
pytestmark = pytest.mark.skipif(not os.path.exists(DS), reason=f"no ds binary at {DS}")

KEEP_ALL = {"scalars": 0, "histograms": 0, "tensors": 0, "compressedHistograms": 0}


def write_idx(path, array):
    """IDX: magic (0, 0, type 0x08 = ubyte, ndim), big-endian int32 extents, data."""
    with open(path, "wb") as f:
        f.write(struct.pack(">BBBB", 0, 0, 0x08, array.ndim))
        f.write(struct.pack(f">{array.ndim}i", *array.shape))
        f.write(array.astype(np.uint8).tobytes())


@pytest.fixture
def data_dir(tmp_path):
    rng = np.random.default_rng(0)
    d = tmp_path / "data"
    d.mkdir()
    for prefix, n in (("train", 96), ("t10k", 32)):
        labels = rng.integers(0, 10, n)
        # Class-dependent brightness so the labels are learnable.
        images = rng.integers(0, 100, (n, 28, 28)) + 15 * labels[:, None, None]
        write_idx(d / f"{prefix}-images-idx3-ubyte", images)
        write_idx(d / f"{prefix}-labels-idx1-ubyte", labels)
    return d


def ds_train(data_dir, *args):
    return subprocess.run([DS, "train", "--data-dir", str(data_dir), "--epochs", "1",
                           "--batch-size", "16", "--threads", "2", "--out", "", *args],
                          capture_output=True, text=True, timeout=600)


def test_tensorboard_debugger_and_profile(data_dir, tmp_path):
    logdir = tmp_path / "run"
    r = ds_train(data_dir, "--max-steps", "5", "--tensorboard", str(logdir), "--log-every", "1",
                 "--debug-every", "2", "--profile", "--profile-steps", "2")
    assert r.returncode == 0, r.stderr

    acc = EventAccumulator(str(logdir), size_guidance=KEEP_ALL)
    acc.Reload()
    tags = acc.Tags()
    for tag in ("train/loss", "train/accuracy", "train/lr", "train/images_per_sec"):
        assert [e.step for e in acc.Scalars(tag)] == [1, 2, 3, 4, 5], tag
    assert all(e.value == pytest.approx(1e-3) for e in acc.Scalars("train/lr"))
    assert all(0 <= e.value <= 100 for e in acc.Scalars("train/accuracy"))
    assert [e.step for e in acc.Scalars("test/accuracy")] == [5]

    # Debugger statistics at steps 1, 3, 5, for every layer with parameters.
    for tag in ("params/0.weight/mean", "params/9.bias/max", "grads/7.weight/norm",
                "grads/0.bias/std", "activations/0:Conv2d/std", "activations/6:Flatten/max",
                "activations/output/min", "update_ratio/0.weight"):
        assert tag in tags["scalars"], tag
        assert [e.step for e in acc.Scalars(tag)] == [1, 3, 5], tag
    # Adam's first step moves every weight by about lr: |dw| / |w| = lr sqrt(n) / |w|.
    ratio = acc.Scalars("update_ratio/7.weight")[0].value
    assert 1e-4 < ratio < 1e-1
    mins = acc.Scalars("activations/1:ReLU/min")
    assert all(e.value >= 0 for e in mins)
    hist = acc.Histograms("grads/0.weight")
    assert [h.step for h in hist] == [1, 3, 5]
    assert hist[0].histogram_value.num == 32 * 1 * 3 * 3
    assert "activations/2:MaxPool2d" in tags["histograms"]

    # The model graph and the resource monitor's samples.
    assert tags["graph"]
    assert any(t.startswith("monitor/") for t in tags["scalars"])

    # The profile: a table sorted by self time and a Chrome trace in the run directory.
    assert "profile of 2 steps after 2 warm-up steps" in r.stdout
    assert "Self time" in r.stdout
    trace_path = logdir / "ds_profile.json"
    assert f"chrome trace: {trace_path}" in r.stdout
    trace = json.loads(trace_path.read_text())
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    assert any(e.get("name") == "conv2d" for e in events)


def test_nan_names_the_first_op_and_layer(data_dir):
    # lr 1e30: Adam's first update makes every weight about +-1e30, so in step 2 the
    # second convolution (layer 3) multiplies 1e30-sized values by 1e30 -> Inf.
    r = ds_train(data_dir, "--max-steps", "4", "--lr", "1e30", "--no-eval")
    assert r.returncode == 1
    assert "step 2: first non-finite value produced by %" in r.stderr, r.stderr
    assert "conv2d" in r.stderr and "(forward, layer 3) from finite inputs" in r.stderr, r.stderr


def test_bad_tool_flags_are_refused(data_dir):
    r = ds_train(data_dir, "--debug-every", "-1")
    assert r.returncode == 1 and "--debug-every expects an integer >= 0" in r.stderr
    r = ds_train(data_dir, "--tensorboard")
    assert r.returncode == 1 and "--tensorboard needs a value" in r.stderr
