"""The backend chosen and recorded, the data sink's Ascend path, and tests that can fail
(issue 35, deliverables 4, 5 and 8).

* ``runtime.jit_level``: the per-chip table (a pure function of the chip name), applied with
  the precision mode *before* ``mindspore.communication.init`` (MindSpore's calls recorded in
  order), recorded in a saved checkpoint's and an export's metadata.
* The data sink's arguments keep Ascend off the data-info-queue path (the stand-in of
  ``tests/test_sink_pipeline.py`` runs the whole feeder; here the signature itself).
* Tiered SimOTA keys wired from built options; every key the tiered ranking sorts is finite in
  float16 (the official 1e10 sentinel is not: the check sees it); the graph-mode ``--half``
  decode equals the float32 decode of the float16 outputs; ``train.py`` under a parallel
  launch without ``--distributed`` exits with code 2 before anything compiles.
"""
import os
import subprocess
import sys
from types import SimpleNamespace

import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor, nn
from mindspore import dtype as mstype

from mindyolox import load_config
from mindyolox.errors import ConfigError
from mindyolox.options import AUTO_JIT_LEVEL, DeviceOptions, resolve_jit_level, resolve_options

from .conftest import ROOT, shared_path
from .test_train import coco16_cfg


def _nano(*overrides):
    return load_config(ROOT / "configs" / "yolox-nano.yaml", list(overrides))


# ----------------------------------------------------------------------------- 4: jit level
def test_jit_level_table_per_chip():
    """auto: MindSpore's own choice per chip, made explicit (910A graph sink on GE, KBK elsewhere)."""
    assert {c: resolve_jit_level("auto", c, {}) for c in ("910A", "910B", "Ascend", "GPU", "CPU")} == {
        "910A": ("O2", None), "910B": ("O0", None), "Ascend": ("O0", None), "GPU": ("O0", None),
        "CPU": ("O0", None)}
    assert AUTO_JIT_LEVEL["910A"] == "O2"
    # explicit values win where they exist
    assert resolve_jit_level("O0", "910A", {}) == ("O0", None)
    assert resolve_jit_level("O1", "910B", {}) == ("O1", None)
    assert resolve_jit_level("O2", "910B", {}) == ("O2", None)
    # GE (O2) is Ascend's only: one line elsewhere
    for chip in ("GPU", "CPU"):
        with pytest.raises(ConfigError, match=f"runtime.jit_level=O2 .* device is {chip}"):
            resolve_jit_level("O2", chip, {})
    with pytest.raises(ConfigError, match="runtime.jit_level must be auto, O0, O1, O2; got 'O3'"):
        resolve_jit_level("O3", "CPU", {})
    # a rank-table launch on Ascend runs at O2 whatever is set (ms_context.cc); msrun does not
    level, note = resolve_jit_level("auto", "910B", {"RANK_TABLE_FILE": "/x/hccl.json"})
    assert level == "O2" and "RANK_TABLE_FILE" in note
    assert resolve_jit_level("auto", "910B", {"RANK_TABLE_FILE": "/x", "MS_ROLE": "MS_WORKER"}) == ("O0", None)
    assert resolve_jit_level("auto", "CPU", {"RANK_TABLE_FILE": "/x"}) == ("O0", None)


def test_jit_level_is_a_recorded_device_option():
    cfg = _nano()
    cpu = resolve_options(cfg, device="CPU")
    assert cpu.jit_level == "O0" and "jit level O0" in cpu.describe()
    assert resolve_options(cfg, device="Ascend").jit_level == "O0"  # no 910A here: the chip is "Ascend"
    assert resolve_options(_nano("runtime.jit_level=O1"), device="CPU").jit_level == "O1"
    asc = resolve_options(cfg, device="Ascend", jit_level="O2")
    assert DeviceOptions.from_dict(asc.to_dict()) == asc and asc.to_dict()["jit_level"] == "O2"
    with pytest.raises(ConfigError, match="runtime.jit_level"):
        _nano("runtime.jit_level=O4")
    with pytest.raises(ConfigError, match="jit_level"):
        DeviceOptions(jit_level="fast")


