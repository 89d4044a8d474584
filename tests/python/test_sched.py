"""ds.sched from Python: priorities, deadlines, cancellation, callbacks, Python work on
C++ worker threads (GIL), dynamic batching against unbatched results, run-time knobs,
policies with a saved Q-table, auxiliary tasks, ds.save / ds.load."""
import concurrent.futures
import threading
import time

import numpy as np
import pytest

import deepseek as ds

WAIT = 10  # seconds: a bound on every wait, so a broken build fails instead of hanging


def blocker(scheduler, priority=1):
    """Occupies one worker until the returned event is set."""
    started, release = threading.Event(), threading.Event()

    def hold():
        started.set()
        release.wait(WAIT)

    f = scheduler.submit(hold, priority=priority)
    assert started.wait(WAIT)
    return release, f


def mlp_graph():
    g = ds.Graph()
    x = g.placeholder("x", shape=[None, 4], dtype="float32")
    w = g.constant(np.arange(12, dtype=np.float32).reshape(3, 4) / 10, name="w")
    h = g.linear(x, w, name="h")
    g.output(g.relu(h - 1.0, name="y"), "y")
    return g


def test_strict_priority_then_fifo_within_a_level():
    with ds.sched.Scheduler(workers=1, priority_levels=3, aging_us=0) as s:
        release, _ = blocker(s)
        order = []
        futures = [s.submit(order.append, (p, i), priority=p)
                   for i, p in enumerate([3, 2, 1, 3, 1, 2])]
        release.set()
        for f in futures:
            f.result(WAIT)
        assert order == [(1, 2), (1, 4), (2, 1), (2, 5), (3, 0), (3, 3)]


def test_python_work_runs_on_worker_threads_with_args_and_errors():
    with ds.sched.Scheduler(workers=2) as s:
        f = s.submit(lambda a, b=0: (a + b, threading.get_ident()), 2, b=5, priority=2)
        value, thread = f.result(WAIT)
        assert value == 7 and thread != threading.get_ident()
        assert f.done() and f.status == "done" and f.priority == 2 and f.exception() is None
        bad = s.submit(lambda: 1 / 0)
        with pytest.raises(ZeroDivisionError):
            bad.result(WAIT)
        assert isinstance(bad.exception(), ZeroDivisionError) and bad.status == "failed"
        with pytest.raises(ZeroDivisionError):  # asking again raises again
            bad.result(WAIT)


def test_waiting_releases_the_gil_for_python_workers():
    # Four CPU-bound Python tasks on two workers finish while this thread waits on
    # them; a wait that held the GIL would never return.
    def count(n):
        return sum(range(n))

    with ds.sched.Scheduler(workers=2) as s:
        futures = [s.submit(count, 200_000) for _ in range(4)]
        assert [f.result(WAIT) for f in futures] == [sum(range(200_000))] * 4


def test_deadline_rejects_a_queued_task_with_a_clear_error():
    with ds.sched.Scheduler(workers=1) as s:
        release, _ = blocker(s)
        ran = []
        f = s.submit(ran.append, 1, timeout=0.05)
        with pytest.raises(ds.sched.DeadlineExceeded, match="deadline") as e:
            f.result(WAIT)
        assert isinstance(e.value, TimeoutError) and isinstance(e.value, ds.sched.RejectedError)
        assert f.status == "expired"
        late = s.submit(ran.append, 2, deadline=time.monotonic() - 1)  # passed already
        with pytest.raises(ds.sched.DeadlineExceeded):
            late.result(WAIT)
        release.set()
        s.submit(ran.append, 3).result(WAIT)
        assert ran == [3]  # never run late


def test_deadline_expires_a_running_task_at_once():
    with ds.sched.Scheduler(workers=1) as s:
        t0 = time.monotonic()
        f = s.submit(time.sleep, 1.0, timeout=0.05)
        with pytest.raises(ds.sched.DeadlineExceeded, match="while running"):
            f.result(WAIT)
        assert time.monotonic() - t0 < 0.9


