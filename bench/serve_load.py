#!/usr/bin/env python3
"""Mixed-load benchmark of ds serve on loopback, side by side with two baselines.

Workload: an MLP served over the Open Inference Protocol v2; open-loop Poisson
arrivals (bench/cpp/load_gen.cpp); 20 % high priority (batch 1, a deadline),
80 % low priority. Offered load is a fraction of the no-batching capacity
(2 instances / t(1)). Configurations, each on the same 2 CPU threads:
  ours   one server, 2 instances, dynamic batching (max 16), priorities
  (a)    FIFO without batching: two replicas, round-robin (a plain Deployment)
  (b)    one server, dynamic batching, no priorities
Run:  bench/serve_load.py --build build --load-gen build-bench/load_gen
Writes bench/results/serve_load.json and prints case | ours | peer | ratio rows.
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))


def sh(cmd, env=None):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout


def write_repo(root, model_src, config):
    os.makedirs(os.path.join(root, "mlp"))
    shutil.copytree(model_src, os.path.join(root, "mlp", "model"))
    with open(os.path.join(root, "mlp", "config.json"), "w") as f:
        json.dump(config, f)


def wait_ready(port, proc):
    for _ in range(600):
        if proc.poll() is not None:
            raise RuntimeError(f"server on {port} exited: {proc.stderr.read()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server on {port} never became ready")


def metric(port, name):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + "{"):
                return float(line.split()[-1])
    return 0.0


def run_case(args, ds_bin, repo, replicas, workers, rate, priorities, high_timeout, port0):
    env = dict(os.environ, DS_NUM_THREADS=str(args.threads_per_instance))
    procs, ports = [], []
    for i in range(replicas):
        port = port0 + i
        procs.append(subprocess.Popen(
            [ds_bin, "serve", "--model-repository", repo, "--port", str(port), "--workers", str(workers),
             "--http-threads", "256"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
        ports.append(port)
    try:
        for p, port in zip(procs, ports):
            wait_ready(port, p)
        out = sh([args.load_gen, "run", "--targets", ",".join(f"127.0.0.1:{p}" for p in ports),
                  "--model", "mlp", "--in", str(args.input), "--rate", str(rate), "--seconds", str(args.seconds),
                  "--high-share", "0.2", "--high-timeout-us", str(high_timeout),
                  "--priorities", "1" if priorities else "0", "--threads", "256", "--seed", "1"])
        res = json.loads(out.strip().splitlines()[-1])
        rows = sum(metric(p, "ds_inference_count_total") for p in ports)
        execs = sum(metric(p, "ds_inference_exec_count_total") for p in ports)
        res["avg_batch"] = rows / execs if execs else 0.0
        return res
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(timeout=60)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build")
    ap.add_argument("--load-gen", required=True)
    ap.add_argument("--seconds", type=float, default=8)
    ap.add_argument("--loads", default="0.5,0.8,0.95,1.2")
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--input", type=int, default=512)
    ap.add_argument("--threads-per-instance", type=int, default=1)
    ap.add_argument("--out", default=os.path.join(HERE, "results", "serve_load.json"))
    args = ap.parse_args()
    ds_bin = os.path.join(args.build, "ds")
    work = tempfile.mkdtemp(prefix="ds_serve_load_")
    model = os.path.join(work, "model")
    sh([args.load_gen, "make-model", model, "--in", str(args.input), "--hidden", str(args.hidden),
        "--layers", str(args.layers)])
    env = dict(os.environ, DS_NUM_THREADS=str(args.threads_per_instance))
    t = json.loads(sh([args.load_gen, "calibrate", model], env=env).strip().splitlines()[-1])
    t1 = t["1"]
    capacity = 2 * 1e6 / t1  # two instances without batching
    high_timeout = int(20 * t1)
    print(f"t(b) us, {args.threads_per_instance} thread(s): {t}")
    print(f"no-batching capacity {capacity:.0f} req/s; high-priority deadline {high_timeout} us")
    base = {"max_queue_delay_us": 0, "instance_count": 2, "max_queue_size": 4096}
    repos = {}
    for name, cfg in {"ours": dict(base, max_batch_size=16, priority_levels=2, default_priority=2),
                      "a": dict(base, max_batch_size=1, priority_levels=1, instance_count=1),
                      "b": dict(base, max_batch_size=16, priority_levels=1)}.items():
        repos[name] = os.path.join(work, name)
        write_repo(repos[name], model, cfg)
    results = {"t_us": t, "capacity_rps": capacity, "high_timeout_us": high_timeout, "loads": {}}
    port = 18100
    for load in [float(x) for x in args.loads.split(",")]:
        rate = load * capacity
        case = {}
        case["ours"] = run_case(args, ds_bin, repos["ours"], 1, 2, rate, True, high_timeout, port)
        case["a"] = run_case(args, ds_bin, repos["a"], 2, 1, rate, False, high_timeout, port + 10)
        case["b"] = run_case(args, ds_bin, repos["b"], 1, 2, rate, False, high_timeout, port + 20)
        port += 30
        results["loads"][str(load)] = case
        print(f"\nload {load} ({rate:.0f} req/s offered)")
        print(f"{'config':6} {'class':5} {'p50_us':>9} {'p99_us':>10} {'req/s':>8} {'reject':>7} {'batch':>6}")
        for cfg in ("ours", "a", "b"):
            r = case[cfg]
            for cls in ("high", "low"):
                c = r[cls]
                print(f"{cfg:6} {cls:5} {c['p50_us']:9.0f} {c['p99_us']:10.0f} {c['throughput']:8.1f} "
                      f"{c['rejected']:7d} {r['avg_batch']:6.2f}")
        sys.stdout.flush()
    print("\ncase | ours | peer (a) | ratio")
    for load, case in results["loads"].items():
        o, a = case["ours"], case["a"]
        hp = o["high"]["p99_us"] / a["high"]["p99_us"] if a["high"]["p99_us"] else float("nan")
        lt = o["low"]["throughput"] / a["low"]["throughput"] if a["low"]["throughput"] else float("nan")
        print(f"load {load} high p99 us | {o['high']['p99_us']:.0f} | {a['high']['p99_us']:.0f} | {hp:.2f}")
        print(f"load {load} low req/s | {o['low']['throughput']:.1f} | {a['low']['throughput']:.1f} | {lt:.2f}")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    results["machine"] = os.uname().nodename + " " + str(os.cpu_count()) + " cpus"
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