class _Calls:
    """MindSpore's process-wide calls of a device set-up, recorded in order (none reaches
    MindSpore: this CPU process keeps its context)."""

    def __init__(self, monkeypatch):
        import mindspore.communication as comm
        self.calls = []
        monkeypatch.setattr(ms, "set_context", lambda **kw: self.calls.append(("set_context", kw)))
        monkeypatch.setattr(ms.device_context.ascend.op_precision, "precision_mode",
                            lambda mode: self.calls.append(("precision_mode", mode)))
        monkeypatch.setattr(comm, "init", lambda *a, **k: self.calls.append(("init",)))
        monkeypatch.setattr(comm, "get_rank", lambda *a: 0)
        monkeypatch.setattr(comm, "get_group_size", lambda *a: 2)
        monkeypatch.setattr(ms, "set_auto_parallel_context", lambda **kw: self.calls.append(("parallel", kw)))

    def index(self, what):
        return next(i for i, c in enumerate(self.calls) if what(c))


def test_jit_level_and_precision_mode_are_set_before_hccl_init(monkeypatch, tmp_path):
    """The trainer's device set-up on an Ascend 910A's options: jit level and precision mode
    reach MindSpore before ``mindspore.communication.init`` (context.py:1284-1291: Ascend
    settings made after the backend is initialised may not take effect)."""
    from mindyolox.training.trainer import Trainer
    options = DeviceOptions(device="Ascend", conv="native", precision_mode="allow_fp32_to_fp16", jit_level="O2")
    rec = _Calls(monkeypatch)
    tr = Trainer(coco16_cfg(), options, run_dir=tmp_path / "run", distributed=True, progress=False)
    tr._init_devices()
    jit = rec.index(lambda c: c[0] == "set_context" and c[1].get("jit_config") == {"jit_level": "O2"})
    prec = rec.index(lambda c: c == ("precision_mode", "allow_fp32_to_fp16"))
    init = rec.index(lambda c: c == ("init",))
    assert jit < init and prec < init, rec.calls
    assert (tr.rank, tr.world_size) == (0, 2)


def test_checkpoint_and_export_record_jit_level_and_precision_mode(tmp_path):
    from mindyolox.deploy.export import ExportSpec, export
    from mindyolox.training.checkpoint import read_meta, save_training_state
    from mindyolox.training.hooks.checkpoint import checkpoint_meta
    cfg = _nano()
    options = DeviceOptions(device="Ascend", conv="native", precision_mode="allow_fp32_to_fp16", jit_level="O2")
    tr = SimpleNamespace(epoch=0, iter=3, steps_per_epoch=8, world_size=1, best_ap=0.0, last_ap=None,
                         stale_evals=0, options=options, cfg=cfg)
    path = save_training_state(tmp_path / "last.ckpt", nn.Dense(2, 2), meta=checkpoint_meta(tr))
    saved = read_meta(path)["options"]
    assert (saved["jit_level"], saved["precision_mode"]) == ("O2", "allow_fp32_to_fp16")
    assert DeviceOptions.from_dict(saved) == options
    _, meta = export(cfg, None, ExportSpec("MINDIR", img_size=(64, 64), target="ascend"), tmp_path / "nano",
                     log=lambda *_: None)
    import json
    written = json.loads((tmp_path / "nano.json").read_text())["options"]
    assert written == meta["options"]
    assert written["device"] == "Ascend" and written["jit_level"] == "O0"  # no 910A here
    assert written["precision_mode"] == "must_keep_origin_dtype"


