"""Float16 health visible and bounded (issue 35, item 3).

* ``train.loss_scale: auto`` at O0 on Ascend is dynamic from 1024 (the decision in
  ``resolve_loss_scale``'s docstring);
* the compiled step counts consecutive skipped steps itself (``skip_streak``), inside a run of
  steps with no host read and across log windows; a step without a loss scale ignores a scale
  loaded from a checkpoint;
* each log window: the log line shows the loss scale and the skipped steps, a warning when
  more than ``train.overflow_warn_share`` of them were skipped (not for a lone skip, not while a
  dynamic scale is still falling), and ``train.overflow_stop_steps`` skips in a row stop the run
  with one line and ``last.ckpt`` written -- host logic on scripted windows (no compile), then
  one real run (slow): nano on coco16 at 64 px, O2 on CPU, a static loss scale too large for
  float16 gradients, every step overflows.
"""
import json

import numpy as np
import pytest
from mindspore import Parameter, Tensor
from mindspore import dtype as mstype

from mindyolox.config import load_config
from mindyolox.errors import MindYOLOXError
from mindyolox.options import DeviceOptions
from mindyolox.training.checkpoint import read_meta
from mindyolox.training.hooks.logging import log_window
from mindyolox.training.hooks.overflow import OverflowStalled
from mindyolox.training.run_log import RunLog
from mindyolox.training.train_step import resolve_loss_scale
from mindyolox.training.trainer import Trainer

from .conftest import ROOT
from .test_ascend_choices import tiny_step
from .test_train import coco16_cfg

DEMO = ROOT / "configs" / "demo" / "yolox-nano-demo.yaml"


def test_auto_loss_scale_at_o0_on_ascend_is_dynamic_from_1024():
    assert resolve_loss_scale("auto", "O0", "Ascend") == ("dynamic", 1024.0)
    assert resolve_loss_scale("auto", "O0", "CPU") == ("none", 1.0)  # float32 elsewhere: unchanged
    assert resolve_loss_scale("static", "O0", "Ascend", 1024.0) == ("static", 1024.0)  # explicit wins


# --------------------------------------------------------------------------- the compiled step
def _step(loss_scale, scale_value=1024.0):
    step, model = tiny_step(loss_scale, scale_value)
    step.set_lr(0.05)
    return step, model


def test_the_step_counts_skips_in_a_row_without_a_host_read():
    step, _ = _step("static")
    x = Tensor(np.random.default_rng(0).normal(size=(2, 2, 4, 4)).astype(np.float32))
    ok = Tensor(np.ones((2, 3, 4, 4), np.float32))
    bad = Tensor(np.full((2, 3, 4, 4), np.inf, np.float32))  # inf gradients: the step is skipped
    for labels in (bad, bad, bad, ok, bad):  # one run of steps, nothing read back in between
        step(x, labels)
    w = step.read_stats()
    assert (w["steps"], w["skipped"], w["skip_run"], w["scale"]) == (5, 4, 3, 1024.0)
    for labels in (bad, bad):  # the run that began in the last window goes on: 1 + 2
        step(x, labels)
    w = step.read_stats()
    assert (w["steps"], w["skipped"], w["skip_run"]) == (2, 2, 3)
    step(x, ok)
    w = step.read_stats()
    assert (w["skipped"], w["skip_run"]) == (0, 0) and float(step.skip_streak.asnumpy()) == 0.0


def test_a_step_without_loss_scale_ignores_a_loaded_scale():
    """A run resumed with ``loss_scale none`` (say amp_level O0 on CPU after an O2 run) loads
    the checkpoint's scale into the step: its gradients must not be multiplied by it."""
    plain, model_a = _step("none")
    loaded, model_b = _step("none")
    for (_, a), (_, b) in zip(model_a.parameters_and_names(), model_b.parameters_and_names()):
        b.set_data(a.data.copy())
    loaded.scale.set_data(Tensor(65536.0, mstype.float32))  # what load_training_state does
    x = Tensor(np.random.default_rng(0).normal(size=(2, 2, 4, 4)).astype(np.float32))
    y = Tensor(np.random.default_rng(1).normal(size=(2, 3, 4, 4)).astype(np.float32))
    plain(x, y)
    out = loaded(x, y)
    assert float(out[7].asnumpy()) == 1.0
    for (n, a), (_, b) in zip(model_a.parameters_and_names(), model_b.parameters_and_names()):
        np.testing.assert_array_equal(b.asnumpy(), a.asnumpy(), err_msg=n)


