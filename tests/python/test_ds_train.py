"""The `ds train` command: flags, errors, a short run and its checkpoint."""
import os
import subprocess

import pytest

import deepseek as ds

DS = os.path.join(os.environ.get("DS_BUILD_DIR", "build"), "ds")
DATA = "/usr/share/datasets/fashion-mnist"

pytestmark = pytest.mark.skipif(not os.path.exists(DS), reason=f"no ds binary at {DS}")


def ds_train(*args):
    return subprocess.run([DS, "train", *args], capture_output=True, text=True, timeout=600)


def test_missing_data_names_the_debian_package(tmp_path):
    r = ds_train("--data-dir", str(tmp_path / "nowhere"), "--out", "")
    assert r.returncode == 1
    assert "apt-get install dataset-fashion-mnist" in r.stderr


def test_unsupported_precision_and_bad_flags_are_refused():
    r = ds_train("--precision", "fp8")
    assert r.returncode == 1 and "--precision must be fp32, bf16 or fp16, got 'fp8'" in r.stderr
    r = ds_train("--epochs", "zero")
    assert r.returncode == 1 and "--epochs expects an integer >= 1" in r.stderr
    r = ds_train("--frobnicate", "1")
    assert r.returncode == 1 and "unknown option '--frobnicate'" in r.stderr


@pytest.mark.skipif(not os.path.isdir(DATA), reason="dataset-fashion-mnist is not installed")
def test_short_run_reports_progress_and_writes_a_loadable_checkpoint(tmp_path):
    out = tmp_path / "cnn.safetensors"
    r = ds_train("--epochs", "1", "--max-steps", "3", "--batch-size", "32", "--threads", "2",
                 "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "epoch 1/1" in r.stdout and "test acc" in r.stdout
    assert "steady throughput" in r.stdout
    weights = ds.load_safetensors(str(out))
    assert weights["0.weight"].shape == (32, 1, 3, 3)
    assert weights["7.weight"].shape == (128, 3136)
    assert ds.load_safetensors_metadata(str(out))["steps"] == "3"
