"""Weight import: torch-free .pth reading, load_weights (.pth/.npz/.ckpt), tools/convert_weights.py."""
import json
import struct
import subprocess
import sys
import zipfile

import mindspore as ms
import numpy as np
import pytest

from .conftest import ROOT, load_npz, shared_path
from mindyolox.convert.official import mindyolox_to_official
from mindyolox.convert.torch_pickle import load_torch_file, read_torch_state_dict
from mindyolox.convert.weights import load_weights, save_checkpoint
from mindyolox.errors import WeightsError
from mindyolox.models import build_model

NANO = {"model": {"backbone": "cspdarknet", "depth": 0.33, "width": 0.25, "depthwise": True}}
NANO_PTH = ("weights", "yolox_nano.pth")
NANO_NPZ = ("reference", "yolox-nano_s0_320_b2_0.3.0_weights.npz")
BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


def nano(num_classes=80):
    return build_model({"model": dict(NANO["model"], num_classes=num_classes)})


def values(model):
    return {n: p.asnumpy().copy() for n, p in model.parameters_and_names()}


# ------------------------------------------------------------------ hand-written torch.save files
class G:
    """A pickle global ``module.name``."""

    def __init__(self, module, name):
        self.module, self.name = module, name


class Call:
    """``func(*args)`` in the pickle (REDUCE)."""

    def __init__(self, func, *args):
        self.func, self.args = func, args


class Pid:
    """A persistent id (BINPERSID), as torch writes for storages."""

    def __init__(self, *fields):
        self.fields = fields


def _emit(obj):
    """Protocol-2 pickle opcodes for a tiny object language; independent of our reader."""
    if isinstance(obj, G):
        return b"c" + obj.module.encode() + b"\n" + obj.name.encode() + b"\n"
    if isinstance(obj, Call):
        return _emit(obj.func) + _emit(tuple(obj.args)) + b"R"
    if isinstance(obj, Pid):
        return _emit(tuple(obj.fields)) + b"Q"
    if obj is None:
        return b"N"
    if isinstance(obj, bool):
        return b"\x88" if obj else b"\x89"
    if isinstance(obj, int):
        return b"J" + struct.pack("<i", obj)
    if isinstance(obj, str):
        data = obj.encode()
        return b"X" + struct.pack("<I", len(data)) + data
    if isinstance(obj, tuple):
        return b"(" + b"".join(_emit(x) for x in obj) + b"t"
    if isinstance(obj, dict):
        return b"}(" + b"".join(_emit(k) + _emit(v) for k, v in obj.items()) + b"u"
    raise TypeError(type(obj))


def write_pth(path, obj, storages, byteorder="little"):
    """A torch.save-style zip: ``archive/data.pkl``, ``archive/data/<key>``, ``archive/byteorder``."""
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", b"\x80\x02" + _emit(obj) + b".")
        if byteorder is not None:
            z.writestr("archive/byteorder", byteorder)
        for key, raw in storages.items():
            z.writestr(f"archive/data/{key}", raw)


def tensor(stype, key, numel, offset, size, stride):
    storage = Pid("storage", G("torch", stype), key, "cpu", numel)
    ordered = Call(G("collections", "OrderedDict"))
    return Call(G("torch._utils", "_rebuild_tensor_v2"), storage, offset, tuple(size), tuple(stride),
                False, ordered)


