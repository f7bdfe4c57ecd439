"""Training: optimizer / EMA / overflow-skip numerics on small cells, then YOLOX-nano trained
for ITERS (200) iterations on coco16 (loss down >= 12 %, EMA evaluates, one graph per input size,
JSONL + PNG written), the NaN stop, and the run-directory guard.

The end-to-end runs (nano, 160 px, batch 2 -- the smallest setting that shows learning) pass
one MindSpore compile cache (``compile_cache`` fixture). Note: a later Trainer in this process
does not load a graph from it (MindSpore caches graphs by their position in a process: each
Trainer here compiles its own); a run that should load one runs in a fresh process
(tests/train_subprocess.py).
"""
import json
import math

import cv2
import mindspore as ms
import numpy as np
import pytest
from mindspore import Parameter, Tensor, nn

from mindyolox import build_model, load_config
from mindyolox.training.ema import ModelEMA, ema_decay
from mindyolox.training.optimizer import SGD, param_groups
from mindyolox.training.train_step import TrainStep
from mindyolox.training.trainer import TrainHook, Trainer, TrainingDiverged
from mindyolox.errors import MindYOLOXError

from .conftest import shared_path

SIZE, BATCH = 160, 2


def coco16_cfg(*extra, size=SIZE, batch=BATCH, max_epoch=40):
    """nano recipe on ../shared/data/coco16 (the train split doubles as val)."""
    data_dir = str(shared_path("data", "coco16"))
    return load_config("configs/yolox-nano.yaml", [
        f"data.data_dir={data_dir}", "data.val_ann=annotations/instances_train2017.json",
        "data.val_images=train2017", f"data.input_size=[{size},{size}]", f"data.test_size=[{size},{size}]",
        "data.random_size=[]", "data.multiscale_range=0", f"train.batch_size={batch}",
        f"train.max_epoch={max_epoch}", "train.warmup_epochs=1", "train.no_aug_epochs=2",
        "train.print_interval=1", "train.eval_interval=1000", "train.save_interval=0", *extra])


@pytest.fixture(scope="session")
def compile_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("ms_compile_cache")


# --------------------------------------------------------------------------- small-cell numerics
class _Tiny(nn.Cell):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, pad_mode="pad", padding=1, has_bias=True)
        self.bn = nn.BatchNorm2d(3, momentum=0.9)

    def construct(self, x):
        return self.bn(self.conv(x))


def test_param_groups_follow_the_official_split():
    model = build_model(load_config("configs/yolox-nano.yaml", []))
    decay, no_decay = param_groups(model)
    convs = [c for _, c in model.cells_and_names() if isinstance(c, nn.Conv2d)]
    assert len(decay) == len(convs) == 113
    assert all(p.name.endswith(".weight") and p.ndim == 4 for p in decay)
    assert all(p.name.endswith((".gamma", ".beta", ".bias")) for p in no_decay)
    assert len(decay) + len(no_decay) == len(model.trainable_params())


def test_sgd_nesterov_matches_torch_formula():
    w = Parameter(Tensor(np.array([1.0, -2.0, 3.0], np.float32)), name="w")
    b = Parameter(Tensor(np.array([0.5], np.float32)), name="b")
    opt = SGD([w, b], [True, False], momentum=0.9, weight_decay=0.1, nesterov=True)
    rng = np.random.default_rng(0)
    ref = {"w": w.asnumpy().astype(np.float64), "b": b.asnumpy().astype(np.float64)}
    buf = {"w": np.zeros(3), "b": np.zeros(1)}
    for lr in (0.1, 0.05, 0.2):
        g = {"w": rng.normal(size=3), "b": rng.normal(size=1)}
        opt((Tensor(g["w"].astype(np.float32)), Tensor(g["b"].astype(np.float32))), Tensor(lr, ms.float32))
        for k, wd in (("w", 0.1), ("b", 0.0)):  # torch.optim.SGD(nesterov=True), dampening 0
            d = g[k] + wd * ref[k]
            buf[k] = 0.9 * buf[k] + d
            ref[k] = ref[k] - lr * (d + 0.9 * buf[k])
    np.testing.assert_allclose(w.asnumpy(), ref["w"], rtol=1e-5)
    np.testing.assert_allclose(b.asnumpy(), ref["b"], rtol=1e-5)


