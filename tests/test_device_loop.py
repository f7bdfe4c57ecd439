"""The device-resident loop: the lr computed in the graph equals the host schedule at every
step; chunked runs (K steps per host call, loss summed on the device, one read per log
line) give the losses of the per-step loop; a resumed stream starts at its first unconsumed
batch. The data-sink feeder: tests/test_sink_pipeline.py."""
import json

import numpy as np
import pytest
from mindspore import Tensor

from mindyolox.data.loader import create_train_loader
from mindyolox.training.ema import ModelEMA
from mindyolox.training.lr import LRSchedule
from mindyolox.training.optimizer import SGD, param_groups
from mindyolox.training.train_step import TrainStep

from .test_train import _Tiny, _TinyLoss, coco16_cfg
from .train_subprocess import train_in_subprocess


@pytest.mark.parametrize("name", ["yoloxwarmcos", "warmcos", "cos"])
def test_graph_lr_equals_host_schedule_every_step(name):
    sched = LRSchedule(name, 0.02, iters_per_epoch=5, max_epoch=8, warmup_epochs=2, warmup_lr=0.001,
                       no_aug_epochs=2, min_lr_ratio=0.05)
    model = _Tiny()
    model.set_train(True)
    decay, no_decay = param_groups(model)
    opt = SGD(decay + no_decay, [True] * len(decay) + [False] * len(no_decay))
    step = TrainStep(_TinyLoss(model), opt, ModelEMA(model, _Tiny()), lr_schedule=sched)
    x = Tensor(np.random.default_rng(0).normal(size=(2, 2, 4, 4)).astype(np.float32))
    y = Tensor(np.ones((2, 3, 4, 4), np.float32))
    got = [float(step(x, y)[8].asnumpy()) for _ in range(sched.total_iters)]
    want = [sched(k) for k in range(sched.total_iters)]
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-9)
    stats = step.read_stats()
    assert stats["steps"] == sched.total_iters and float(step.stats.asnumpy()[7]) == 0.0  # read resets
    step.set_global_step(17)  # resuming sets the counter once
    assert float(step(x, y)[8].asnumpy()) == pytest.approx(sched(17), rel=2e-6)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("ms_compile_cache_loop")


def _records(run):
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()
            if json.loads(x)["type"] == "train"]


@pytest.mark.slow
def test_chunked_loop_gives_the_per_step_losses(tmp_path, cache):
    runs = {}
    for pi in (1, 10):  # print_interval 1: a read per step; 10: chunks of 10, one read each
        # each run in a fresh process (tests/train_subprocess.py), the second loading the first's
        # graphs: print_interval never reaches a graph (it only sets the host's chunk length,
        # mindyolox/training/trainer.py _chunk_length), so both runs compile the same train step
        tr = train_in_subprocess(dict(cfg_args=[f"train.print_interval={pi}", "train.no_aug_epochs=1"],
                                      cfg_kwargs=dict(max_epoch=5), trainer=dict(
                                          run_dir=tmp_path / f"p{pi}", max_iters=30, num_workers=0, progress=False,
                                          evaluate=False, compile_cache=None)), tmp_path / "spec", ms_cache=cache)
        assert tr["status"] == "stopped"
        runs[pi] = tr
    per_step, chunked = _records(tmp_path / "p1"), _records(tmp_path / "p10")
    assert [r["step"] for r in per_step] == list(range(30))
    # coco16 / batch 2 = 8 steps per epoch: a log line at each epoch end and at the stop
    # (chunks also end at steps 9 and 19, the 10-step size blocks, without a read)
    # official 0.3.0: the L1 term (and no mosaic) in the last no_aug_epochs + 1 = 2 of 5 epochs
    assert all(r["l1"] == 0 for r in per_step[:24]) and all(r["l1"] > 0 for r in per_step[24:])
    ends = [r["step"] for r in chunked]
    assert ends == [7, 15, 23, 29]
    start = 0
    for r in chunked:
        window = per_step[start:r["step"] + 1]
        assert r["steps"] == len(window)
        for term in ("total", "iou", "obj", "cls", "num_fg"):
            assert r[term] == pytest.approx(np.mean([w[term] for w in window]), rel=1e-4, abs=1e-6), (term, ends)
        start = r["step"] + 1
    # host round trips: one read per log line (+ one sync timing the compile), no lr sets
    assert runs[10]["host_reads"] == len(chunked) + 1
    assert runs[1]["host_reads"] >= 30


def test_resumed_stream_starts_at_the_first_unconsumed_batch():
    cfg = coco16_cfg(size=96)
    full = list(create_train_loader(cfg.data, cfg.aug, cfg.train, num_workers=0, start_epoch=1, end_epoch=2)
                .ms_dataset.create_tuple_iterator(num_epochs=1, output_numpy=True))
    resumed = list(create_train_loader(cfg.data, cfg.aug, cfg.train, num_workers=0, start_epoch=1, start_iter=3,
                                       end_epoch=2).ms_dataset.create_tuple_iterator(num_epochs=1, output_numpy=True))
    assert len(resumed) == len(full) - 3
    for (a, la), (b, lb) in zip(full[3:], resumed):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(la, lb)
    assert np.abs(resumed[0][0]).max() > 0  # a real batch, not a blank placeholder
