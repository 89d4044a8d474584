"""Optimizers, learning-rate schedules and the compiled training step (C++: ds::optim).

    opt = ds.optim.Adam(lr=1e-3)
    step = ds.optim.TrainStep(model, opt, ds.nn.functional.cross_entropy)
    loss, logits = step.step(images, labels)   # forward, backward and update: one executable
"""
from ._core.optim import (  # noqa: F401
    Adam, AdamW, CosineAnnealingLR, EvalStep, LinearWarmup, LRSchedule, OneCycleLR, Optimizer,
    SGD, StepLR, TrainStep, clip_grad_norm,
)
