"""Mixed precision on CPU (MindSpore 2.10 has float16 Conv2D / depthwise / Dense / BatchNorm
kernels there): what computes in float16 and what stays float32, the O2 loss against float32
on the official reference batch, a short O2 training on the demo data (loss down, overflow
skip and scale drop), and ``--half`` inference AP on coco_tiny."""
import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor
from mindspore import dtype as mstype

from mindyolox import build_model, load_config, load_weights
from mindyolox.data.demo import DemoSpec, generate
from mindyolox.models.amp import mixed_precision
from mindyolox.training.hooks.precompile import example_batch
from mindyolox.training.trainer import TrainHook, Trainer
from mindyolox.losses import YOLOXLoss, YOLOXWithLoss
from mindyolox.models.batchnorm import BatchNorm2d
from mindyolox.models.conv import Conv2d
from mindyolox.options import resolve_options

from .conftest import ROOT, load_npz, shared_path

pytestmark = pytest.mark.slow  # whole nano models: PyNative forwards, O2 compiles, training, test.py --half

REF = "yolox-nano_s0_320_b2_0.3.0"


def _nano(*overrides):
    return load_config(ROOT / "configs" / "yolox-nano.yaml", list(overrides))


@pytest.mark.parametrize("level", ["O1", "O2", "O3"])
def test_precision_of_each_layer_kind(level):
    """Observed in PyNative with forward hooks: the dtype each conv / BN really computes in."""
    ms.set_context(mode=ms.PYNATIVE_MODE)
    try:
        model = build_model(_nano(), resolve_options(_nano(), amp_level=level))
        net = mixed_precision(model, level)
        net.set_train(True)
        seen = {"conv": set(), "bn_out": set()}
        conv = next(c for _, c in model.cells_and_names() if isinstance(c, Conv2d) and c.k == 3)
        bn = next(c for _, c in model.cells_and_names() if isinstance(c, BatchNorm2d))
        bn.cast_output = None  # (a hook sees inputs before to_float's cast: judge by the output)

        def on_bn(cell, inp, out):  # a hook returning a value would replace the output
            seen["bn_out"].add(out.dtype)
        conv.register_forward_hook(lambda cell, inp, out: seen["conv"].add(out.dtype))
        bn.register_forward_hook(on_bn)
        x = Tensor(np.random.default_rng(0).uniform(0, 255, (1, 3, 64, 64)).astype(np.float32))
        raw, grids, strides = net(x)
    finally:
        ms.set_context(mode=ms.GRAPH_MODE)
    assert raw.dtype == mstype.float32 and grids.dtype == mstype.float32  # what the loss gets
    bn_dtype = mstype.float16 if level == "O3" else mstype.float32
    assert seen["bn_out"] == {bn_dtype}
    if level == "O1":  # the conv computes in float16 and hands float32 on
        assert seen["conv"] == {mstype.float32} and conv.cast_output == mstype.float32
        assert conv.get_flags()["fp16"]  # MindSpore's to_float flag: inputs and weights cast
    else:
        assert seen["conv"] == {mstype.float16}
    for p in model.get_parameters():  # float32 master weights and statistics, whatever the level
        assert p.dtype == mstype.float32, p.name


def test_o2_loss_on_the_reference_batch_is_close_to_float32():
    data = load_npz("reference", f"{REF}_data.npz")
    images, labels = Tensor(data["input/images"]), Tensor(data["input/labels"])
    use_l1 = Tensor(0.0, mstype.float32)
    totals = {}
    for level in ("O0", "O2"):
        cfg = _nano("model.exact_bn=true")
        model = build_model(cfg, resolve_options(cfg, amp_level=level))
        load_weights(model, shared_path("reference", f"{REF}_weights.npz"))
        net = YOLOXWithLoss(mixed_precision(model, level), YOLOXLoss(80))
        net.set_train(True)
        totals[level] = [float(v.asnumpy()) for v in net(images, labels, use_l1)]
    o0, o2 = totals["O0"], totals["O2"]
    assert o0[0] == pytest.approx(15.303720, rel=1e-4)  # float32 = the official value
    assert abs(o2[0] - o0[0]) <= 2e-2 * o0[0], (o0, o2)
    assert o2[0] != o0[0]  # float16 really took part


class _Losses(TrainHook):
    def __init__(self):
        self.totals = []

    def after_iter(self, trainer):
        self.totals.append(trainer.last["total"])


@pytest.fixture(scope="module")
def o2_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("amp")
    generate(tmp / "demo", DemoSpec(num_train=120, num_val=8), progress=False)
    cfg = load_config(ROOT / "configs" / "demo" / "yolox-nano-demo.yaml", [
        f"data.data_dir={tmp / 'demo'}", "train.batch_size=4", "train.amp_level=O2", "train.max_epoch=10",
        "train.warmup_epochs=0", "train.no_aug_epochs=1", "train.basic_lr_per_img=0.001",
        "train.print_interval=5"])
    hook = _Losses()
    tr = Trainer(cfg, run_dir=tmp / "run", max_iters=30, num_workers=0, progress=False, evaluate=False,
                 hooks=[hook])
    assert tr.train() == "stopped"
    return tr, hook.totals