@pytest.mark.parametrize("byteorder", ["little", "big", None])
def test_reader_handles_strides_offsets_dtypes_and_byteorder(tmp_path, byteorder):
    end = ">" if byteorder == "big" else "<"
    flat = np.arange(12, dtype=np.float32) * 1.5 - 4
    bf16_vals = np.array([1.5, -2.0, 3.140625, 0.0], dtype=np.float32)
    bf16_bits = (bf16_vals.view(np.uint32) >> 16).astype(np.uint16)
    half = np.array([0.5, -1.25, 65504.0], dtype=np.float16)
    longs = np.array([3, -7, 2 ** 40], dtype=np.int64)
    storages = {"0": flat.astype(end + "f4").tobytes(), "1": bf16_bits.astype(end + "u2").tobytes(),
                "2": half.astype(end + "f2").tobytes(), "3": longs.astype(end + "i8").tobytes()}
    sd = {
        "module.strided": tensor("FloatStorage", "0", 12, 2, (2, 3), (1, 2)),
        "module.shared": Call(G("torch._utils", "_rebuild_parameter"),
                              tensor("FloatStorage", "0", 12, 0, (4,), (1,)), True,
                              Call(G("collections", "OrderedDict"))),
        "module.bf16": tensor("BFloat16Storage", "1", 4, 0, (2, 2), (2, 1)),
        "module.half": tensor("HalfStorage", "2", 3, 1, (2,), (1,)),
        "module.long": tensor("LongStorage", "3", 3, 0, (3,), (1,)),
        "module.empty": tensor("FloatStorage", "0", 12, 0, (0, 3), (3, 1)),
    }
    path = tmp_path / "synthetic.pth"
    write_pth(path, {"start_epoch": 7, "state_dict": sd}, storages, byteorder)

    out = read_torch_state_dict(path)
    assert sorted(out) == ["bf16", "empty", "half", "long", "shared", "strided"]
    expected = np.array([[flat[2 + i + 2 * j] for j in range(3)] for i in range(2)])
    np.testing.assert_array_equal(out["strided"], expected)
    assert out["strided"].flags["C_CONTIGUOUS"] and out["strided"].dtype == np.dtype("=f4")
    np.testing.assert_array_equal(out["shared"], flat[:4])
    assert out["bf16"].dtype == np.float32
    np.testing.assert_array_equal(out["bf16"], bf16_vals.reshape(2, 2))
    np.testing.assert_array_equal(out["half"], half[1:])
    np.testing.assert_array_equal(out["long"], longs)
    assert out["long"].dtype == np.int64 and out["empty"].shape == (0, 3)


def test_reader_refuses_arbitrary_globals(tmp_path):
    marker = tmp_path / "pwned"
    evil = Call(G("os", "system"), f"touch {marker}")
    path = tmp_path / "evil.pth"
    write_pth(path, {"model": {"w": evil}}, {})
    with pytest.raises(WeightsError, match=r"evil\.pth: refusing to unpickle 'os\.system'"):
        load_torch_file(path)
    assert not marker.exists()


def test_reader_rejects_out_of_bounds_view_and_legacy_format(tmp_path):
    path = tmp_path / "oob.pth"
    write_pth(path, {"w": tensor("FloatStorage", "0", 4, 2, (3,), (1,))},
              {"0": np.zeros(4, np.float32).tobytes()})
    with pytest.raises(WeightsError, match=r"oob\.pth: corrupt PyTorch checkpoint.*exceeds its storage"):
        read_torch_state_dict(path)
    legacy = tmp_path / "legacy.pth"
    legacy.write_bytes(b"\x80\x02\x8a\x0a" + bytes(10))
    with pytest.raises(WeightsError, match=r"legacy\.pth: legacy .*torch>=1\.6"):
        read_torch_state_dict(legacy)


