"""``--precompile``: the graphs of the run compiled before its first step.

:class:`PrecompileHook` (priority 20, after the resume and before the logger's ``training ...``
line): compiles the train step of every input size the run will meet (:func:`run_sizes`), the
EMA update and the evaluation forward, one log line each, so that the steps time evenly.
"""
import time
from pathlib import Path

import numpy as np
from mindspore import Tensor

from .base import TrainHook
from .evaluation import eval_network

__all__ = ["compile_notice", "PrecompileHook", "run_sizes", "example_batch", "precompile"]


def run_sizes(tr):
    """The input sizes ``(h, w)`` of the steps trainer ``tr`` will run in this process (from the
    start or resume position to the schedule's end, or to ``max_iters``), in first-use order."""
    spe, interval = tr.steps_per_epoch, tr.loader.interval
    start = tr.start_epoch * spe + tr.start_iter
    end = tr.max_epoch * spe
    if tr.max_iters is not None:
        end = min(end, start + int(tr.max_iters))
    sizes = []
    for k in list(range(start - start % interval, end, interval)) + [start]:
        size = tr.loader.size_at(k)
        if max(k, start) < end and size not in sizes:
            sizes.append(size)
    return sizes


def example_batch(tr, size):
    """Zero tensors shaped and typed as what the feeder hands the step for multiscale ``size``
    (:class:`~mindyolox.training.feeder.StepFeeder`): images uint8 ``[B, 3, h, w]`` with ``(h,
    w)`` = ``loader.batch_hw(size)`` (the recipe's input size when the step graph resizes the
    batch, else ``size``); labels float32 ``[B, max_labels, 5]``; and ``size`` itself (a graph
    constant). A compile keys on shapes, dtypes and constants only, not on values."""
    b = tr.per_device_batch
    hw = tr.loader.batch_hw(size)
    return (Tensor(np.zeros((b, 3) + hw, np.uint8)),
            Tensor(np.zeros((b, int(tr.cfg.data.max_labels), 5), np.float32)),
            (int(size[0]), int(size[1])))


def compile_notice(size, seen, cache_path=None, ema_graph=True):
    """The line said before the first step of an input size ``(h, w)``, which compiles its graph
    in silence: what compiles and roughly how long (``seen``: input size -> seconds of the sizes
    compiled so far; ``cache_path``: the run's compile-cache folder, or None; ``ema_graph``: the
    EMA update compiles with the first size -- not with the CPU kernels)."""
    what = f"compiling the train step for input {size[0]}x{size[1]}"
    if seen:
        return f"{what} (a new input size: about as long as the first, {max(seen.values()):.0f} s)"
    what += " (with the EMA update)" if ema_graph else ""
    line = (f"{what}: one graph per input size, about 10-20 s for yolox-nano on a 2-core CPU, minutes for the "
            "larger models; nothing is printed meanwhile")
    if cache_path is not None and any(Path(cache_path).rglob("*.mindir")):
        line += f"; a few seconds when the compile cache ({cache_path}) holds it"
    return line


def precompile(tr, sizes, batch_of):
    """Compile, before the first step, the train-step graph of every size in ``sizes``, the
    EMA-update graph and the evaluation forward of trainer ``tr``, one log line per graph with
    its time (``batch_of(size)``: the example inputs of a size, :func:`example_batch`; with the
    CPU kernels the EMA has no graph, :mod:`~mindyolox.training.ema`). They
    compile in the order a run without it meets them (first size, EMA, the other sizes,
    evaluation); ``tr.sizes_seen`` gets each size's seconds, ``tr.timing["compile_s"]`` the total.

    Nothing runs: ``nn.Cell.compile(*args)`` builds and caches the graph for the inputs' shapes
    and dtypes and returns (``mindspore/nn/cell.py:1769-1784``); a later call compiles through
    the same ``Cell.compile`` (``compile_and_run``, ``cell.py:1786-1800``), whose
    ``_CellGraphExecutor.compile`` keys the graph on the cell and the arguments' shapes and
    dtypes (``generate_arguments_key``, ``mindspore/graph/api.py:2311``) and returns the cached
    graph when that key was compiled (``api.py:2333-2339``). So no parameter, optimizer, EMA,
    loss-scale, step-counter or statistics value changes (``tests/test_precompile.py``,
    ``tests/test_resume.py``: the weights bit for bit against a run without it). The example
    batch must keep the dtypes the feeder hands the step, or the real first step compiles once
    more (``step.compiled_graphs`` would show it).
    """
    t_all = time.perf_counter()
    ema_graph = tr.step.ema_graph
    for i, size in enumerate(sizes):
        t0 = time.perf_counter()
        tr.step.compile(*batch_of(size))
        tr.sizes_seen[size] = time.perf_counter() - t0
        tr.log(f"precompile {i + 1}/{len(sizes)}: train step {size[0]}x{size[1]} in {tr.sizes_seen[size]:.1f} s")
        if i == 0 and ema_graph:  # the order a run without precompile meets them in
            t0 = time.perf_counter()
            tr.step.ema.compile(tr.step.applied)
            tr.log(f"precompile: EMA update in {time.perf_counter() - t0:.1f} s")
    if tr.evaluator is not None:
        model = eval_network(tr)   # the network evaluations run (BN folded)
        ld = tr.evaluator.loader
        size = tuple(ld.source.test_size)
        was_training = model.training
        t0 = time.perf_counter()
        model.set_train(False)
        try:
            model.compile(Tensor(np.zeros((ld.batch_size, 3) + size, np.float32)))
        finally:
            model.set_train(was_training)
        tr.log(f"precompile: evaluation forward {size[0]}x{size[1]} in {time.perf_counter() - t0:.1f} s")
    spent = time.perf_counter() - t_all
    tr.timing["compile_s"] += spent
    tr.log(f"precompiled {len(sizes)} train-step size(s){' + EMA' if ema_graph else ''}"
           f"{' + evaluation' if tr.evaluator is not None else ''} in {spent:.1f} s")


class PrecompileHook(TrainHook):
    """``before_train`` with ``Trainer(precompile=True)``: :func:`precompile` of :func:`run_sizes`."""

    priority = 20

    def before_train(self, trainer):
        if trainer.precompile_sizes:
            precompile(trainer, run_sizes(trainer), lambda size: example_batch(trainer, size))
