"""ds.optim.TrainStep(memory_budget=...): a batch over the budget runs as micro-batches
with gradient accumulation and one update, equal to the whole batch."""
import numpy as np
import pytest

import deepseek as ds

F = ds.nn.functional


def mlp(seed):
    ds.nn.manual_seed(seed)
    return ds.nn.Sequential(ds.nn.Linear(20, 64), ds.nn.ReLU(), ds.nn.Linear(64, 64), ds.nn.ReLU(),
                            ds.nn.Linear(64, 5))


def batch(rng, n=48):
    return (rng.standard_normal((n, 20)).astype(np.float32),
            rng.integers(0, 5, size=n).astype(np.int64))


def splitting_budget(make_opt, x, y):
    """The largest budget (stepping down from 1 MiB by 15%) under which the batch is split;
    budgets below what the optimizer update alone needs are refused on the way."""
    budget = 1 << 20
    while budget > 1 << 10:
        step = ds.optim.TrainStep(mlp(0), make_opt(), F.cross_entropy, memory_budget=budget)
        try:
            if step.micro_batch_size(x, y) < x.shape[0]:
                return budget
        except ValueError as e:
            assert "the optimizer update alone needs" in str(e), e
        budget = int(budget * 0.85)
    raise AssertionError("no budget split the batch")


@pytest.mark.parametrize("make_opt", [lambda: ds.optim.SGD(lr=0.05, momentum=0.9),
                                      lambda: ds.optim.Adam(lr=1e-2)], ids=["sgd", "adam"])
def test_micro_batches_match_the_whole_batch(rng, make_opt):
    x, y = batch(rng)
    budget = splitting_budget(make_opt, x, y)
    whole, split = mlp(1), mlp(1)
    step_whole = ds.optim.TrainStep(whole, make_opt(), F.cross_entropy)
    step_split = ds.optim.TrainStep(split, make_opt(), F.cross_entropy, memory_budget=budget)
    micro = step_split.micro_batch_size(x, y)
    assert 1 <= micro < 48 and 48 % micro == 0
    for _ in range(4):
        a, out_a = step_whole.step(x, y)
        b, out_b = step_split.step(x, y)
        assert b.item() == pytest.approx(a.item(), rel=1e-5)
        np.testing.assert_allclose(np.asarray(out_b), np.asarray(out_a), rtol=1e-4, atol=1e-5)
    want = whole.state_dict()
    for name, value in split.state_dict().items():
        np.testing.assert_allclose(np.asarray(value), np.asarray(want[name]), rtol=1e-4, atol=1e-5,
                                   err_msg=name)


def test_a_single_sample_over_the_budget_is_refused_with_need_and_budget(rng):
    x, y = batch(rng)
    step = ds.optim.TrainStep(mlp(2), ds.optim.SGD(lr=0.1), F.cross_entropy, memory_budget=512)
    with pytest.raises(ValueError, match=r"needs \d+ bytes, over the memory_budget of 512 bytes; "
                                         r"even a micro-batch of 1 sample needs \d+ bytes"):
        step.micro_batch_size(x, y)