# --------------------------------------------------------------------------- the log window (host)
class _Windows:
    """Stands in for the compiled step at a log line: scripted windows from ``read_stats``,
    the state a checkpoint holds (``scale``, ``good_steps``, ``overflows``)."""

    def __init__(self, mode, windows):
        self.loss_scale_mode, self.windows, self.ema = mode, list(windows), None
        self.scale = Parameter(Tensor(1024.0, mstype.float32), name="state.loss_scale")
        self.good_steps = Parameter(Tensor(0, mstype.int32), name="state.good_steps")
        self.overflows = Parameter(Tensor(0, mstype.int32), name="state.overflows")

    def read_stats(self):
        steps, skipped, run, scale = self.windows.pop(0)
        terms = {k: 1.5 for k in ("total", "iou", "obj", "cls", "l1", "num_fg")}
        return dict(terms, steps=float(steps), skipped=float(skipped), skip_run=float(run), scale=float(scale))


def _fake_run(run, mode, windows, *overrides):
    """A Trainer with what ``log_window`` and ``save`` use (no model build, no compile)."""
    from mindspore import nn
    run.mkdir(parents=True, exist_ok=True)
    tr = Trainer(load_config(DEMO, ["data.data_dir=unused", *overrides]), run_dir=run, progress=False)
    tr.model, tr.ema_model, tr.optimizer = nn.Dense(4, 2), None, None
    tr.step = _Windows(mode, windows)
    tr.options = DeviceOptions(device="Ascend", amp_level="O0", precision_mode="allow_fp32_to_fp16")
    tr.epoch, tr.iter, tr.steps_per_epoch, tr.max_epoch = 0, -1, 100, 10
    tr.lr_schedule = lambda k: 0.01
    tr.runlog = RunLog(run)
    return tr


def _windows(tr, n):
    """Run ``n`` log windows of 4 steps each; the log lines written."""
    lines = []
    for _ in range(n):
        tr.iter += 4
        tr.window["steps"] = 4
        log_window(tr)
        lines.append((tr.run_dir / "train_log.txt").read_text().splitlines())
    return lines[-1]


def test_the_log_line_shows_the_scale_and_skips_and_warns_when_too_many(tmp_path):
    run = tmp_path / "run"
    # 1 skipped of 4 (a lone skip: no warning), 2 of 4 (half > 0.25: warning), 1 of 4 again
    tr = _fake_run(run, "static", [(4, 1, 1, 1024), (4, 2, 2, 1024), (4, 1, 1, 1024)])
    lines = _windows(tr, 3)
    win = [x for x in lines if "epoch 1/10 iter" in x]
    assert len(win) == 3 and "| scale 1024 skipped 1/4 |" in win[0] and "| scale 1024 skipped 2/4 |" in win[1]
    warnings = [x for x in lines if "warning:" in x]
    assert len(warnings) == 1 and lines.index(warnings[0]) == lines.index(win[1]) + 1
    assert warnings[0].endswith("warning: 2 of 4 steps in this window were skipped (float16 overflow: their "
                                "gradients were not applied), more than train.overflow_warn_share=0.25; loss "
                                "scale 1024 (static); the run stops after train.overflow_stop_steps=100 skipped "
                                "in a row")
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r.get("type") == "train"]
    assert [(r["skipped"], r["skip_run"], r["scale"]) for r in train] == [(1, 1, 1024), (2, 2, 1024), (1, 1, 1024)]
    tr.runlog.close()
    # without a loss scale (float32 on CPU/GPU) nothing is said about it
    quiet = _fake_run(tmp_path / "none", "none", [(4, 0, 0, 1)])
    line = _windows(quiet, 1)[-1]
    assert "epoch 1/10 iter 4/100" in line and "scale" not in line and "skipped" not in line
    quiet.runlog.close()


def test_no_warning_while_a_dynamic_scale_falls_to_its_first_working_value(tmp_path):
    run = tmp_path / "run"
    # from 65536: 4 skips (-> 4096), 3 more and a good step (-> 512); then 3 of 4 skipped at 512
    tr = _fake_run(run, "dynamic", [(4, 4, 4, 4096), (4, 3, 7, 512), (4, 3, 2, 512)])
    lines = _windows(tr, 3)
    warnings = [x for x in lines if "warning:" in x]
    assert len(warnings) == 1 and "3 of 4 steps" in warnings[0] and "loss scale 512 (dynamic)" in warnings[0]
    assert lines[-1] == warnings[0]  # after the third window's line: the first two said nothing
    tr.runlog.close()


