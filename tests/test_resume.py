"""Exact resume: a run stopped by a real SIGTERM mid-epoch and continued with ``resume``
ends with the weights, EMA, momentum buffers and loss-scale state of an uninterrupted run,
and its iterations, LR values and losses continue the same sequence.

Three trainers in this process (nano, coco16, 160 px, batch 2, 3 epochs x 8 iterations,
the last two -- official: no_aug_epochs + 1 -- without Mosaic and with L1, so the resume
lands inside the no-aug phase): A runs through; B receives SIGTERM (sent with
``os.kill`` from a hook, so the trainer's own signal handler does the saving) in epoch 2;
C resumes B's run directory. A, B and C each run in a fresh process (tests/train_subprocess.py)
sharing one compile cache, so only A compiles from scratch (MindSpore caches graphs by their
position in a process: a second Trainer in one process compiles again).
P is A with ``precompile=True`` (issue 24, deliverable 9), in this process: its graphs
compile before step 1 and it ends bit for bit where A ends.
"""
import json
import signal

import numpy as np
import pytest
from mindspore import load_checkpoint

from mindyolox.training.checkpoint import read_meta
from mindyolox.training.trainer import Trainer

from .test_train import coco16_cfg
from .train_subprocess import train_in_subprocess

pytestmark = pytest.mark.slow  # three training runs

STOP_AT = 11  # global step after which SIGTERM arrives: epoch 2, iteration 4 of 8


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("ms_compile_cache_resume")


def _cfg():
    return coco16_cfg("train.no_aug_epochs=1", max_epoch=3)


def _train(run_dir, cache, **kw):
    tr = Trainer(_cfg(), run_dir=run_dir, num_workers=1, progress=False, evaluate=False,
                 compile_cache=cache, **kw)
    return tr, tr.train()


def _train_records(run_dir):
    recs = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in recs if r["type"] == "train"]


def _train_fresh(run_dir, cache, sigterm_at=None, **kw):
    """``_train`` in a fresh process (tests/train_subprocess.py; ``sigterm_at``: the step after
    which it sends itself SIGTERM from a hook): B and C load A's graphs from ``cache``
    there (in this process each Trainer compiled again: MindSpore caches graphs by position)."""
    return train_in_subprocess(dict(cfg_args=["train.no_aug_epochs=1"], cfg_kwargs=dict(max_epoch=3), sigterm_at=sigterm_at,
                                    trainer=dict(run_dir=run_dir, num_workers=1, progress=False, evaluate=False,
                                                 compile_cache=cache, **kw)), run_dir.parent / "spec")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, cache):
    base = tmp_path_factory.mktemp("resume")
    a = _train_fresh(base / "A", cache)
    b = _train_fresh(base / "B", cache, sigterm_at=STOP_AT)
    meta_b = read_meta(base / "B" / "last.ckpt")
    c = _train_fresh(base / "B", cache, resume=True)
    p, status_p = _train(base / "P", cache, precompile=True)  # A again, compiled before step 1
    assert status_p == "finished"
    return dict(base=base, a=a, b=b, c=c, p=p, status=(a["status"], b["status"], c["status"]), meta_b=meta_b)


def test_sigterm_saves_mid_epoch_checkpoint(runs):
    assert runs["status"] == ("finished", "interrupted", "finished")
    meta = runs["meta_b"]
    assert (meta["epoch"], meta["iter"], meta["global_step"]) == (1, 4, STOP_AT + 1)
    assert runs["b"]["sigterm_default_after"]  # handler removed after the run (in B's process)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # and after P's, in this one


def test_resumed_run_continues_iterations_lr_and_losses(runs):
    a = _train_records(runs["base"] / "A")
    bc = _train_records(runs["base"] / "B")
    assert [r["step"] for r in a] == list(range(24))
    assert [r["step"] for r in bc] == list(range(24))  # B: 0..11, C: 12..23, no gap or repeat
    for ra, rb in zip(a, bc):
        assert rb["lr"] == ra["lr"] == pytest.approx(runs["a"]["lr"][ra["step"]])
        assert rb["total"] == pytest.approx(ra["total"], rel=1e-4, abs=1e-5), ra["step"]
    assert all(r["l1"] > 0 for r in a[8:]) and all(r["l1"] == 0 for r in a[:8])


def test_resumed_weights_ema_and_optimizer_equal_uninterrupted(runs):
    ca = load_checkpoint(str(runs["base"] / "A" / "last.ckpt"))
    cb = load_checkpoint(str(runs["base"] / "B" / "last.ckpt"))
    names = [k for k in ca if k != "meta_json"]
    assert set(names) == {k for k in cb if k != "meta_json"}
    groups = {g: [k for k in names if k.startswith(g)] for g in ("model.", "ema.", "optimizer/momentum/", "state/")}
    assert all(groups.values()) and sum(map(len, groups.values())) == len(names)
    for k in names:
        x, y = ca[k].asnumpy(), cb[k].asnumpy()
        np.testing.assert_allclose(y, x, rtol=1e-4, atol=1e-6, err_msg=k)
    assert float(cb["state/ema_updates"].asnumpy()) == 24.0
    # the optimizer did work (the comparison is not between two untouched inits)
    assert np.abs(cb["optimizer/momentum/head.cls_preds.0.weight"].asnumpy()).max() > 0
    assert np.abs(cb["model.head.cls_preds.0.weight"].asnumpy() - cb["ema.head.cls_preds.0.weight"].asnumpy()).max() > 0


def test_precompiled_run_compiles_first_and_equals_the_run_without(runs):
    log = [x.split(" | ", 1)[-1] for x in (runs["base"] / "P" / "train_log.txt").read_text().splitlines()]
    start = next(i for i, x in enumerate(log) if x.startswith("training 3 epochs"))
    assert [x.split(" in ")[0] for x in log[:start] if "precompile" in x] == [
        "precompile 1/1: train step 160x160", "precompiled 1 train-step size(s)"]   # CPU: the EMA has no graph
    assert not any("compiled the train step for input" in x for x in log)  # no compile among the steps
    assert runs["p"].step.compiled_graphs == 1
    ca = load_checkpoint(str(runs["base"] / "A" / "last.ckpt"))
    cp = load_checkpoint(str(runs["base"] / "P" / "last.ckpt"))
    names = [k for k in ca if k != "meta_json"]
    assert names == [k for k in cp if k != "meta_json"]
    for k in names:  # weights, EMA, momentum, loss-scale state: bit for bit
        np.testing.assert_array_equal(cp[k].asnumpy(), ca[k].asnumpy(), err_msg=k)
