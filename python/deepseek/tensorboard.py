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

    def add_graph(self, graph):
        """Writes a ``ds.Graph`` (read from the graph itself: no tracing)."""
        self._writer.add_graph(graph)

    def flush(self):
        self._writer.flush()

    def close(self):
        self._writer.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
