"""``--precompile`` (issue 24, deliverable 9): :func:`~mindyolox.training.hooks.precompile.precompile` compiles the train
step of every input size, the EMA update and the evaluation forward before step 1, one log
line each, changes no state, and the steps then find those graphs: training is bit for bit
the run without it. Here on a small step (a conv + BN model, the real ``TrainStep`` and
``ModelEMA``) at two input sizes; ``tests/test_resume.py`` runs the real trainer with
``precompile=True`` (nano, coco16) against the same run without it.
"""
import types

import mindspore as ms
import numpy as np
from mindspore import Tensor, nn

from mindyolox.data.loader import Loader, TrainSource, multiscale_range
from mindyolox.training.ema import ModelEMA
from mindyolox.training.optimizer import SGD, param_groups
from mindyolox.training.train_step import TrainStep
from mindyolox.training.hooks.precompile import precompile, run_sizes

from .test_train import _Tiny, _TinyLoss, coco16_cfg

SIZES = [(16, 16), (24, 24)]


class _EvalNet(nn.Cell):
    """Stands in for the EMA model's evaluation forward: float32 ``[B, 3, H, W]`` in."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, pad_mode="pad", padding=1)
        self.bn = nn.BatchNorm2d(4)

    def construct(self, x):
        return self.bn(self.conv(x))


def _step():
    ms.set_seed(3)  # the same initial weights for every step built here
    model = _Tiny()
    model.set_train(True)
    decay, no_decay = param_groups(model)
    opt = SGD(decay + no_decay, [True] * len(decay) + [False] * len(no_decay))
    step = TrainStep(_TinyLoss(model), opt, ModelEMA(model, _Tiny()))
    step.set_lr(0.05)
    return step


def _batch(size, seed=0):
    rng = np.random.default_rng(seed)
    return (Tensor(rng.normal(size=(2, 2) + size).astype(np.float32)),
            Tensor(rng.uniform(size=(2, 3) + size).astype(np.float32)))


def _stub(step, eval_net):
    """The trainer fields :func:`precompile` reads, around ``step``."""
    t = types.SimpleNamespace(step=step, sizes_seen={}, timing={"compile_s": 0.0}, lines=[], ema_model=eval_net,
                              model=None, cfg=None, run_sizes=lambda: list(SIZES),
                              options=types.SimpleNamespace(fold_bn=False),  # no YOLOX here: no folded copy
                              _example_batch=lambda size: tuple(Tensor(np.zeros(x.shape, np.float32))
                                                                for x in _batch(size)),
                              evaluator=types.SimpleNamespace(loader=types.SimpleNamespace(
                                  batch_size=2, source=types.SimpleNamespace(test_size=(16, 16)))))
    t.log = t.lines.append
    return t


def _state(step):
    return {p.name: p.asnumpy().copy() for p in step.get_parameters()}


def test_precompile_compiles_each_size_ema_and_eval_and_changes_nothing():
    plain, pre, eval_net = _step(), _step(), _EvalNet()
    before = _state(pre)
    stub = _stub(pre, eval_net)
    precompile(stub, stub.run_sizes(), stub._example_batch)
    assert [x.split(" in ")[0] for x in stub.lines] == [
        "precompile 1/2: train step 16x16", "precompile: EMA update", "precompile 2/2: train step 24x24",
        "precompile: evaluation forward 16x16", "precompiled 2 train-step size(s) + EMA + evaluation"]
    assert set(stub.sizes_seen) == set(SIZES) and stub.timing["compile_s"] > 0
    assert pre.compiled_graphs == 2 and len(pre.ema.compile_cache) == 1 and len(eval_net.compile_cache) == 1
    after = _state(pre)
    assert after.keys() == before.keys() and len(after) > 10
    for k in before:  # nothing ran: weights, EMA, momentum, loss scale, counters, stats as they were
        np.testing.assert_array_equal(after[k], before[k], err_msg=k)
    # the steps find the precompiled graphs (no new compile) and train exactly as without
    for k in range(6):
        for st in (plain, pre):
            st(*_batch(SIZES[(k // 2) % 2], seed=k))
    assert pre.compiled_graphs == 2 == plain.compiled_graphs and len(pre.ema.compile_cache) == 1
    a, b = _state(plain), _state(pre)
    assert any(not np.array_equal(a[k], before[k]) for k in a)  # training changed the weights
    for k in a:
        np.testing.assert_array_equal(b[k], a[k], err_msg=k)
    eval_net.set_train(False)
    eval_net(Tensor(np.ones((2, 3, 16, 16), np.float32)))
    assert len(eval_net.compile_cache) == 1  # the evaluation forward found its graph too


def test_run_sizes_are_the_sizes_the_steps_use():
    """:func:`run_sizes` against the size of every step, from a start and a resume
    position, with and without ``max_iters`` (no model: the trainer's fields it reads)."""
    cfg = coco16_cfg("data.random_size=[3,6]", size=160)
    builder = types.SimpleNamespace(input_size=(160, 160), dataset=[None] * 16)
    src = TrainSource(builder, 2, seed=7, ms_range=multiscale_range(cfg.data), interval=10)
    spe = src.steps_per_epoch
    counts = []
    for start, max_iters in ((0, None), (13, None), (13, 25), (37, 1)):
        loader = Loader(ms_dataset=None, dataset=None, steps_per_epoch=spe, batch_size=2, events=None, source=src)
        t = types.SimpleNamespace(steps_per_epoch=spe, loader=loader, start_epoch=start // spe,
                                  start_iter=start % spe, max_epoch=10, max_iters=max_iters)
        end = 10 * spe if max_iters is None else start + max_iters
        want = []
        for k in range(start, end):
            size = src.size(k // spe, (k % spe) * 2)
            if size not in want:
                want.append(size)
        assert run_sizes(t) == want, (start, max_iters)
        counts.append(len(want))
    assert counts[0] > 2 and counts[-1] == 1  # several sizes in a whole run; one for one step


def test_compile_notice_says_what_compiles_and_how_long(tmp_path):
    """The line before a size's first step (trainer.train_chunk; the quickstart test sees it in
    the log): the first size with the expected time, the cache when it holds graphs, a later
    size with the first one's measured seconds."""
    from mindyolox.training.hooks.precompile import compile_notice
    first = compile_notice((160, 160), {}, None)
    assert first.startswith("compiling the train step for input 160x160 (with the EMA update)")
    assert "10-20 s for yolox-nano" in first and "compile cache" not in first
    assert compile_notice((160, 160), {}, None, ema_graph=False).startswith(   # CPU: the EMA is no graph
        "compiling the train step for input 160x160: one graph per input size")
    assert "compile cache" not in compile_notice((160, 160), {}, tmp_path)   # an empty cache folder
    (tmp_path / "rank_0").mkdir()
    (tmp_path / "rank_0" / "compile_cache_0.mindir").write_bytes(b"g")
    assert f"a few seconds when the compile cache ({tmp_path}) holds it" in compile_notice((160, 160), {}, tmp_path)
    later = compile_notice((192, 192), {(160, 160): 31.6}, None)
    assert later == "compiling the train step for input 192x192 (a new input size: about as long as the first, 32 s)"
