"""ds.profile / ds.record_function / ds.schedule / ds.monitor from Python."""
import json
import time

import numpy as np
import pytest

import deepseek as ds


def mlp():
    g = ds.Graph()
    x = g.placeholder("x", shape=[None, 8])
    w = g.constant(np.full((16, 8), 0.5, dtype=np.float32), name="w")
    g.output(g.relu(g.linear(x, w, name="fc"), name="act"), "y")
    return ds.compile(g, target="cpu", opt_level=1)  # keep linear and relu separate kernels


def test_profile_table_and_trace(tmp_path):
    exe = mlp()
    feed = {"x": np.ones((4, 8), dtype=np.float32)}
    with ds.profile(record_shapes=True) as prof:
        for _ in range(3):
            with ds.record_function('step "quoted" \\ back'):
                exe.run(feed)
    rows = {r.name: r for r in prof.key_averages().rows}
    assert rows["linear"].calls == 3 and rows["relu"].calls == 3
    assert rows["linear"].flops > 0 and rows["linear"].self_ns <= rows["linear"].total_ns
    table = prof.key_averages("shape").table(sort_by="calls", row_limit=5)
    assert "Self time" in table and "GFLOP/s" in table and "float32[4, 8]" in table

    path = tmp_path / "trace.json"
    prof.export_chrome_trace(str(path))
    trace = json.loads(path.read_text())
    names = [e["name"] for e in trace["traceEvents"] if e["ph"] == "X"]
    assert names.count('step "quoted" \\ back') == 3 and names.count("Executable.run") == 3
    assert all(e["dur"] >= 0 for e in trace["traceEvents"] if e["ph"] == "X")
    assert trace["otherData"]["truncated"] is False

    events = prof.events
    ops = [e for e in events if e["kind"] == "op"]
    assert ops and all(events[e["parent"]]["name"] == "Executable.run" for e in ops)


def test_schedule_calls_on_trace_ready_per_active_period():
    saved = []
    sched = ds.schedule(wait=1, warmup=1, active=2, repeat=2)
    with ds.profile(schedule=sched, on_trace_ready=lambda p: saved.append(
            [e["name"] for e in p.events])) as prof:
        for i in range(10):
            with ds.record_function(f"step{i}"):
                pass
            prof.step()
    assert saved == [["step2", "step3"], ["step6", "step7"]]
    with pytest.raises(ValueError):
        ds.schedule(active=0)


def test_profile_needs_with_and_is_exclusive():
    p = ds.profile()
    with pytest.raises(ValueError, match="context manager"):
        p.key_averages()
    with ds.profile():
        with pytest.raises(ValueError, match="already active"):
            with ds.profile():
                pass


def test_monitor_samples_this_process_and_writes_scalars(tmp_path):
    with pytest.raises(ValueError, match="below the minimum of 100 ms"):
        ds.monitor(interval=0.05)
    with ds.monitor(interval=0.1) as mon:
        deadline = time.time() + 5
        while len(mon.samples()) < 3 and time.time() < deadline:
            time.sleep(0.05)
    samples = mon.samples()
    assert len(samples) >= 3
    last = mon.latest()
    assert last["rss_bytes"] > 0 and last["peak_rss_bytes"] >= last["rss_bytes"]
    assert last["process_cpu_pct"] is not None and last["process_cpu_pct"] >= 0
    assert isinstance(last["gpus"], list) and len(last["gpus"]) == mon.gpu_count
    assert "rss_bytes" in mon.summary()

    seen = []
    nxt = mon.write_scalars(lambda tag, value, step: seen.append((tag, step)))
    assert nxt == len(samples)
    assert ("monitor/rss_bytes", 0) in seen
    assert mon.write_scalars(lambda *a: seen.append(a), nxt) == nxt  # nothing new


def test_monitor_scalars_read_back_by_tensorboard(tmp_path):
    pytest.importorskip("tensorboard", reason="pip install tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    with ds.monitor(interval=0.1) as mon:
        deadline = time.time() + 5
        while len(mon.samples()) < 2 and time.time() < deadline:
            time.sleep(0.05)
    n = len(mon.samples())
    with ds.tensorboard.SummaryWriter(str(tmp_path)) as w:
        mon.write_scalars(w)
    acc = EventAccumulator(str(tmp_path), size_guidance={"scalars": 0})
    acc.Reload()
    rss = acc.Scalars("monitor/rss_bytes")
    assert [s.step for s in rss] == list(range(n))
    assert all(s.value > 0 for s in rss)
