"""``--precompile`` (issue 24, deliverable 9): every input size's train step, the EMA update
and the evaluation forward compile before step 1, one log line each, and training is bit for
bit the run without it.

Two trainers in this process (nano, coco16, multiscale: 160 px for steps 0-9, then 128 px;
batch 2, 12 steps, evaluation built but not due), sharing one compile cache, so the graphs
compile once: ``plain`` without, ``pre`` with ``precompile=True``.
"""
import types

import numpy as np
import pytest
from mindspore import load_checkpoint

from mindyolox.data.loader import TrainSource, multiscale_range
from mindyolox.engine.trainer import Trainer

from .test_train import coco16_cfg

STEPS = 12


def _cfg():
    # random_size [4, 4]: step 0-9 at the input size 160, then 128; no evaluation due in 12 steps
    return coco16_cfg("data.random_size=[4,4]", "train.no_aug_epochs=0", "train.print_interval=4", max_epoch=3)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    cache = tmp_path_factory.mktemp("ms_compile_cache_precompile")
    base = tmp_path_factory.mktemp("precompile")
    out = {}
    for name, pre in (("plain", False), ("pre", True)):
        tr = Trainer(_cfg(), run_dir=base / name, max_iters=STEPS, num_workers=0, progress=False,
                     compile_cache=cache, precompile=pre)
        assert tr.train() == "stopped"
        out[name] = tr
    return base, out


@pytest.mark.slow  # two training runs (one compile of each graph, shared through the cache)
def test_precompile_compiles_every_size_before_step_one(runs):
    base, tr = runs
    lines = [x.split(" | ", 1)[-1] for x in (base / "pre" / "train_log.txt").read_text().splitlines()]
    first_step = next(i for i, x in enumerate(lines) if x.startswith("epoch 1/3 iter"))
    pre = [x for x in lines[:first_step] if "precompile" in x]
    assert [x.split(" in ")[0] for x in pre] == [
        "precompile 1/2: train step 160x160", "precompile 2/2: train step 128x128", "precompile: EMA update",
        "precompile: evaluation forward 160x160", "precompiled 2 train-step size(s) + EMA + evaluation"]
    assert not any("compiled the train step for input" in x for x in lines)  # no compile in the steps
    assert tr["pre"].step.compiled_graphs == 2 == tr["plain"].step.compiled_graphs
    # the evaluation finds its precompiled graph
    model = tr["pre"].ema_model
    before = len(model.compile_cache)
    tr["pre"].evaluator.evaluate(model, progress=False)
    assert len(model.compile_cache) == before == 1


@pytest.mark.slow
def test_precompile_leaves_training_bit_identical(runs):
    base, _ = runs
    a = load_checkpoint(str(base / "plain" / "last.ckpt"))
    b = load_checkpoint(str(base / "pre" / "last.ckpt"))
    names = sorted(k for k in a if k != "meta_json")
    assert names == sorted(k for k in b if k != "meta_json")
    assert any(k.startswith("ema.") for k in names) and any(k.startswith("optimizer/") for k in names)
    for k in names:
        np.testing.assert_array_equal(b[k].asnumpy(), a[k].asnumpy(), err_msg=k)
    assert float(b["state/ema_updates"].asnumpy()) == STEPS


def test_run_sizes_are_the_sizes_the_steps_use():
    """:meth:`Trainer.run_sizes` against the size of every step, from a start and a resume
    position, with and without ``max_iters`` (no model: the trainer's fields it reads)."""
    cfg = coco16_cfg("data.random_size=[3,6]", size=160)
    builder = types.SimpleNamespace(input_size=(160, 160), dataset=[None] * 16)
    src = TrainSource(builder, 2, seed=7, ms_range=multiscale_range(cfg.data), interval=10)
    spe = src.steps_per_epoch
    counts = []
    for start, max_iters in ((0, None), (13, None), (13, 25), (37, 1)):
        t = types.SimpleNamespace(steps_per_epoch=spe, loader=types.SimpleNamespace(source=src),
                                  start_epoch=start // spe, start_iter=start % spe, max_epoch=10,
                                  max_iters=max_iters, interval=10, per_device_batch=2)
        end = 10 * spe if max_iters is None else start + max_iters
        want = []
        for k in range(start, end):
            size = src.size(k // spe, (k % spe) * 2)
            if size not in want:
                want.append(size)
        assert Trainer.run_sizes(t) == want, (start, max_iters)
        counts.append(len(want))
    assert counts[0] > 2 and counts[-1] == 1  # several sizes in a whole run; one for one step
