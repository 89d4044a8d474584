"""Shared by the side-by-side benchmarks (bench/run_*.py): timing, medians, the
order of the sides, thread settings, and the machine and peers a result was
measured on.

A script in bench/ imports it as `import _sidebyside` (Python puts the script's
folder first on sys.path). Peers that run in another interpreter get the timing
function as source: `PEER_TIMING + "..."`.
"""
import inspect
import json
import os
import platform
import subprocess
import time
from pathlib import Path


def median_seconds(fn, budget, warmup=2, min_runs=5, max_runs=200):
    """The median time of `fn` over at least `min_runs` runs and about `budget` seconds."""
    for _ in range(warmup):
        fn()
    times, start = [], time.perf_counter()
    while len(times) < min_runs or (time.perf_counter() - start < budget and len(times) < max_runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2]


# median_seconds for a peer process that cannot import this module.
PEER_TIMING = "import time\n\n" + inspect.getsource(median_seconds)


def best_seconds(fn, repeat=5):
    """The shortest of `repeat` runs of `fn`, after one warm-up run."""
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def add_binary_and_peer_args(ap):
    """The options of a script that times a C++ benchmark binary against a peer interpreter."""
    root = Path(__file__).resolve().parent.parent
    ap.add_argument("--build", default=os.environ.get("DS_BUILD_DIR", str(root / "build")))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="shorter timing budget per case")
    ap.add_argument("--peer-python", default="/usr/bin/python3",
                    help="the Python with numpy and torch (default: Debian's)")


def median(values):
    values = sorted(values)
    return values[len(values) // 2]


def in_turn(sides, round_index):
    """The sides in this round's order: swapped every other round, so that no side
    always runs first on a machine that drifts."""
    return sides if round_index % 2 == 0 else sides[::-1]


def thread_env(threads, env=None):
    """`env` (default: this process's) with every side held to `threads` threads."""
    env = dict(os.environ if env is None else env)
    env.update({"DS_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads),
                "OPENBLAS_NUM_THREADS": str(threads)})
    return env


def cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def machine():
    """What a result was measured on; the load average says how quiet it was."""
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "load_average": os.getloadavg()}


def peer_versions(python):
    """numpy's and torch's versions in the peer interpreter `python` ({} when missing)."""
    versions = subprocess.run(
        [python, "-c", "import numpy, torch; print(numpy.__version__, torch.__version__)"],
        capture_output=True, text=True).stdout.split()
    return {"numpy": versions[0], "torch": versions[1]} if versions else {}


def write_json(path, result, indent=1):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=indent) + "\n")
    print(f"wrote {path}")