def test_result_timeout_is_not_a_rejection():
    with ds.sched.Scheduler(workers=1) as s:
        release, held = blocker(s)
        with pytest.raises(TimeoutError, match="still running"):
            held.result(timeout=0.01)
        release.set()
        assert held.result(WAIT) is None


def test_cancel_before_start_and_not_after():
    with ds.sched.Scheduler(workers=1) as s:
        release, held = blocker(s)
        ran = []
        f = s.submit(ran.append, 1)
        assert f.cancel() and f.cancelled() and f.done()
        with pytest.raises(ds.sched.CancelledError):
            f.result(WAIT)
        with pytest.raises(concurrent.futures.CancelledError):
            f.result(WAIT)
        assert not held.cancel()  # running: too late
        release.set()
        held.result(WAIT)
        assert not held.cancel() and ran == []


def test_done_callbacks_run_once_for_pending_and_finished_tasks():
    with ds.sched.Scheduler(workers=1) as s:
        release, _ = blocker(s)
        seen = []
        f = s.submit(lambda: 42)
        f.add_done_callback(lambda fut: seen.append(("pending", fut.result(), fut.status)))
        release.set()
        assert f.result(WAIT) == 42
        deadline = time.monotonic() + WAIT
        while not seen and time.monotonic() < deadline:
            time.sleep(0.001)
        f.add_done_callback(lambda fut: seen.append(("finished", fut.result(), fut.status)))
        assert seen == [("pending", 42, "done"), ("finished", 42, "done")]
        # A dropped future still calls back.
        called = threading.Event()
        s.submit(lambda: None).add_done_callback(lambda fut: called.set())
        assert called.wait(WAIT)


def test_a_full_level_rejects_at_once():
    with ds.sched.Scheduler(workers=1, queue_capacity=2) as s:
        release, _ = blocker(s)
        kept = [s.submit(lambda: 1) for _ in range(2)]
        refused = s.submit(lambda: 1)
        assert refused.done() and refused.status == "rejected"
        with pytest.raises(ds.sched.RejectedError, match="full"):
            refused.result(WAIT)
        release.set()
        assert [f.result(WAIT) for f in kept] == [1, 1]
        assert s.stats()["rejected"] == 1


def test_bad_arguments_name_what_is_wrong():
    with ds.sched.Scheduler(workers=1, priority_levels=3) as s:
        with pytest.raises(ValueError, match=r"priority must be 1\.\.3, got 7"):
            s.submit(print, priority=7)
        with pytest.raises(ValueError, match=r"1\.\.3, got 0"):
            s.submit(print, priority=0)
        with pytest.raises(TypeError, match="callable or a ds.Executable"):
            s.submit(42)
        with pytest.raises(ValueError, match="not both"):
            s.submit(print, timeout=1, deadline=time.monotonic() + 1)
        with pytest.raises(ValueError, match="timeout must be >= 0"):
            s.submit(print, timeout=-1)
        b = ds.sched.DynamicBatcher(lambda x: x, s, name="echo")
        with pytest.raises(ValueError, match=r"'echo': priority must be 1\.\.3, got 4"):
            b.submit(np.ones((1, 2), np.float32), priority=4)
        with pytest.raises(ds.ShapeError, match="input 1"):
            b.submit([np.ones((2, 2), np.float32), np.ones((3, 2), np.float32)])
        with pytest.raises(ValueError, match="max_batch_size"):
            b.max_batch_size = 0
        b.close()
    with pytest.raises(ValueError, match="priority_levels"):
        ds.sched.Scheduler(priority_levels=0)
    with pytest.raises(ValueError, match="shut down"):
        s.submit(print)


