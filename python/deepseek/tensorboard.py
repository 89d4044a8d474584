"""TensorBoard logging without TensorFlow: ``ds.tensorboard.SummaryWriter``.

The event files are written by the native C++ writer (TFRecord framing, masked
CRC32C, a background flushing thread). Names and arguments follow
``torch.utils.tensorboard.SummaryWriter``::

    with ds.tensorboard.SummaryWriter("runs/exp1") as w:
        w.add_scalar("loss", 0.25, global_step=10)
        w.add_histogram("fc1.weight", weights, global_step=10)
        w.add_graph(graph)
"""
import datetime
import os
import socket

from ._core import Graph
from ._core import tensorboard as _tb

Histogram = _tb.Histogram


def _step(global_step):
    return 0 if global_step is None else int(global_step)


class SummaryWriter:
    """Writes scalars, histograms, text and graphs to an event file in ``log_dir``.

    ``log_dir`` defaults to ``runs/<date>_<time>_<host><comment>``. ``purge_step``
    resumes a run: events from earlier runs at steps >= ``purge_step`` are hidden.
    """

    def __init__(self, log_dir=None, comment="", purge_step=None, max_queue=10,
                 flush_secs=120, filename_suffix=""):
        if log_dir is None:
            stamp = datetime.datetime.now().strftime("%b%d_%H-%M-%S")
            log_dir = os.path.join("runs", f"{stamp}_{socket.gethostname()}{comment}")
        self._writer = _tb.SummaryWriter(os.fspath(log_dir), flush_secs=float(flush_secs),
                                         max_queue=int(max_queue),
                                         filename_suffix=filename_suffix, purge_step=purge_step)

    @property
    def log_dir(self):
        return self._writer.logdir

    def get_logdir(self):
        return self._writer.logdir

    @property
    def file_path(self):
        """The event file this writer appends to."""
        return self._writer.file_path

    def add_scalar(self, tag, scalar_value, global_step=None, walltime=None):
        self._writer.add_scalar(tag, float(scalar_value), _step(global_step), walltime)

    def add_scalars(self, main_tag, tag_scalar_dict, global_step=None, walltime=None):
        """One run per key (sub-directory ``<log_dir>/<main_tag>_<key>``), one chart."""
        values = {str(k): float(v) for k, v in tag_scalar_dict.items()}
        self._writer.add_scalars(main_tag, values, _step(global_step), walltime)

    def add_histogram(self, tag, values, global_step=None, bins="tensorflow", walltime=None):
        """``values``: a ds.Tensor, numpy array or list (or a ``Histogram``)."""
        if bins != "tensorflow":
            raise ValueError(f"add_histogram: bins={bins!r} is not supported; "
                             "only TensorBoard's default 'tensorflow' buckets are")
        self._writer.add_histogram(tag, values, _step(global_step), walltime)

    def add_text(self, tag, text_string, global_step=None, walltime=None):
        self._writer.add_text(tag, str(text_string), _step(global_step), walltime)

    def add_graph(self, model, input_to_model=None):
        """Writes a ``ds.Graph``, or the graph of a ``ds.nn`` model.

        A model's forward runs once on a symbolic input described by
        ``input_to_model``: an example array or tensor (its shape and dtype), or
        a shape with None for symbolic extents (float32). Ops that read a
        parameter are grouped under their module's name.
        """
        if isinstance(model, Graph):
            self._writer.add_graph(model)
            return
        if input_to_model is None:
            raise ValueError("add_graph: a model needs input_to_model (an example input, "
                             "or its shape with None for the batch)")
        if hasattr(input_to_model, "shape") and hasattr(input_to_model, "dtype"):
            shape, dtype = tuple(input_to_model.shape), str(input_to_model.dtype)
        else:
            shape, dtype = tuple(input_to_model), "float32"
        self._writer.add_module_graph(model, shape, dtype)

    def flush(self):
        self._writer.flush()

    def close(self):
        self._writer.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
