"""ds.models: the Python API here; against PyTorch with the same weights in
models_torch_cases.py, run in a subprocess of an interpreter that imports torch (this one
if it can, else Debian's /usr/bin/python3 with python3-torch)."""
import os
import subprocess
import sys

import numpy as np
import pytest

import deepseek as ds

HERE = os.path.dirname(os.path.abspath(__file__))
CASES = os.path.join(HERE, "models_torch_cases.py")


# ---- in-process: the Python API, no torch needed

def tiny_config(**kw):
    return ds.models.GPTConfig(**{**dict(block_size=16, vocab_size=40, n_layer=2, n_head=2,
                                         n_embd=16), **kw})


def test_resnet_parameter_counts_and_names():
    r18 = ds.models.resnet18()
    assert sum(int(np.prod(p.shape)) for p in r18.parameters()) == 11_689_512
    sd = r18.state_dict()
    assert tuple(sd["layer2.0.downsample.0.weight"].shape) == (128, 64, 1, 1)
    assert tuple(sd["fc.weight"].shape) == (1000, 512)
    assert r18.block == "BasicBlock" and r18.blocks_per_stage == [2, 2, 2, 2]
    r50 = ds.models.resnet50(num_classes=10)
    assert r50.block == "Bottleneck"
    assert tuple(r50.state_dict()["layer4.2.conv3.weight"].shape) == (2048, 512, 1, 1)


def test_gpt_config_and_forward():
    cfg = tiny_config()
    assert (cfg.block_size, cfg.vocab_size, cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.bias) == \
        (16, 40, 2, 2, 16, True)
    g = ds.models.gpt2(cfg)
    assert g.config.n_embd == 16
    # 12 * n_embd^2 + 13 * n_embd per block, ln_f, the token table; wpe left out.
    assert g.num_params() == 2 * (12 * 16 * 16 + 13 * 16) + 2 * 16 + 40 * 16
    assert g.num_params(non_embedding=False) == g.num_params() + 16 * 16
    idx = np.random.default_rng(0).integers(0, 40, size=(3, 7))
    assert tuple(g(idx).shape) == (3, 7, 40)
    with pytest.raises(ds.ShapeError, match="block_size"):
        g(np.zeros((1, 17), dtype=np.int64))
    with pytest.raises(ds.Error, match="divisible"):
        ds.models.GPT(tiny_config(n_head=3))


def test_load_state_dict_from_safetensors(tmp_path):
    ds.nn.manual_seed(1)
    src, dst = ds.models.gpt2(tiny_config()), ds.models.gpt2(tiny_config())
    state = src.state_dict()
    state["lm_head.weight"] = state["transformer.wte.weight"]  # as nanoGPT saves it
    path = str(tmp_path / "gpt.safetensors")
    ds.save_safetensors(path, state)
    ds.models.load_torch_state_dict(dst, path)
    idx = np.arange(10).reshape(2, 5)
    np.testing.assert_array_equal(dst(idx).numpy(), src(idx).numpy())
    state["lm_head.weight"] = np.zeros((40, 16), dtype=np.float32)
    with pytest.raises(ds.Error, match="lm_head.weight differs"):
        ds.models.load_torch_state_dict(dst, state)


def test_one_compiled_graph_serves_every_batch_size():
    g = ds.models.gpt2(tiny_config())
    r = ds.models.resnet18(num_classes=5).eval()
    for model, make in [(g, lambda b: np.random.default_rng(b).integers(0, 40, size=(b, 9))),
                        (r, lambda b: np.random.default_rng(b).standard_normal(
                            (b, 3, 32, 32)).astype(np.float32))]:
        fn = ds.compile(lambda x, model=model: model(x), target="cpu", symbolic_batch=True)
        for batch in (1, 3):
            x = make(batch)
            np.testing.assert_allclose(fn(ds.Tensor(x)).numpy(), model(x).numpy(),
                                       rtol=1e-5, atol=1e-5)
        assert fn.compilations == 1


def test_gpt_trains_on_a_fixed_batch():
    ds.nn.manual_seed(2)
    g = ds.models.gpt2(tiny_config())
    step = ds.optim.TrainStep(g, ds.optim.AdamW(lr=1e-2, weight_decay=0.0), ds.models.lm_loss)
    tokens = np.random.default_rng(3).integers(0, 40, size=(4, 13))
    x, y = tokens[:, :-1].copy(), tokens[:, 1:].copy()
    first = float(step.step(x, y)[0].item())
    for _ in range(20):
        last = float(step.step(x, y)[0].item())
    assert last < 0.5 * first


# ---- against PyTorch (models_torch_cases.py, in a subprocess that imports torch)

def _env():
    package_root = os.path.dirname(os.path.dirname(ds.__file__))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([package_root, HERE, env.get("PYTHONPATH", "")])
    env.setdefault("DS_NUM_THREADS", "2")
    return env


def _torch_python():
    for python in (sys.executable, "/usr/bin/python3"):
        if os.path.exists(python) and subprocess.run(
                [python, "-c", "import torch, deepseek"], env=_env(),
                capture_output=True).returncode == 0:
            return python
    return None


TORCH_PYTHON = _torch_python()


@pytest.mark.skipif(TORCH_PYTHON is None,
                    reason="no interpreter here imports torch together with this deepseek "
                           "build (apt-get install python3-torch)")
@pytest.mark.parametrize("case", ["state_dict_keys", "resnet18_eval", "resnet50_eval",
                                  "resnet18_train_mode", "gpt_forward", "gpt_sgd_step"])
def test_models_match_pytorch(case):
    run = subprocess.run([TORCH_PYTHON, CASES, case], env=_env(),
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, f"{case} failed:\n{run.stdout}\n{run.stderr}"
    assert run.stdout.rstrip().endswith("ok"), run.stdout
