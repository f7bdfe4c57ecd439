"""Ranks that agree, under ``msrun`` with 2 CPU workers (issue 24, deliverables 1, 2 and 6).

One launch trains YOLOX-nano at 64 px (batch 1 per rank, 8 steps per epoch, dynamic loss
scale) and injects, on rank 1 only:

* at step ``OVERFLOW_STEP`` an overflow that the gradient values do not show -- this rank's
  overflow flag is raised as Ascend 910A's float-status register would be (there, saturated
  float16 values keep the all-reduced gradients finite, so only the register knows). The test
  driver adds an injected term to :meth:`TrainStep._local_overflow`; everything after it (the
  flag all-reduce, the skip, the loss-scale update) is the production graph. Both ranks must
  skip that step (rank 0 although its own flag was clean), halve their loss scale alike, and
  hold bit-identical trainable parameters and momentum buffers after every step.
* at step ``NAN_STEP`` (epoch 2) a NaN batch. Both ranks must stop at that step's log line
  with the same one-line message, and rank 0's ``last.ckpt`` of epoch 1 is kept.

A second, cheap launch runs ``train.py`` under msrun without ``--distributed``: both workers
stop with one line naming ``MS_WORKER_NUM`` (exit code 2) before writing anything.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from .conftest import ROOT, shared_path

OVERFLOW_STEP = 3
NAN_STEP = 11
STEPS_PER_EPOCH = 8

DRIVER = textwrap.dedent('''
    import hashlib, json, sys
    import numpy as np
    import mindspore as ms
    from mindspore import Parameter, Tensor
    from mindspore import dtype as mstype
    sys.path.insert(0, {root!r})
    ms.set_device("CPU")
    ms.set_context(mode=ms.GRAPH_MODE)
    from mindyolox import load_config
    from mindyolox.training import train_step as ts
    from mindyolox.training.trainer import Trainer, TrainHook, TrainingDiverged

    def local_overflow(self, grads):  # the production flag + an injected "float-status register"
        return (1.0 - ms.amp.all_finite(grads).astype(mstype.float32)).reshape(1) + self.injected_status
    ts.TrainStep._local_overflow = local_overflow

    def injecting(stream, step, rank):
        for k, (images, labels) in enumerate(stream):
            on = rank == 1 and k == {overflow_step}
            step.injected_status.set_data(Tensor(np.array([1.0 if on else 0.0], np.float32)))
            # the pipeline sends uint8 (NaN needs float32): every rank feeds float32, so all
            # ranks run the same step graph at every step
            images = images.astype(mstype.float32)
            if rank == 1 and k == {nan_step}:
                images = Tensor(np.full(images.shape, np.nan, np.float32))
            yield images, labels

    def digest(arrays):
        h = hashlib.sha256()
        for a in arrays:
            h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()

    class Probe(TrainHook):
        def __init__(self):
            self.records = []

        def before_train(self, tr):
            tr.step.injected_status = Parameter(Tensor(np.zeros(1, np.float32)), name="test.injected_status",
                                                requires_grad=False)
            tr.feeder._stream = injecting(tr.feeder._stream, tr.step, tr.rank)

        def after_iter(self, tr):
            self.records.append(dict(step=tr.progress_in_iter, skipped=tr.last["skipped"], scale=tr.last["scale"],
                                     total=tr.last["total"],
                                     params=digest(p.asnumpy() for p in tr.optimizer.params),
                                     moments=digest(m.asnumpy() for m in tr.optimizer.moments)))

    probe = Probe()
    cfg = load_config({config!r}, {overrides!r})
    tr = Trainer(cfg, run_dir={run!r}, distributed=True, num_workers=0, progress=False, evaluate=False,
                 hooks=[probe])
    try:
        status, message = tr.train(), None
    except TrainingDiverged as e:
        status, message = "diverged", str(e)
        print("diverged:", message, flush=True)
    with open({out!r} + f"/rank_{{tr.rank}}.json", "w") as f:
        json.dump(dict(status=status, message=message, records=probe.records, world=tr.world_size), f)
''')


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _msrun(args, logs, timeout):
    bindir = Path(sys.executable).parent
    env = dict(os.environ, PATH=f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    cmd = [str(bindir / "msrun"), "--worker_num=2", "--local_worker_num=2", f"--master_port={_free_port()}",
           f"--log_dir={logs}", "--join=True", *args]
    # own session: on a timeout the whole launch (scheduler and workers) is killed, not only msrun
    proc = subprocess.Popen(cmd, cwd=str(ROOT), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        proc.stdout_text, proc.stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"msrun did not finish within {timeout} s: {' '.join(cmd)}")
    worker_logs = {p.name: p.read_text(errors="replace") for p in sorted(Path(logs).glob("worker_*.log"))}
    return proc, worker_logs


@pytest.fixture(scope="module")
def injected_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("agree")
    out, run, logs = tmp / "out", tmp / "run", tmp / "logs"
    out.mkdir()
    overrides = [f"data.data_dir={shared_path('data', 'coco16')}", "data.input_size=[64,64]", "data.random_size=[]",
                 "data.multiscale_range=0", "train.batch_size=2", "train.max_epoch=2", "train.warmup_epochs=1",
                 "train.no_aug_epochs=0", "train.print_interval=1", "train.loss_scale=dynamic",
                 "train.tensorboard=false"]
    driver = tmp / "driver.py"
    driver.write_text(DRIVER.format(root=str(ROOT), config=str(ROOT / "configs" / "yolox-nano.yaml"),
                                    overrides=overrides, out=str(out), run=str(run),
                                    overflow_step=OVERFLOW_STEP, nan_step=NAN_STEP))
    proc, worker_logs = _msrun([str(driver)], logs, timeout=900)
    results = {r: out / f"rank_{r}.json" for r in (0, 1)}
    if proc.returncode != 0 or not all(p.is_file() for p in results.values()):
        tails = "\n".join(f"--- {k}\n" + "\n".join(v.splitlines()[-25:]) for k, v in worker_logs.items())
        pytest.fail(f"msrun failed ({proc.returncode}):\n{proc.stderr[-2000:]}\n{tails}")
    return dict(ranks={r: json.loads(p.read_text()) for r, p in results.items()}, run=run, logs=worker_logs)


@pytest.mark.slow
def test_an_overflow_on_one_rank_is_skipped_by_every_rank(injected_run):
    r0, r1 = injected_run["ranks"][0]["records"], injected_run["ranks"][1]["records"]
    assert injected_run["ranks"][0]["world"] == 2
    assert [r["step"] for r in r0] == [r["step"] for r in r1] == list(range(NAN_STEP))
    # the step with rank 1's overflow is skipped on both ranks, and only that one
    assert [r["step"] for r in r0 if r["skipped"]] == [r["step"] for r in r1 if r["skipped"]] == [OVERFLOW_STEP]
    # the dynamic loss scale follows the shared flag: halved once, equal on both ranks at every step
    assert [r["scale"] for r in r0] == [r["scale"] for r in r1]
    # (a record holds the scale its step ran with: the halved one from the step after on)
    scales = [r["scale"] for r in r0]
    assert scales == [65536.0] * (OVERFLOW_STEP + 1) + [32768.0] * (NAN_STEP - OVERFLOW_STEP - 1)
    # rank 0 (clean flag) did not apply that step: its weights and momentum are those of the step before
    for r in (r0, r1):
        assert r[OVERFLOW_STEP]["params"] == r[OVERFLOW_STEP - 1]["params"]
        assert r[OVERFLOW_STEP]["moments"] == r[OVERFLOW_STEP - 1]["moments"]
        assert r[OVERFLOW_STEP + 1]["params"] != r[OVERFLOW_STEP]["params"]  # training goes on
    # every trainable parameter and momentum buffer bit-identical across the ranks, every step
    assert [(r["params"], r["moments"]) for r in r0] == [(r["params"], r["moments"]) for r in r1]
    # the logged losses are the all-reduced means: the same numbers on both ranks
    assert [r["total"] for r in r0] == [r["total"] for r in r1]


@pytest.mark.slow
def test_a_nan_on_one_rank_stops_every_rank_at_the_same_step(injected_run):
    ranks = injected_run["ranks"]
    assert ranks[0]["status"] == ranks[1]["status"] == "diverged"
    assert ranks[0]["message"] == ranks[1]["message"]
    epoch, it = divmod(NAN_STEP, STEPS_PER_EPOCH)
    assert f"epoch {epoch + 1} iter {it + 1} (step {NAN_STEP}" in ranks[0]["message"]
    ckpt = injected_run["run"] / "last.ckpt"
    assert str(ckpt) in ranks[0]["message"] and ckpt.is_file()  # kept, and named in the line
    from mindyolox.training.checkpoint import read_meta
    assert read_meta(ckpt)["global_step"] == STEPS_PER_EPOCH  # the epoch-1 checkpoint, nothing after it
    for r in (0, 1):
        log = injected_run["logs"][f"worker_{r}.log"]
        assert log.count("diverged: loss is nan") == 1, log[-2000:]


@pytest.mark.slow
def test_msrun_without_distributed_stops_with_one_line(tmp_path):
    run = tmp_path / "run"
    proc, logs = _msrun([str(ROOT / "train.py"), "--config", str(ROOT / "configs" / "yolox-nano.yaml"),
                         "--run-dir", str(run), "--no-progress", f"data.data_dir={shared_path('data', 'coco16')}"],
                        tmp_path / "logs", timeout=400)
    assert proc.returncode != 0
    assert sorted(logs) == ["worker_0.log", "worker_1.log"]
    # msrun stops the other workers as soon as one exits non-zero: on a busy machine a slower
    # worker can be stopped before it reached the check (seen in a CI run: worker_1.log empty)
    stopped = [name for name, log in logs.items() if not log.strip()]
    assert len(stopped) < len(logs), logs
    for name, log in logs.items():
        if name in stopped:
            continue
        errors = [line for line in log.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, (name, log[-2000:])
        assert "MS_WORKER_NUM=2" in errors[0] and "add --distributed" in errors[0]
        assert "Traceback" not in log
    assert not run.exists()  # nothing written into the shared run folder