# ----------------------------------------------------------------------------- 5: the sink's signature
def test_sink_signature_matches_the_pipeline_and_turns_the_info_queue_off():
    """The feeder's ``input_signature`` is the pipeline's own (MindSpore's ``_check_inputs``
    accepts it, and refuses a wrong one), and with it ``data_sink``'s Ascend condition for the
    data-info queue (data_sink.py:44-46) is false; without it, true."""
    from mindspore.train._utils import _get_types_and_shapes
    from mindspore.train.dataset_helper import _check_inputs
    from mindyolox.data.loader import create_train_loader
    from mindyolox.training.feeder import sink_signature
    cfg = coco16_cfg(size=64, batch=2)
    loader = create_train_loader(cfg.data, cfg.aug, cfg.train, num_workers=0)
    sig = sink_signature(loader.ms_dataset)
    types, shapes = _get_types_and_shapes(loader.ms_dataset)
    assert [list(t.shape) for t in sig] == [[2, 3, 64, 64], [2, int(cfg.data.max_labels), 5]]
    assert [t.dtype for t in sig] == [mstype.uint8, mstype.float32]
    _check_inputs(sig, shapes, types)
    with pytest.raises(ValueError):
        _check_inputs((Tensor(shape=[2, 3, 64, 65], dtype=mstype.uint8), sig[1]), shapes, types)

    def info_queue(input_signature, sink_size=1, jit_config=None):  # data_sink.py:227-232 and :44-46 on Ascend
        create_info = sink_size == 1 if jit_config is None else True
        return create_info and loader.ms_dataset.get_dataset_size() != 1 and input_signature is None
    assert info_queue(None) and not info_queue(sig)


# ----------------------------------------------------------------------------- 8: tests that can fail
def test_options_that_resolve_to_ascend_build_the_tiered_assigner():
    """Built options, not a flag: the recipe's ``runtime.device=Ascend`` resolves to Ascend
    options, and the training parts built from them rank SimOTA on float16-safe keys."""
    from mindyolox.training.builder import build_training
    built = {}
    for device in ("Ascend", "CPU"):
        cfg = coco16_cfg(f"runtime.device={device}", size=64, batch=2)
        options = resolve_options(cfg)
        assert options.device == device
        parts = build_training(cfg, options, num_workers=0, evaluate=False)
        built[device] = parts.net.loss.assigner.tiered
    assert built == {"Ascend": True, "CPU": False}


def _worst_real_cost(num_classes):
    """The largest real (unpenalised) SimOTA cost the class cost and IoU cost can reach:
    every class predicted with certainty except the gt's (BCE clamped at 100 each), IoU 0."""
    from mindyolox.losses.simota import IOU_COST_WEIGHT, class_cost
    cls = Tensor(np.full((1, 1, num_classes), 30.0, np.float32))
    obj = Tensor(np.full((1, 1), 30.0, np.float32))
    worst = float(class_cost(cls, obj, Tensor(np.zeros((1, 1), np.int32))).asnumpy().max())
    return worst + IOU_COST_WEIGHT * -np.log(1e-8)


def _keys16(real, in_both, usable):
    from mindyolox.losses import SimOTAAssigner
    assigner = SimOTAAssigner(80, tiered=True, key_dtype=mstype.float16)
    return [k.asnumpy() for k in assigner.ranking_keys(Tensor(real), Tensor(in_both), Tensor(usable))]


