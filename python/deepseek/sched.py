"""ds.sched: priority scheduling, dynamic batching and batching policies.

Tasks run on the scheduler's C++ worker threads; Python work takes the GIL
while it runs, and waiting on a future releases it::

    with ds.sched.Scheduler(workers=2, priority_levels=3) as s:
        f = s.submit(fn, x, priority=1, timeout=0.05)   # seconds
        f.add_done_callback(lambda f: print(f.status))
        y = f.result()        # or raises DeadlineExceeded, CancelledError, RejectedError

A model behind a dynamic batcher (requests merged along dim 0, outputs split back)::

    b = ds.sched.DynamicBatcher(exe, s, max_batch_size=16, max_queue_delay_us=500)
    out = b.submit({"x": rows}, priority=2).result()   # {output name: rows}
    b.max_batch_size = 32                                 # knobs change at run time
    b.set_policy(ds.sched.QLearningPolicy(max_rate=5000))

Idle-time work runs only while a worker would otherwise idle::

    def prefetch(token):
        while more():
            step()
            if token.should_yield():
                return False          # called again later
        return True
    s.submit_auxiliary(prefetch)
"""
from ._core import sched as _sched

CancelledError = _sched.CancelledError
DeadlineExceeded = _sched.DeadlineExceeded
DynamicBatcher = _sched.DynamicBatcher
Future = _sched.Future
Policy = _sched.Policy
QLearningPolicy = _sched.QLearningPolicy
RejectedError = _sched.RejectedError
Scheduler = _sched.Scheduler
YieldToken = _sched.YieldToken
aimd_policy = _sched.aimd_policy
static_policy = _sched.static_policy


def _exception(self, timeout=None):
    """The task's error (None when it succeeded), after waiting like result()."""
    if not self.wait(timeout):
        raise TimeoutError(f"the task is still {self.status} after {timeout} s")
    try:
        self.result()
    except Exception as e:  # the task's own error or its rejection
        return e
    return None


Future.exception = _exception