def test_ema_matches_official_update_including_bn_stats():
    model, ema_model = _Tiny(), _Tiny()
    ema = ModelEMA(model, ema_model, decay=0.9998)
    start = {n: p.asnumpy().copy() for n, p in model.parameters_and_names()}
    ref = {n: v.astype(np.float64) for n, v in start.items()}
    rng = np.random.default_rng(1)
    for u in range(1, 4):
        for n, p in model.parameters_and_names():  # the "model" moves (weights and BN stats)
            p.set_data(Tensor((p.asnumpy() + rng.normal(size=p.shape)).astype(np.float32)))
        ema()
        d = 0.9998 * (1 - math.exp(-u / 2000))
        assert d == pytest.approx(ema_decay(u))
        for n, p in model.parameters_and_names():
            ref[n] = d * ref[n] + (1 - d) * p.asnumpy()
    assert float(ema.updates.asnumpy()) == 3.0
    short = ModelEMA(_Tiny(), _Tiny(), decay=0.995, tau=100.0)  # a short run's faster ramp
    assert float(short().asnumpy()) == pytest.approx(0.995 * (1 - math.exp(-1 / 100)), rel=1e-5)
    for n, e in ema_model.parameters_and_names():
        np.testing.assert_allclose(e.asnumpy(), ref[n], rtol=1e-5, atol=1e-6, err_msg=n)
    assert any("moving_mean" in n for n, _ in ema_model.parameters_and_names())
    assert all(p.name.startswith("ema.") for _, p in ema_model.parameters_and_names())


