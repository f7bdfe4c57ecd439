"""Data parallel through ``msrun`` with 2 CPU workers: YOLOX-nano at 320 on coco16 for two
epochs of 4 iterations, evaluated after each on the same 16 images (3 batches of 6: an
uneven split). Both ranks end with identical weights (trainable parameters and, after the
official ``all_reduce_norm``, BN statistics), they read disjoint halves of every epoch's
permutation, both log the same AP (each evaluating its shard) with the time they waited for
the other, and only rank 0 writes the log, the metrics and the checkpoint.

Each worker runs a small driver (written to the test's tmp folder) that calls the ordinary
``Trainer(..., distributed=True)`` and, in an ``after_train`` hook, dumps its rank's state.
"""
import json
import os
import re
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from .conftest import ROOT, shared_path

pytestmark = pytest.mark.slow  # msrun with 2 workers, training

ITERS = 8  # 2 epochs

DRIVER = textwrap.dedent('''
    import sys
    import numpy as np
    import mindspore as ms
    sys.path.insert(0, {root!r})
    ms.set_device("CPU")
    ms.set_context(mode=ms.GRAPH_MODE)
    from mindyolox import load_config
    from mindyolox.training.trainer import Trainer, TrainHook

    class Dump(TrainHook):
        def after_train(self, tr):
            arrays = {{"model/" + n: p.asnumpy() for n, p in tr.model.parameters_and_names()}}
            arrays.update({{"ema/" + n: p.asnumpy() for n, p in tr.ema_model.parameters_and_names()}})
            arrays["indices_epoch0"] = np.asarray(tr.loader.source.indices(0))
            arrays["indices_epoch1"] = np.asarray(tr.loader.source.indices(1))
            np.savez({out!r} + f"/rank_{{tr.rank}}.npz", world=tr.world_size, **arrays)

    cfg = load_config({config!r}, {overrides!r})
    status = Trainer(cfg, run_dir={run!r}, distributed=True, num_workers=0, progress=False,
                     hooks=[Dump()]).train()
    print("status", status)
''')


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def dist_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dist")
    out, run, logs = tmp / "out", tmp / "run", tmp / "logs"
    out.mkdir()
    data_dir = str(shared_path("data", "coco16"))
    overrides = [f"data.data_dir={data_dir}", "data.input_size=[320,320]", "data.random_size=[]",
                 "data.multiscale_range=0", "train.batch_size=4", "train.max_epoch=2",
                 "train.warmup_epochs=1", "train.no_aug_epochs=0", "train.print_interval=1",
                 "train.eval_interval=1", "data.val_ann=annotations/instances_train2017.json",
                 "data.val_images=train2017", "data.test_size=[320,320]", "test.batch_size=6"]
    driver = tmp / "driver.py"
    driver.write_text(DRIVER.format(root=str(ROOT), config=str(ROOT / "configs" / "yolox-nano.yaml"),
                                    overrides=overrides, out=str(out), run=str(run)))
    bindir = Path(sys.executable).parent
    env = dict(os.environ, PATH=f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    cmd = [str(bindir / "msrun"), "--worker_num=2", "--local_worker_num=2", f"--master_port={_free_port()}",
           f"--log_dir={logs}", "--join=True", str(driver)]
    proc = subprocess.run(cmd, cwd=str(ROOT), env=env, capture_output=True, text=True, timeout=900)
    worker_logs = {p.name: p.read_text(errors="replace") for p in logs.glob("worker_*.log")}
    if proc.returncode != 0:
        tails = "\n".join(f"--- {k}\n" + "\n".join(v.splitlines()[-25:]) for k, v in worker_logs.items())
        pytest.fail(f"msrun failed ({proc.returncode}):\n{proc.stderr[-2000:]}\n{tails}")
    return dict(out=out, run=run, logs=worker_logs)


def test_both_ranks_end_with_identical_weights(dist_run):
    r0 = np.load(dist_run["out"] / "rank_0.npz")
    r1 = np.load(dist_run["out"] / "rank_1.npz")
    assert int(r0["world"]) == int(r1["world"]) == 2
    keys = [k for k in r0.files if k.startswith(("model/", "ema/"))]
    assert len(keys) > 500 and set(keys) == {k for k in r1.files if k.startswith(("model/", "ema/"))}
    for k in keys:
        np.testing.assert_allclose(r1[k], r0[k], rtol=1e-6, atol=1e-7, err_msg=k)
    # the EMA's BN statistics were averaged before each evaluation: one model on both shards
    assert any("ema/" in k and "moving_mean" in k for k in keys)
    # the weights were trained: after 8 (warmup, tiny-lr) steps the model has left the EMA
    assert np.abs(r0["model/head.cls_preds.0.weight"] - r0["ema/head.cls_preds.0.weight"]).max() > 0


def _eval_lines(log):
    return re.findall(r"eval epoch (\d+): AP50:95 ([\d.]+) AP50 ([\d.]+) \(best [\d.]+\) in ([\d.]+) s; "
                      r"(\d+) images on this rank, ([\d.]+) s of it waiting", log)


def test_every_rank_evaluates_its_shard_and_logs_the_same_ap(dist_run):
    r0, r1 = (_eval_lines(dist_run["logs"][f"worker_{r}.log"]) for r in (0, 1))
    assert [e[0] for e in r0] == [e[0] for e in r1] == ["1", "2"]
    assert [e[1:3] for e in r0] == [e[1:3] for e in r1]  # the same AP50:95 / AP50 on both ranks
    assert [(int(a[4]), int(b[4])) for a, b in zip(r0, r1)] == [(10, 6)] * 2  # batches 0 and 2 (6 + 4), 1 (6)
    for e in r0 + r1:  # the wait is measured and is part of the evaluation, not all of it
        assert 0.0 <= float(e[5]) < float(e[3]), e
    evals = [json.loads(x) for x in (dist_run["run"] / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in evals if r["type"] == "eval"]
    assert [r["epoch"] for r in evals] == [1, 2] and all(len(r["stats"]) == 12 and "wait_s" in r for r in evals)
    assert [f"{100 * r['AP50_95']:.2f}" for r in evals] == [e[1] for e in r0]


def test_ranks_read_disjoint_shards(dist_run):
    r0 = np.load(dist_run["out"] / "rank_0.npz")
    r1 = np.load(dist_run["out"] / "rank_1.npz")
    for key in ("indices_epoch0", "indices_epoch1"):
        a, b = set(r0[key].tolist()), set(r1[key].tolist())
        assert len(a) == len(b) == 8 and not a & b, key  # 16 images, 2 ranks
    assert r0["indices_epoch0"].tolist() != r0["indices_epoch1"].tolist()  # reshuffled per epoch


def test_only_rank_zero_logs_and_writes(dist_run):
    run = dist_run["run"]
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    best = any(r["type"] == "eval" and r["AP50_95"] > 0 for r in records)
    assert sorted(p.name for p in run.iterdir()) == sorted(["config.yaml", "curves.png", "dataset_report.json", "dataset_report.png",
                                                            "last.ckpt", "last.prev.ckpt",
                                                            "metrics.jsonl", "tensorboard", "train_log.txt"]
                                                           + (["best.ckpt", "best_detections.json", "analysis"] if best else []))
    steps = [r["step"] for r in records if r["type"] == "train"]
    assert steps == list(range(ITERS))  # one writer: no duplicated records
    log = (run / "train_log.txt").read_text()
    assert "2 device(s)" in log and log.count("finished: 8 iterations") == 1
    assert "iter 1/4" in dist_run["logs"]["worker_0.log"]
    assert "iter 1/4" not in dist_run["logs"]["worker_1.log"]
