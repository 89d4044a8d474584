"""ds.from_torch against real PyTorch (from_torch_cases.py holds the models and the
comparisons; tolerance there: 1e-5 relative, 1e-5 x max|torch| absolute, float32).

Each case runs in a subprocess of an interpreter that imports torch: this one if it can,
else /usr/bin/python3 (Debian's python3-torch, the peer; same CPython 3.11 ABI as the
deepseek module built here). Without either, the cases skip and say why."""
import os
import subprocess
import sys

import pytest

import deepseek as ds

CASES = os.path.join(os.path.dirname(__file__), "from_torch_cases.py")


def _can_import_torch(python) -> bool:
    probe = "import torch, torch.fx, deepseek"
    return subprocess.run([python, "-c", probe], env=_env(), capture_output=True).returncode == 0


def _env():
    # The subprocess imports this same deepseek build.
    package_root = os.path.dirname(os.path.dirname(ds.__file__))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([package_root, env.get("PYTHONPATH", "")])
    env.setdefault("DS_NUM_THREADS", "2")
    return env


def _torch_python():
    for python in (sys.executable, "/usr/bin/python3"):
        if os.path.exists(python) and _can_import_torch(python):
            return python
    return None


TORCH_PYTHON = _torch_python()


@pytest.mark.skipif(TORCH_PYTHON is None,
                    reason="no interpreter here imports torch together with this deepseek "
                           "build (apt-get install python3-torch)")
@pytest.mark.parametrize("case", ["mlp", "cnn", "resnet18", "transformer", "multihead_attention",
                                  "functional", "more_layers", "dynamic_batch",
                                  "unsupported"])
def test_from_torch_matches_pytorch(case):
    run = subprocess.run([TORCH_PYTHON, CASES, case], env=_env(), capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, f"{case} failed:\n{run.stdout}\n{run.stderr}"
    assert run.stdout.rstrip().endswith("ok")