class _TinyLoss(nn.Cell):
    """Stands in for YOLOXWithLoss: (total, iou, obj, cls, l1, num_fg) from images/labels/use_l1."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def construct(self, images, labels, use_l1):
        out = self.model(images)
        total = (out * labels).mean() + use_l1 * out.mean()
        z = total * 0
        return total, total, z, z, z, z


def test_overflow_step_is_skipped_counted_and_scale_halves():
    model, ema_model = _Tiny(), _Tiny()
    model.set_train(True)
    decay, no_decay = param_groups(model)
    opt = SGD(decay + no_decay, [True] * len(decay) + [False] * len(no_decay))
    step = TrainStep(_TinyLoss(model), opt, ModelEMA(model, ema_model), loss_scale="dynamic", scale_value=1024.0)
    step.set_lr(0.1)
    x = Tensor(np.random.default_rng(0).normal(size=(2, 2, 4, 4)).astype(np.float32))
    ok = Tensor(np.ones((2, 3, 4, 4), np.float32))
    out = step(x, ok)
    assert bool(out[6].asnumpy()) and float(out[7].asnumpy()) == 1024.0
    before = {n: p.asnumpy().copy() for n, p in model.parameters_and_names() if p.requires_grad}
    moments = [m.asnumpy().copy() for m in opt.moments]
    bad = Tensor(np.full((2, 3, 4, 4), np.inf, np.float32))
    out = step(x, bad)
    assert not bool(out[6].asnumpy())
    assert int(step.overflows.asnumpy()) == 1
    assert float(step.scale.asnumpy()) == 512.0
    for n, p in model.parameters_and_names():
        if p.requires_grad:
            np.testing.assert_array_equal(p.asnumpy(), before[n], err_msg=n)
    for m, m0 in zip(opt.moments, moments):
        np.testing.assert_array_equal(m.asnumpy(), m0)
    out = step(x, ok)  # training goes on after the skip
    assert bool(out[6].asnumpy())
    assert any(not np.array_equal(p.asnumpy(), before[n]) for n, p in model.parameters_and_names() if n in before)


# --------------------------------------------------------------------------- end to end
class _Recorder(TrainHook):
    def __init__(self):
        self.losses = []

    def after_iter(self, trainer):
        self.losses.append(trainer.last["total"])


# Measured on this 2-core CPU (2026-12-04, first-20 mean -> mean of the 20 steps before step n,
# from one 300-step run): n = 150: 11.58 -> 10.39 (-10 %), 200: -> 9.77 (-16 %), 300: -> 8.71
# (-25 %). 200 steps keep the learning check of the former 300 (MIN_DROP, unchanged) with a
# margin and save ~100 steps (~45 s) of the suite; the 40 % is NOT reached (see the
# engineer's report). MIN_DROP guards against a trainer that does not learn at all.
ITERS = 200
MIN_DROP = 0.12


@pytest.mark.slow
def test_nano_200_iterations_learns_and_ema_evaluates(tmp_path, compile_cache):
    # lr 0.01 (basic_lr_per_img 0.005 x 2) held near its peak (max_epoch 300), fixed images
    # (no augmentation): the cheapest run that shows learning.
    cfg = coco16_cfg("train.basic_lr_per_img=0.005", "aug.mosaic_prob=0.0", "aug.hsv_prob=0.0",
                     "aug.flip_prob=0.0", "aug.degrees=0.0", "aug.translate=0.0", "aug.shear=0.0",
                     "train.ema_decay=0.999", "train.ema_tau=500.0", max_epoch=300)
    rec = _Recorder()
    tr = Trainer(cfg, run_dir=tmp_path / "run", max_iters=ITERS, num_workers=1, hooks=[rec],
                 progress=False, compile_cache=compile_cache)
    assert tr.train() == "stopped"
    losses = np.array(rec.losses)
    assert len(losses) == ITERS and np.isfinite(losses).all()
    first, last = losses[:20].mean(), losses[-20:].mean()
    assert last <= (1 - MIN_DROP) * first, f"total loss {first:.3f} -> {last:.3f}"
    assert losses[-20:].max() < losses[:20].mean()
    assert tr.step.compiled_graphs == 1  # one input size -> one graph, reused ITERS times
    # the EMA weights evaluate through the COCO evaluator
    res = tr.evaluate_and_save()
    assert 0.0 <= res["AP50_95"] <= 1.0 and len(res["stats"]) == 12
    assert float(tr.step.ema.updates.asnumpy()) == float(ITERS)
    assert (tr.step.ema.decay, tr.step.ema.tau) == (0.999, 500.0)  # the recipe's EMA settings
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["type"] == "train"]
    assert [r["step"] for r in train] == list(range(ITERS))
    assert train[0]["lr"] == 0.0 and train[-1]["lr"] == pytest.approx(tr.lr_schedule(ITERS - 1))
    assert any(r["type"] == "eval" for r in records)
    png = cv2.imread(str(tmp_path / "run" / "curves.png"))
    assert png is not None and png.shape == (500, 1200, 3) and png.std() > 5
    assert (tmp_path / "run" / "last.ckpt").is_file()
    report = json.loads((tmp_path / "run" / "dataset_report.json").read_text())   # written at the start
    assert report["images"] == len(tr.loader.dataset) and (tmp_path / "run" / "dataset_report.png").is_file()


class _Explode(TrainHook):
    """After step 2, save a good checkpoint, then poison a weight so the loss goes NaN."""

    def after_iter(self, trainer):
        if trainer.progress_in_iter == 2:
            trainer.iter += 1
            trainer.save("last", trainer.checkpoint_meta())
            trainer.iter -= 1
            w = trainer.model.head.obj_preds[0].weight
            w.set_data(Tensor(np.full(w.shape, np.nan, np.float32)))


@pytest.mark.slow
def test_nan_loss_stops_with_clear_message_and_keeps_checkpoint(tmp_path, compile_cache):
    cfg = coco16_cfg()
    tr = Trainer(cfg, run_dir=tmp_path / "run", max_iters=20, num_workers=0, hooks=[_Explode()],
                 progress=False, evaluate=False, compile_cache=compile_cache)
    with pytest.raises(TrainingDiverged, match=r"loss is (nan|inf).*last good checkpoint is kept: .*last\.ckpt"):
        tr.train()
    from mindyolox.training.checkpoint import read_meta
    meta = read_meta(tmp_path / "run" / "last.ckpt")
    assert meta["global_step"] == 3  # the good one, not overwritten
    events = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert any(e.get("event") == "diverged" for e in events)


def test_existing_run_dir_is_not_overwritten(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "last.ckpt").write_bytes(b"precious")
    tr = Trainer(coco16_cfg(), run_dir=run, progress=False)
    with pytest.raises(MindYOLOXError, match="already exists.*--resume.*--exist-ok"):
        tr.train()
    assert (run / "last.ckpt").read_bytes() == b"precious"
