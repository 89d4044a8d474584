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
import weakref

from ._core import optim as _core_optim
from ._core.optim import (  # noqa: F401
    Adam, AdamW, CosineAnnealingLR, LinearWarmup, LRSchedule, OneCycleLR, Optimizer, SGD, StepLR,
    clip_grad_norm,
)


class TrainStep(_core_optim.TrainStep):
    __doc__ = _core_optim.TrainStep.__doc__

    def __init__(self, model, optimizer, loss_fn, *args, **kwargs):
        # The C++ step refers to the model, the optimizer and the loss; attributes keep
        # them alive where the garbage collector sees the references (a model class or a
        # loss lambda defined in __main__ forms a cycle with its globals, which must stay
        # collectable at exit). C++ holds only `call`, which reaches the loss weakly.
        this = weakref.ref(self)

        def call(output, target):
            return this()._loss_fn(output, target)

        super().__init__(model, optimizer, call, *args, **kwargs)
        self._model, self._optimizer, self._loss_fn = model, optimizer, loss_fn


class EvalStep(_core_optim.EvalStep):
    __doc__ = _core_optim.EvalStep.__doc__

    def __init__(self, model, *args, **kwargs):
        super().__init__(model, *args, **kwargs)
        self._model = model