def test_every_tiered_simota_key_is_finite_in_float16(monkeypatch):
    """The keys the tiered ranking sorts and takes minima of, cast to float16 as a device
    would, hold no inf -- real costs up to the worst the 80-class cost reaches, and the
    excluded pairs' sentinel -- and keep the float32 order (up to float16 ties). The same check
    on the official 1e10 sentinel finds inf (the check can fail)."""
    import mindyolox.losses.simota as simota
    worst = _worst_real_cost(80)
    assert 7900 < worst < 8100
    rng = np.random.default_rng(0)
    real = rng.uniform(0, worst, (2, 5, 300)).astype(np.float32)
    real[0, 0, :3] = (worst, 0.0, 1e-3)
    in_both = rng.random((2, 5, 300)) < 0.3
    usable = rng.random((2, 5, 300)) < 0.6
    usable[0, 0, :3] = True
    keys = _keys16(real, in_both, usable)
    for name, key in zip(("key_in", "key_out", "key_any"), keys):
        assert key.dtype == np.float16
        assert np.isfinite(key).all(), name
        assert (key == np.float16(65504)).any(), name  # excluded pairs are there, as the sentinel
    key_any = keys[2]
    f32 = np.where(usable, real, 65504.0)
    order16 = np.argsort(key_any, axis=-1, kind="stable")
    assert (np.diff(np.take_along_axis(f32, order16, -1), axis=-1) >= -worst * 2 ** -10).all()  # float16 ties only
    monkeypatch.setattr(simota, "_EXCLUDED_FP16", simota._EXCLUDED)  # the official sentinel, 1e10
    with np.errstate(over="ignore"):
        assert not all(np.isfinite(k).all() for k in _keys16(real, in_both, usable))


@pytest.mark.slow  # two graph compiles of nano in float16
def test_graph_mode_half_decode_is_the_float32_decode():
    """``--half`` in graph mode (how test.py / predict.py run it): the decoded boxes equal the
    float32 decode of the float16 network's raw outputs to float32 rounding, not float16's."""
    from mindyolox.models.head import level_grid
    from mindyolox.runtime.context import build_and_load
    assert ms.get_context("mode") == ms.GRAPH_MODE
    cfg = _nano("data.test_size=[192,192]")
    weights = shared_path("weights", "yolox_nano.pth")
    decoded_net, _ = build_and_load(cfg, weights, half=True)
    raw_net, _ = build_and_load(cfg, weights, half=True, decode_in_inference=False)
    x = Tensor(np.random.default_rng(0).uniform(0, 255, (1, 3, 192, 192)).astype(np.float32))
    decoded, raw = decoded_net(x).asnumpy(), raw_net(x).asnumpy()
    parts = [level_grid(192 // s, 192 // s, s) for s in (8, 16, 32)]
    grids = np.concatenate([p[0].asnumpy() for p in parts])
    strides = np.concatenate([p[1].asnumpy() for p in parts])[:, None]
    assert decoded.dtype == raw.dtype == np.float32
    xy = (raw[0, :, :2].astype(np.float64) + grids) * strides
    wh = np.exp(raw[0, :, 2:4].astype(np.float64)) * strides
    np.testing.assert_allclose(decoded[0, :, :2], xy, rtol=1e-6, atol=1e-4)
    np.testing.assert_allclose(decoded[0, :, 2:4], wh, rtol=2e-5)
    big = xy > 128  # float16's step is 0.125 px there: a float16 decode would sit on it
    assert big.any() and np.any(decoded[0, :, :2][big] % 0.125 != 0)


def test_train_under_a_parallel_launch_without_distributed_exits_2(tmp_path):
    """What every msrun worker gets (``MS_WORKER_NUM``, ``_api.py:59``) without ``--distributed``:
    exit code 2, one ``error:`` line naming the variable, no traceback, no run folder -- before
    the model or any graph is built."""
    env = dict(os.environ, MS_WORKER_NUM="2")
    run = tmp_path / "run"
    p = subprocess.run([sys.executable, str(ROOT / "train.py"), "--config", str(ROOT / "configs" / "yolox-nano.yaml"),
                        "--run-dir", str(run), "--no-progress", f"data.data_dir={shared_path('data', 'coco16')}"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 2, (p.returncode, p.stderr[-2000:])
    errors = [line for line in p.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "MS_WORKER_NUM=2" in errors[0] and "--distributed" in errors[0], p.stderr[-2000:]
    assert "Traceback" not in p.stderr and not run.exists()
    assert "train loader" not in p.stdout + p.stderr  # stopped before the data and the model
