"""Trains the Fashion-MNIST CNN from Python: the same job as `ds train`.

    PYTHONPATH=build/python python3 examples/train_fashion_mnist.py --epochs 10

Each step (forward, cross-entropy, backward and the Adam update) runs as one
compiled executable (ds.optim.TrainStep); Python only feeds the batches.
"""
import argparse
import os
import time

# OpenMP inside oneDNN spins idle threads by default, which starves ds's own
# thread pool on small machines; libgomp reads this once, when deepseek loads it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402

import deepseek as ds  # noqa: E402


def fashion_cnn():
    nn = ds.nn
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(3136, 128), nn.ReLU(),
        nn.Linear(128, 10),
    )


def accuracy(logits, labels):
    return float((np.asarray(logits).argmax(1) == np.asarray(labels)).mean())


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="0: the runtime default")
    p.add_argument("--data-dir", default=ds.data.FASHION_MNIST_DIR)
    p.add_argument("--max-steps", type=int, default=0, help="stop after this many steps")
    p.add_argument("--out", default="fashion_mnist_cnn.safetensors")
    a = p.parse_args()
    if a.threads:
        ds.set_num_threads(a.threads)

    train = ds.data.fashion_mnist(a.data_dir, train=True)
    test = ds.data.fashion_mnist(a.data_dir, train=False)
    ds.nn.manual_seed(a.seed)
    model = fashion_cnn()
    step = ds.optim.TrainStep(model, ds.optim.Adam(lr=a.lr), ds.nn.functional.cross_entropy)
    evaluate = ds.optim.EvalStep(model)
    loader = ds.data.DataLoader(train, batch_size=a.batch_size, shuffle=True, seed=a.seed)

    steps = 0
    for epoch in range(1, a.epochs + 1):
        start, seen, loss_sum, correct = time.perf_counter(), 0, 0.0, 0.0
        for images, labels in loader:
            loss, logits = step.step(images, labels)
            n = labels.shape[0]
            seen += n
            loss_sum += loss.item() * n
            correct += accuracy(logits, labels) * n
            steps += 1
            if a.max_steps and steps >= a.max_steps:
                break
        secs = time.perf_counter() - start
        test_correct, test_seen = 0.0, 0
        for images, labels in ds.data.DataLoader(test, batch_size=1000):
            test_correct += accuracy(evaluate(images), labels) * labels.shape[0]
            test_seen += labels.shape[0]
        print(f"epoch {epoch}: loss {loss_sum / seen:.4f}, train acc {100 * correct / seen:.2f}%, "
              f"test acc {100 * test_correct / test_seen:.2f}%, {seen / secs:.0f} images/s")
        if a.max_steps and steps >= a.max_steps:
            break
    if a.out:
        ds.save_safetensors(a.out, model.state_dict())
        print(f"checkpoint: {a.out}")


if __name__ == "__main__":
    main()
