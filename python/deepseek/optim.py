"""Optimizers, learning-rate schedules and the compiled training step (C++: ds::optim).

    opt = ds.optim.Adam(lr=1e-3)
    step = ds.optim.TrainStep(model, opt, ds.nn.functional.cross_entropy)
    loss, logits = step.step(images, labels)   # forward, backward and update: one executable

``TrainStep(..., memory_budget=bytes)``: a batch whose step needs more memory runs as equal
micro-batches with gradient accumulation (weighted by rows / batch) and one optimizer
update — the whole-batch result for a mean loss. Batch norm in train mode normalizes each
micro-batch with its own statistics and moves its running statistics once per micro-batch,
as PyTorch does with gradient accumulation; ``step.micro_batch_size(x, y)`` says how the
batch was split, and a batch whose single sample does not fit is refused (need and budget
in the message) when the step compiles.
"""
from ._core.optim import (  # noqa: F401
    Adam, AdamW, CosineAnnealingLR, EvalStep, LinearWarmup, LRSchedule, OneCycleLR, Optimizer,
    SGD, StepLR, TrainStep, clip_grad_norm,
)