def test_batcher_merges_requests_and_splits_outputs_like_unbatched_runs():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((3, 5)).astype(np.float32)
    batches = []

    def model(x, scale):
        batches.append(x.shape[0])
        return [x @ w, scale * 2]

    requests = [(rng.standard_normal((n, 3)).astype(np.float32),
                 rng.standard_normal((n, 1)).astype(np.float32)) for n in [1, 2, 1, 3, 1]]
    with ds.sched.Scheduler(workers=1) as s:
        b = ds.sched.DynamicBatcher(model, s, max_batch_size=16)
        release, _ = blocker(s)
        futures = [b.submit(list(r), priority=1 + i % 2) for i, r in enumerate(requests)]
        release.set()
        for (x, scale), f in zip(requests, futures):
            y, z = f.result(WAIT)
            np.testing.assert_allclose(y, x @ w, rtol=1e-6)
            np.testing.assert_array_equal(z, scale * 2)
        assert batches == [8]  # all five in one batch
        stats = b.stats()
        assert stats["batches"] == 1 and stats["rows"] == 8 and stats["succeeded"] == 5
        b.close()


def test_batcher_never_merges_different_shapes_and_knobs_change_at_run_time():
    batches = []

    def model(x):
        batches.append(x.shape)
        return x + 1

    with ds.sched.Scheduler(workers=1) as s:
        b = ds.sched.DynamicBatcher(model, s, max_batch_size=8)
        release, _ = blocker(s)
        fs = [b.submit(np.zeros((1, 3), np.float32)), b.submit(np.zeros((1, 4), np.float32)),
              b.submit(np.zeros((1, 3), np.float32))]
        release.set()
        outs = [f.result(WAIT)[0] for f in fs]
        assert [o.shape for o in outs] == [(1, 3), (1, 4), (1, 3)] and all((o == 1).all() for o in outs)
        assert sorted(batches) == [(1, 4), (2, 3)]

        b.max_batch_size = 2
        b.max_queue_delay_us = 250
        b.preferred_batch_sizes = [2]
        assert (b.max_batch_size, b.max_queue_delay_us, b.preferred_batch_sizes) == (2, 250, [2])
        batches.clear()
        release, _ = blocker(s)
        fs = [b.submit(np.full((1, 3), i, np.float32)) for i in range(5)]
        release.set()
        for i, f in enumerate(fs):
            np.testing.assert_array_equal(f.result(WAIT)[0], np.full((1, 3), i + 1))
        assert [shape[0] for shape in batches] == [2, 2, 1]
        b.close()


def test_batcher_with_a_compiled_executable_and_its_failures():
    exe = ds.compile(mlp_graph(), target="cpu")
    rng = np.random.default_rng(1)
    xs = [rng.standard_normal((n, 4)).astype(np.float32) for n in [1, 3, 2]]
    with ds.sched.Scheduler(workers=1) as s:
        b = ds.sched.DynamicBatcher(exe, s, max_batch_size=8, max_queue_delay_us=2000)
        fs = [b.submit({"x": x}) for x in xs]
        for x, f in zip(xs, fs):
            np.testing.assert_allclose(f.result(WAIT)["y"], exe.run({"x": x})["y"], rtol=1e-6)
        with pytest.raises(LookupError, match="'x' is missing"):
            b.submit({"z": xs[0]})
        b.close()

        def broken(x):
            raise RuntimeError("model exploded")

        b = ds.sched.DynamicBatcher(broken, s)
        with pytest.raises(RuntimeError, match="model exploded"):
            b.submit(np.ones((1, 2), np.float32)).result(WAIT)
        b.close()


def test_scheduler_runs_an_executable_with_named_inputs():
    exe = ds.compile(mlp_graph(), target="cpu")
    x = np.linspace(-1, 1, 8, dtype=np.float32).reshape(2, 4)
    with ds.sched.Scheduler(workers=1) as s:
        got = s.submit(exe, {"x": x}, priority=2).result(WAIT)
        np.testing.assert_allclose(got["y"], exe.run({"x": x})["y"])
        np.testing.assert_allclose(s.submit(exe, [x]).result(WAIT)["y"], got["y"])
        with pytest.raises(ValueError, match="takes 1 inputs, got 2"):
            s.submit(exe, [x, x])