# ------------------------------------------------------------------ the official nano .pth
def test_official_pth_reads_with_torch_unavailable():
    code = (
        "import sys, json\n"
        "sys.modules['torch'] = None\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "try:\n    import torch\nexcept ImportError:\n    pass\nelse:\n    raise SystemExit('torch importable')\n"
        "from mindyolox.convert.torch_pickle import read_torch_state_dict\n"
        f"sd = read_torch_state_dict({str(shared_path(*NANO_PTH))!r})\n"
        "skip = ('running_mean', 'running_var', 'num_batches_tracked')\n"
        "print(json.dumps({'count': len(sd), 'params': int(sum(v.size for k, v in sd.items()\n"
        "    if not k.endswith(skip))), 'dtypes': sorted({str(v.dtype) for k, v in sd.items()\n"
        "    if not k.endswith('num_batches_tracked')})}))\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    info = json.loads(res.stdout.strip().splitlines()[-1])
    # 538 model tensors + one num_batches_tracked per BatchNorm (538 = 104 BN * 4 + 122)
    assert info == {"count": 642, "params": 912159, "dtypes": ["float32"]}


def test_official_pth_loads_strictly_into_nano():
    model = nano()
    before = values(model)
    report = load_weights(model, shared_path(*NANO_PTH))
    assert len(report.loaded) == 538 and not report.missing and not report.unexpected
    assert report.ignored == 104  # num_batches_tracked
    assert report.summary().startswith(f"loaded 538 tensors from {shared_path(*NANO_PTH)}; BatchNorm folded ")
    after = values(model)
    sd = read_torch_state_dict(shared_path(*NANO_PTH))
    for name, value in after.items():
        np.testing.assert_array_equal(value, sd[mindyolox_to_official(name)], err_msg=name)
    # BN is folded into the convs (README): gamma stays 1 and moving_mean 0, as at init;
    # every other tensor (conv weights, folded biases, running_var = 1-eps) changes.
    unchanged = {n for n in after if np.array_equal(after[n], before[n])}
    assert unchanged == {n for n in after if n.endswith((".gamma", ".moving_mean"))}
    assert len(unchanged) == 2 * 104


def test_official_npz_loads_with_running_stats():
    arrays = load_npz(*NANO_NPZ)
    model = nano()
    before = values(model)
    report = load_weights(model, shared_path(*NANO_NPZ))
    assert len(report.loaded) == 538 and report.ignored == 104
    after = values(model)
    for name, value in after.items():
        np.testing.assert_array_equal(value, arrays[mindyolox_to_official(name)], err_msg=name)
    # the reference running stats (and perturbed BN affine params) are not the init 0/1, so
    # every tensor, running stats included, must have been replaced
    assert [n for n in after if np.array_equal(after[n], before[n])] == []
    assert sum(n.endswith(("moving_mean", "moving_variance")) for n in after) == 208


# ------------------------------------------------------------------ mismatches and bad input
def test_nano_pth_into_yolox_s_lists_shape_differences():
    model = build_model({"model": {"backbone": "cspdarknet", "depth": 0.33, "width": 0.5}})
    before = values(model)
    with pytest.raises(WeightsError) as e:
        load_weights(model, shared_path(*NANO_PTH))
    msg = str(e.value)
    assert "\n" not in msg and "yolox_nano.pth does not fit the model" in msg
    assert "backbone.backbone.stem.conv.conv.weight model (32,12,3,3) vs file (16,12,3,3)" in msg
    assert "missing from the file" in msg and "unknown to the model" in msg
    assert "classes" not in msg
    after = values(model)  # a failed load assigns nothing
    assert all(np.array_equal(after[n], before[n]) for n in after)


def test_class_count_mismatch_is_named_and_skippable():
    model = nano(num_classes=20)
    with pytest.raises(WeightsError, match="checkpoint has 80 classes, model has 20"):
        load_weights(model, shared_path(*NANO_PTH))
    init_cls = model.head.cls_preds[0].weight.asnumpy().copy()
    report = load_weights(model, shared_path(*NANO_PTH), skip_mismatched=True)
    assert len(report.loaded) == 532
    assert sorted(n for n, _, _ in report.mismatched) == sorted(
        f"head.cls_preds.{i}.{k}" for i in range(3) for k in ("weight", "bias"))
    assert "checkpoint has 80 classes, model has 20" in report.summary()
    np.testing.assert_array_equal(model.head.cls_preds[0].weight.asnumpy(), init_cls)
    sd = read_torch_state_dict(shared_path(*NANO_PTH))
    np.testing.assert_array_equal(model.head.reg_preds[0].weight.asnumpy(), sd["head.reg_preds.0.weight"])


def test_missing_and_non_checkpoint_files(tmp_path):
    missing = tmp_path / "nope.pth"
    with pytest.raises(WeightsError, match=f"weights file not found: {missing}"):
        load_weights(nano(), missing)
    text = tmp_path / "x.pth"
    text.write_text("not weights\n")
    with pytest.raises(WeightsError) as e:
        load_weights(nano(), text)
    assert str(e.value) == f"{text}: not a PyTorch checkpoint (expected a torch.save zip archive)"
    bad_ckpt = tmp_path / "x.ckpt"
    bad_ckpt.write_text("not weights\n")
    with pytest.raises(WeightsError, match=r"x\.ckpt: not a readable MindSpore checkpoint"):
        load_weights(nano(), bad_ckpt)
    other = tmp_path / "x.h5"
    other.write_text("")
    with pytest.raises(WeightsError, match=r"x\.h5: unknown weights format"):
        load_weights(nano(), other)


# ------------------------------------------------------------------ .ckpt round trips
def test_ckpt_round_trip_and_training_checkpoint_prefix(tmp_path):
    src = nano()
    load_weights(src, shared_path(*NANO_NPZ))
    expected = values(src)
    path = save_checkpoint(src, tmp_path / "nano.ckpt")
    dst = nano()
    assert len(load_weights(dst, path).loaded) == 538
    got = values(dst)
    assert all(np.array_equal(got[n], expected[n]) for n in expected)

    # a training checkpoint: raw network and EMA weights side by side, plus a counter
    entries = [{"name": f"network.{n}", "data": ms.Tensor(v * 0)} for n, v in expected.items()]
    entries += [{"name": f"ema.{n}", "data": ms.Tensor(v)} for n, v in expected.items()]
    entries.append({"name": "global_step", "data": ms.Tensor(np.array([5], np.int32))})
    train_ckpt = tmp_path / "train.ckpt"
    ms.save_checkpoint(entries, str(train_ckpt))
    dst = nano()
    report = load_weights(dst, train_ckpt)
    assert report.prefix == "ema." and len(report.loaded) == 538
    assert report.ignored == 538 + 1 and not report.unexpected  # network.* and global_step
    got = values(dst)
    assert all(np.array_equal(got[n], expected[n]) for n in expected)
    load_weights(dst, train_ckpt, prefix="network.")
    assert np.all(dst.head.reg_preds[0].weight.asnumpy() == 0)


def _convert(*args):
    return subprocess.run([sys.executable, str(ROOT / "tools" / "convert_weights.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)


@pytest.mark.parametrize("source", [NANO_PTH, NANO_NPZ], ids=["pth", "npz"])
def test_convert_tool_writes_identical_ckpt(tmp_path, source):
    out = tmp_path / "nano.ckpt"
    res = _convert(shared_path(*source), "--config", ROOT / "configs" / "yolox-nano.yaml", "-o", out)
    assert res.returncode == 0, res.stderr
    line = res.stdout.strip()  # the .pth's BatchNorm is folded: the summary says so (tests/test_folded_bn.py)
    assert line.startswith(f"loaded 538 tensors from {shared_path(*source)}") and line.endswith(f"; wrote {out}")
    assert ("BatchNorm folded" in line) == (source == NANO_PTH)
    model = nano()
    load_weights(model, out)
    sd = read_torch_state_dict(shared_path(*source)) if source == NANO_PTH else load_npz(*source)
    for name, value in values(model).items():
        np.testing.assert_array_equal(value, sd[mindyolox_to_official(name)], err_msg=name)


def test_convert_tool_bad_input_is_one_line(tmp_path):
    bad = tmp_path / "x.pth"
    bad.write_text("hello\n")
    out = tmp_path / "x.ckpt"
    res = _convert(bad, "--config", ROOT / "configs" / "yolox-nano.yaml", "-o", out)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [f"error: {bad}: not a PyTorch checkpoint "
                                               "(expected a torch.save zip archive)"]
    assert not out.exists()