def test_k_skips_in_a_row_stop_with_one_line_and_last_ckpt(tmp_path):
    run = tmp_path / "run"
    # the run of skips spans windows: 3, then 4 + 1 more = 6 >= train.overflow_stop_steps=6
    tr = _fake_run(run, "static", [(4, 3, 3, 1024), (4, 4, 7, 1024)], "train.overflow_stop_steps=6")
    with pytest.raises(OverflowStalled) as e:
        _windows(tr, 2)
    assert isinstance(e.value, MindYOLOXError)  # train.py: "error: ..." and exit code 2, as diverged
    msg = str(e.value)
    assert "\n" not in msg
    assert msg == (f"7 steps in a row skipped for float16 overflow (train.overflow_stop_steps=6), up to epoch 1 "
                   f"iter 8 (step 7): training has stalled; saved {run / 'last.ckpt'} (step 8), continue with "
                   "--resume after one of the fixes: train.loss_scale=dynamic (now static 1024: it never drops); "
                   "runtime.precision_mode=must_keep_origin_dtype on a chip with float32 matrices (now "
                   "allow_fp32_to_fp16); train.amp_level=O0 (now O0)")
    assert tr.status == "overflowed"
    meta = read_meta(run / "last.ckpt")
    assert (meta["epoch"], meta["iter"], meta["global_step"]) == (0, 8, 8)
    events = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [ev["message"] for ev in events if ev.get("event") == "overflowed"] == [msg]
    # the second window's line was written before the stop
    assert "| scale 1024 skipped 4/4 |" in (run / "train_log.txt").read_text()
    tr.runlog.close()
    # 0: never stop
    never = _fake_run(tmp_path / "never", "static", [(4, 4, 500, 1024)], "train.overflow_stop_steps=0")
    _windows(never, 1)
    assert never.status == "running" and not (tmp_path / "never" / "last.ckpt").exists()
    never.runlog.close()


# --------------------------------------------------------------------------- one real run (slow)
@pytest.fixture(scope="module")
def stalled_run(tmp_path_factory):
    """nano, coco16 at 64 px, O2 on CPU, a static loss scale of 2**30: the scaled gradients
    overflow float16 in the backward at every step while the loss stays finite. ~70 s on the
    2-core machine, almost all of it the O2 step's compile (EMA off: one graph less)."""
    run = tmp_path_factory.mktemp("fp16") / "run"
    cfg = coco16_cfg("train.amp_level=O2", "train.loss_scale=static", "train.loss_scale_value=1073741824.0",
                     "train.overflow_stop_steps=6", "train.print_interval=4", "train.ema=false", size=64)
    tr = Trainer(cfg, run_dir=run, max_iters=20, num_workers=0, progress=False, evaluate=False)
    with pytest.raises(OverflowStalled) as e:
        tr.train()
    return tr, str(e.value)


@pytest.mark.slow
def test_a_float16_overflow_run_shows_warns_and_stops(stalled_run):
    tr, msg = stalled_run
    log = (tr.run_dir / "train_log.txt").read_text().splitlines()
    win = [x for x in log if " | total " in x]
    # window 1 (steps 0-3): all skipped, shown with the scale; window 2 ends the run of 8 >= 6
    assert len(win) == 2 and all("| scale 1.07374e+09 skipped 4/4 |" in x for x in win), win
    warn = [x for x in log if "warning: 4 of 4 steps in this window were skipped" in x]
    assert len(warn) == 1 and log.index(warn[0]) == log.index(win[0]) + 1
    assert msg.startswith("8 steps in a row skipped for float16 overflow (train.overflow_stop_steps=6), up to "
                          "epoch 1 iter 8 (step 7): training has stalled; saved ")
    assert "train.loss_scale=dynamic (now static 1.07374e+09: it never drops)" in msg and "(now O2)" in msg
    assert tr.status == "overflowed" and tr.overflow_steps == 8
    assert any("| overflowed: 8 iterations in " in x for x in log)
    meta = read_meta(tr.run_dir / "last.ckpt")
    assert meta["global_step"] == 8 and meta["options"]["amp_level"] == "O2"