def test_policies_and_a_q_table_that_round_trips(tmp_path):
    assert ds.sched.static_policy(8, 100).decide([0, 0, 0]) == (8, 100)
    assert ds.sched.aimd_policy(1000, 16).decide([1]) == (1, 0)  # AIMD starts at one
    q = ds.sched.QLearningPolicy(batch_caps=[1, 4, 16], queue_delays_us=[0, 200], max_rate=5000,
                                 epsilon=0.5, seed=3)
    for depth in range(40):
        cap, _ = q.decide([depth % 3, depth], arrival_rate=100.0 * depth, utilization=0.5)
        q.observe(batch_size=cap, service_us=100.0 * cap, deadlines_met=cap)
    assert q.states_visited > 1
    path = tmp_path / "q.txt"
    q.save(str(path))
    copy = ds.sched.QLearningPolicy(batch_caps=[1, 4, 16], queue_delays_us=[0, 200], max_rate=5000,
                                    epsilon=0)
    copy.load(str(path))
    assert copy.states_visited == q.states_visited
    with pytest.raises(ValueError, match="another action set"):
        ds.sched.QLearningPolicy(batch_caps=[1, 2]).load(str(path))
    with pytest.raises(OSError, match="cannot read"):
        copy.load(str(tmp_path / "missing.txt"))
    with pytest.raises(ValueError, match="batch cap 0"):
        ds.sched.QLearningPolicy(batch_caps=[0])

    # A batcher follows its policy: cap 2 although the options allow 8.
    batches = []
    with ds.sched.Scheduler(workers=1) as s:
        b = ds.sched.DynamicBatcher(lambda x: (batches.append(len(x)), x)[1], s, max_batch_size=8,
                                    policy=ds.sched.static_policy(2, 0))
        release, _ = blocker(s)
        fs = [b.submit(np.ones((1, 1), np.float32)) for _ in range(5)]
        release.set()
        [f.result(WAIT) for f in fs]
        assert batches == [2, 2, 1]
        b.set_policy(None)
        b.close()


def test_auxiliary_work_runs_while_idle_and_yields_to_real_work():
    calls, yielded = [], threading.Event()

    def aux(token):
        calls.append(len(calls))
        if len(calls) > 1:
            return True  # resumed after the real work: finish
        deadline = time.monotonic() + WAIT
        while not token.should_yield() and time.monotonic() < deadline:
            time.sleep(0.001)
        yielded.set()
        return False

    with ds.sched.Scheduler(workers=1) as s:
        f = s.submit_auxiliary(aux)
        deadline = time.monotonic() + WAIT
        while not calls and time.monotonic() < deadline:
            time.sleep(0.001)
        release = threading.Event()
        real = s.submit(lambda: release.wait(WAIT) and "real")  # busy until the aux work yields
        assert yielded.wait(WAIT)
        release.set()
        assert real.result(WAIT) == "real"
        assert f.result(WAIT) is None and len(calls) == 2
        stats = s.stats()
        assert stats["auxiliary_completed"] == 1 and stats["auxiliary_yields"] == 1
        with pytest.raises(TypeError, match="expected a callable"):
            s.submit_auxiliary(3)


def test_save_and_load_a_model(tmp_path):
    g = mlp_graph()
    ds.save(g, tmp_path / "mlp")
    assert (tmp_path / "mlp" / "graph.json").exists()
    x = np.linspace(-2, 2, 12, dtype=np.float32).reshape(3, 4)
    want = ds.compile(g, target="cpu").run({"x": x})["y"]
    got = ds.compile(ds.load(tmp_path / "mlp"), target="cpu").run({"x": x})["y"]
    np.testing.assert_array_equal(got, want)
    with pytest.raises(LookupError):
        ds.load(tmp_path / "nothing-here")