def test_o2_training_on_cpu_lowers_the_loss(o2_run):
    tr, totals = o2_run
    assert tr.options.amp_level == "O2" and tr.step.dynamic  # dynamic loss scale by default
    assert "stopped: 30 iterations" in (tr.run_dir / "train_log.txt").read_text()
    assert "no evaluation ran (--no-eval)" in (tr.run_dir / "train_log.txt").read_text()
    assert len(totals) == 6 and np.isfinite(totals).all()
    # measured 2026-12-02 (5-step means, 30 steps): 0.837 of the first with MindSpore's batch
    # norm, 0.851 with the compiled CPU kernels -- both learn; a step that does not stays ~1.0
    assert np.mean(totals[-2:]) < 0.9 * totals[0], totals
    bn = next(c for _, c in tr.model.cells_and_names() if isinstance(c, BatchNorm2d))
    assert bn.moving_mean.dtype == mstype.float32 and np.abs(bn.moving_mean.asnumpy()).max() > 0
    assert all(p.dtype == mstype.float32 for p in tr.ema_model.get_parameters())


def test_o2_forced_overflow_is_skipped_and_the_scale_drops(o2_run):
    tr, _ = o2_run
    step = tr.step
    # float16 activations overflow: the first convolution's weights at 1e4 on white images
    # (3x3 over 12 Focus channels x 255 x 1e4 ~ 3e8 > 65504). The batch is shaped and typed as
    # the feeder's (uint8 images, the recipe's label slots, the size), so the step runs the
    # graph the training compiled instead of compiling another one (float32 images would).
    conv = next(c for _, c in tr.model.cells_and_names() if isinstance(c, ms.nn.Conv2d))
    saved = conv.weight.asnumpy().copy()
    conv.weight.set_data(Tensor(np.full(saved.shape, 1e4, np.float32)))
    before = {p.name: p.asnumpy().copy() for p in tr.model.trainable_params()}
    scale = float(step.scale.asnumpy())
    skipped = int(step.overflows.asnumpy())
    size = next(iter(tr.sizes_seen))
    example_images, example_labels, size = example_batch(tr, size)
    images = np.full(example_images.shape, 255, np.uint8)
    labels = np.zeros(example_labels.shape, np.float32)
    labels[:, 0] = (0, 80, 80, 40, 40)
    try:
        out = step(Tensor(images), Tensor(labels), size)
        assert not bool(out[6].asnumpy())
        assert int(step.overflows.asnumpy()) == skipped + 1
        assert float(step.scale.asnumpy()) == max(scale / 2, 1.0) < scale
        for p in tr.model.trainable_params():
            np.testing.assert_array_equal(p.asnumpy(), before[p.name], err_msg=p.name)
    finally:
        conv.weight.set_data(Tensor(saved))


def test_half_inference_ap_on_coco_tiny(tmp_path):
    """``test.py --half``: float16 AP within 0.3 of the official float32 30.52 / 47.77."""
    import json
    import subprocess
    import sys
    root = shared_path("data", "coco_tiny")
    out = tmp_path / "m.json"
    p = subprocess.run([sys.executable, str(ROOT / "test.py"), "--config", "configs/yolox-nano.yaml",
                        "--weights", str(shared_path("weights", "yolox_nano.pth")), "--img-size", "416",
                        "--ann", str(root / "annotations" / "instances_val2017.json"), "--images",
                        str(root / "val2017"), "--half", "--workers", "0", "--no-progress",
                        "--save-dir", str(tmp_path), "--json-out", str(out), "--device", "CPU"],
                       cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-2000:]
    m = json.loads(out.read_text())
    assert abs(100 * m["AP50_95"] - 30.52) <= 0.3 and abs(100 * m["AP50"] - 47.77) <= 0.3, m["AP50_95"]


@pytest.mark.parametrize("level", ["O2", "O3"])
def test_half_decodes_boxes_in_float32(level):
    """``--half`` (O2) and O3: the decoded boxes are the float32 decode of the float16
    network's raw outputs, to float32 rounding (a float16 decode is up to 0.25 px off at
    640: the centres land on 0.25-0.5 px steps above 256 px)."""
    from mindyolox.models.head import level_grid
    ms.set_context(mode=ms.PYNATIVE_MODE)
    try:
        cfg = _nano()
        model = build_model(cfg, resolve_options(cfg, amp_level=level, decode_exp="float32"))
        net = mixed_precision(model, level)
        net.set_train(False)
        x = Tensor(np.random.default_rng(0).uniform(0, 255, (1, 3, 640, 640)).astype(np.float32))
        decoded = net(x).asnumpy()
        model.head.decode_in_inference = False  # PyNative: takes effect at the next call
        raw = net(x).asnumpy()
    finally:
        ms.set_context(mode=ms.GRAPH_MODE)
    parts = [level_grid(640 // s, 640 // s, s) for s in (8, 16, 32)]
    grids = np.concatenate([p[0].asnumpy() for p in parts])
    strides = np.concatenate([p[1].asnumpy() for p in parts])[:, None]
    assert decoded.dtype == np.float32 and raw.dtype == np.float32
    xy = (raw[0, :, :2] + grids) * strides
    wh = np.exp(raw[0, :, 2:4]) * strides
    assert xy.max() > 512  # centres where float16's step is 0.5 px
    np.testing.assert_allclose(decoded[0, :, :2], xy, rtol=1e-6, atol=1e-4)
    np.testing.assert_allclose(decoded[0, :, 2:4], wh, rtol=2e-5)
    # the centres are not on float16's grid: they carry float32 fractions
    big = xy > 512
    assert np.any(decoded[0, :, :2][big] % 0.5 != 0)
    # scores: float32 sigmoid here, the raw (export) layout's float16 one there
    np.testing.assert_allclose(decoded[0, :, 4:], raw[0, :, 4:], rtol=1e-3)
