"""ds.profile's device times from Python: the fields on the CPU, real GPU times on CUDA."""
import json

import numpy as np
import pytest

import deepseek as ds


def matmul_add(target):
    g = ds.Graph()
    a, b, c = g.placeholder("a", shape=[64, 128]), g.placeholder("b", shape=[128, 32]), \
        g.placeholder("c", shape=[64, 32])
    g.output(g.matmul(a, b) + c, "y")
    return ds.compile(g, target=target, opt_level=0)


def feeds():
    rng = np.random.default_rng(0)
    return {"a": rng.standard_normal((64, 128), dtype=np.float32),
            "b": rng.standard_normal((128, 32), dtype=np.float32),
            "c": rng.standard_normal((64, 32), dtype=np.float32)}


def test_profile_on_cpu_has_no_device_times():
    exe = matmul_add("cpu")
    with ds.profile() as prof:
        exe.run(feeds())
    assert all(e["device"] == -1 and e["device_ns"] == 0 for e in prof.events)
    assert prof.device_activities == []
    assert all(r.self_device_ns == 0 and r.device_total_ns == 0 for r in prof.key_averages().rows)
    assert "Self CUDA" not in prof.key_averages().table()
    if not ds.cuda.is_available():
        assert prof.device_timer == ("", "")


@pytest.mark.skipif(not ds.cuda.is_available(), reason="no CUDA device")
def test_profile_cuda_ops_get_device_times(tmp_path):
    exe = matmul_add("cuda")
    exe.run(feeds())  # warm-up
    with ds.profile() as prof:
        for _ in range(2):
            exe.run(feeds())
    kind, warning = prof.device_timer
    assert kind in ("cupti", "cuda-events"), (kind, warning)
    gpu_ops = {e["name"] for e in prof.events if e["device"] == 0 and e["device_ns"] > 0}
    assert {"matmul", "add"} <= gpu_ops
    assert prof.device_activities and all(a["end_ns"] >= a["start_ns"] for a in prof.device_activities)
    rows = {r.name: r for r in prof.key_averages().rows}
    assert rows["matmul"].device_total_ns > 0
    assert "Self CUDA" in prof.key_averages().table(sort_by="cuda_total")
    path = tmp_path / "trace.json"
    prof.export_chrome_trace(str(path))
    trace = json.loads(path.read_text())
    streams = [e for e in trace["traceEvents"]
               if e["ph"] == "M" and e["name"] == "thread_name" and e["args"]["name"].startswith("stream ")]
    assert streams
    assert any(e["ph"] == "f" for e in trace["traceEvents"])  # kernels linked to their ops
