"""Export a YOLOX model for deployment: MindIR, ONNX (and AIR on Ascend), plus the metadata
a runner needs (``<output>.json``) and, for ``target="ascend"``, the Ascend recipe files.

Every format is exported from the fused-convolution variant (:mod:`mindyolox.models.fold`):
BatchNorm folded into the convolution weights, no BN / Sqrt / Div op in the graph.

What is inside the graph (``graph`` in the JSON):

- raw (default): ``float32 [B, A, 5+C]`` rows ``dx, dy, log w, log h, obj, cls...`` (the
  official export, ``decode_in_inference=False``); the runner decodes with the strides.
- ``decode``: rows ``cx, cy, w, h`` in input pixels (official ``decode_in_inference``),
  the ``exp`` in float32 (MindSpore's CPU float32 exp is ~5e-6 relative off, see
  :mod:`mindyolox.options`; float64 in a portable graph would add Cast ops).
- ``nms`` (ONNX only, implies ``decode``): the end-to-end outputs of
  :func:`mindyolox.deploy.onnx_graph.append_nms`. MindIR: refused with one line (MindSpore
  2.10's ``NMSWithMask`` handles one class on a padded ``[N, 5]`` box list per image; a
  class-aware, batched, fixed-top-K NMS would be a custom graph that was not built here).

Convolution implementation (``conv``): ``im2col`` for a MindIR targeted at CPU (MindSpore's
own CPU ``Conv2D`` is oneDNN's reference kernel, ~5x slower end to end for nano, see
mindyolox/models/conv.py), ``native`` ``Conv2D`` for ONNX, for ``target="ascend"`` and for
AIR. Batch: fixed, or for ONNX ``dynamic_batch`` (exported at batch 1 and rewritten by
:func:`~mindyolox.deploy.onnx_graph.make_batch_dynamic`, checked by running batch 1 and 2).
MindIR with a dynamic batch is refused with one line: MindSpore 2.10's export traces the
graph with the example input's static shape (the batch is baked into the Focus, upsample and
head reshapes). ``half``: float16 MindIR (mixed precision O2 on the fused model, float32
input and outputs); ONNX float16 is refused (MindSpore's ONNX exporter of a float16 network
and onnxruntime's CPU provider, which has no float16 ``Conv`` kernel on x86, would give a
file nobody here can run).
"""
import json
import os

import numpy as np

from ..errors import ConfigError, MindYOLOXError
from ..models.blocks import Focus, Upsample2x
from ..models.fold import count_batchnorms, fold_batchnorms
from ..utils.files import normal_mode
from .meta import PREPROCESS, write_meta

__all__ = ["FORMATS", "ExportSpec", "export"]

FORMATS = {"MINDIR": ".mindir", "ONNX": ".onnx", "AIR": ".air"}
DEFAULT_OPSET = 11


class ExportSpec:
    """Everything one export is asked for (validated by :meth:`check`)."""

    def __init__(self, fmt="MINDIR", batch=1, img_size=(640, 640), target="cpu", conv=None, decode=False,
                 nms=False, conf=0.25, iou=0.45, topk=100, class_agnostic=False, dynamic_batch=False,
                 opset=DEFAULT_OPSET, half=False, simplify=True):
        self.fmt = str(fmt).upper()
        self.batch, self.img_size = int(batch), (int(img_size[0]), int(img_size[1]))
        self.target = str(target).lower()
        self.decode, self.nms = bool(decode or nms), bool(nms)
        self.conf, self.iou, self.topk, self.class_agnostic = float(conf), float(iou), int(topk), bool(class_agnostic)
        self.dynamic_batch, self.opset, self.half, self.simplify = bool(dynamic_batch), int(opset), bool(half), bool(simplify)
        if conv is None:
            conv = "im2col" if (self.fmt == "MINDIR" and self.target == "cpu") else "native"
        self.conv = conv

    def check(self):
        if self.fmt not in FORMATS:
            raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, got {self.fmt}")
        if self.target not in ("cpu", "gpu", "ascend"):
            raise ConfigError(f"--target must be cpu, gpu or ascend, got {self.target}")
        if self.batch <= 0:
            raise ConfigError(f"--batch must be positive, got {self.batch}")
        if self.conv == "im2col" and self.fmt != "MINDIR":
            raise ConfigError(f"--conv im2col is a MindSpore-CPU formulation; {self.fmt} needs --conv native")
        if self.conv == "im2col" and self.target == "ascend":
            raise ConfigError("--conv im2col is for CPU; --target ascend needs --conv native")
        if self.nms and self.fmt != "ONNX":
            raise ConfigError(f"--nms is ONNX only: MindSpore 2.10 has no batched class-aware NMS op to put "
                              f"in a {self.fmt} graph (NMSWithMask is single-class, one image); export with "
                              f"--decode and run NMS on the host (deploy/infer.py does)")
        if self.dynamic_batch and self.fmt != "ONNX":
            raise ConfigError(f"--dynamic-batch is ONNX only: MindSpore 2.10 exports {self.fmt} with the example "
                              f"input's static batch (use --batch B, or ATC --dynamic_batch_size for .om)")
        if self.half and self.fmt == "ONNX":
            raise ConfigError("--half: float16 ONNX is not written (onnxruntime's x86 CPU provider has no float16 "
                              "Conv kernel to check it with); export float16 MindIR, or float32 ONNX and let "
                              "ATC/TensorRT lower the precision")
        if not 11 <= self.opset <= 21:
            raise ConfigError(f"--opset must be in 11..21, got {self.opset}")
        if not 0 < self.topk:
            raise ConfigError(f"--topk must be positive, got {self.topk}")
        for name, v in (("--conf", self.conf), ("--iou", self.iou)):
            if not 0.0 <= v <= 1.0:
                raise ConfigError(f"{name} must be in [0, 1], got {v}")
        return self


def build_fused(cfg, weights, spec):
    """The fused, eval-mode network to export (float16 when ``spec.half``); returns
    ``(net, options, load_report)``."""
    from ..convert.weights import load_weights
    from ..models import build_model
    from ..models.amp import mixed_precision
    from ..options import resolve_options
    device = {"cpu": "CPU", "gpu": "GPU", "ascend": "Ascend"}[spec.target]
    options = resolve_options(cfg, device=device, conv=spec.conv, decode_exp="float32",
                              amp_level="O2" if spec.half else "O0", cpu_kernels=False)
    model = build_model(cfg, options, decode_in_inference=spec.decode)
    report = load_weights(model, weights) if weights else None   # None: random init (speed only)
    fold_batchnorms(model)
    if count_batchnorms(model):
        raise MindYOLOXError("BatchNorm folding left a BatchNorm cell in the model")
    if spec.fmt == "ONNX":   # the ops onnxruntime runs fastest (Focus / Upsample2x docstrings)
        for _, cell in model.cells_and_names():
            if isinstance(cell, Focus):
                cell.by_slices = True
            elif isinstance(cell, Upsample2x):
                cell.by_resize = True
    net = mixed_precision(model, options.amp_level)
    net.set_train(False)
    return net, options, report


def _first_line(e):
    return next((ln.strip() for ln in str(e).splitlines() if ln.strip()), type(e).__name__)


def _ms_export(net, spec, output):
    import mindspore as ms
    batch = 1 if spec.dynamic_batch else spec.batch
    x = ms.Tensor(np.zeros((batch, 3) + spec.img_size, np.float32))
    os.makedirs(os.path.dirname(os.path.abspath(output)) or ".", exist_ok=True)
    try:
        if spec.fmt == "ONNX":
            ms.onnx.export(net, x, file_name=str(output) + ".onnx", input_names=["images"], output_names=["outputs"])
        else:
            ms.export(net, x, file_name=str(output), file_format=spec.fmt)
    except (RuntimeError, ValueError, TypeError) as e:
        raise MindYOLOXError(f"{spec.fmt} export failed: {_first_line(e)}") from None
    path = str(output) + FORMATS[spec.fmt]
    if not os.path.isfile(path):
        raise MindYOLOXError(f"{spec.fmt} export wrote no file at {path}")
    return normal_mode(path)   # MindSpore leaves it read-only (0400)


def _check_batch_rows(path, img_size):
    """Run the dynamic-batch ONNX at batch 1 and 2: the rows of batch 2 must equal two
    batch-1 runs (within 1e-4), else the rewrite is wrong for this graph."""
    import onnxruntime as ort
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    x = np.random.RandomState(0).uniform(0, 255, (2, 3) + tuple(img_size)).astype(np.float32)
    two = sess.run(None, {"images": x})
    for i in range(2):
        one = sess.run(None, {"images": x[i:i + 1]})
        for a, b in zip(one, two):
            if a.shape[1:] != b.shape[1:] or np.abs(a[0].astype(np.float64) - b[i]).max() > 1e-3:
                raise MindYOLOXError(f"{path}: the dynamic-batch rewrite changed the outputs (batch 2 row {i} "
                                     f"differs from batch 1)")


def _post_onnx(path, spec):
    """Dynamic batch, NMS, opset and simplification on the written ONNX; returns facts for
    the metadata."""
    import onnx
    from . import onnx_graph
    model = onnx.load(path)
    exporter_nodes = len(model.graph.node)
    onnx_graph.resize_by_scales(model)
    if spec.dynamic_batch:
        try:
            onnx_graph.make_batch_dynamic(model)
        except ValueError as e:
            raise MindYOLOXError(f"--dynamic-batch: {e}") from None
    tool, note = None, "--no-simplify"
    if spec.simplify:   # the network part only, before the NMS tail
        model, tool, note = onnx_graph.simplify(model)
    if spec.nms:
        onnx_graph.append_nms(model, spec.conf, spec.iou, spec.topk, spec.class_agnostic)
    model = onnx_graph.set_opset(model, spec.opset)
    onnx.checker.check_model(model)
    onnx.save(model, path)
    if spec.dynamic_batch:
        _check_batch_rows(path, spec.img_size)
    counts = onnx_graph.op_counts(model)
    forbidden = {op: counts[op] for op in ("BatchNormalization", "Sqrt", "Div") if op in counts}
    if forbidden:
        raise MindYOLOXError(f"{path}: BatchNorm folding left {forbidden} in the graph")
    return {"exporter_nodes": exporter_nodes, "node_count": len(model.graph.node), "op_counts": counts,
            "simplified_by": tool, "simplify_note": note}


def outputs_description(spec, num_classes, anchors):
    """The ``outputs`` list of the metadata: name, shape (``"B"`` for the batch), meaning."""
    b = "B" if spec.dynamic_batch else spec.batch
    if spec.nms:
        k = spec.topk
        return [{"name": "num_dets", "shape": [b], "dtype": "int64", "meaning": "valid rows per image"},
                {"name": "boxes", "shape": [b, k, 4], "dtype": "float32",
                 "meaning": "x1, y1, x2, y2 in network-input pixels (divide by the letterbox ratio r)"},
                {"name": "scores", "shape": [b, k], "dtype": "float32", "meaning": "obj * cls, descending"},
                {"name": "classes", "shape": [b, k], "dtype": "int64", "meaning": "class id"}]
    rows = ("cx, cy, w, h (input pixels)" if spec.decode else "dx, dy, log w, log h (raw)") + \
        ", sigmoid(obj), sigmoid(cls) x C"
    return [{"name": "outputs", "shape": [b, anchors, 5 + num_classes], "dtype": "float32", "meaning": rows}]


def export(cfg, weights, spec, output, config_name="", log=print):
    """Export per ``spec`` (an :class:`ExportSpec`) to ``output`` + suffix and write
    ``output.json``; returns ``(path, meta)``."""
    from ..predict.predictor import class_names_for
    from ..utils.postprocess import level_sizes
    spec.check()
    net, options, report = build_fused(cfg, weights, spec)
    log(report.summary() if report is not None else "random initialisation (no weights): for timing only")
    path = _ms_export(net, spec, output)
    facts = _post_onnx(path, spec) if spec.fmt == "ONNX" else {}
    strides = [int(s) for s in cfg.model.strides]
    anchors = sum(h * w for h, w in level_sizes(spec.img_size, strides))
    num_classes = int(cfg.model.num_classes)
    meta = {
        "format": spec.fmt, "file": os.path.basename(path), "target": spec.target,
        "input": {"name": "images", "shape": ["B" if spec.dynamic_batch else spec.batch, 3, *spec.img_size],
                  "dtype": "float32", "layout": "NCHW", "dynamic_batch": spec.dynamic_batch},
        "input_shape": [spec.batch if not spec.dynamic_batch else -1, 3, *spec.img_size],
        "preprocess": PREPROCESS,
        "graph": {"bn_folded": True, "decode": spec.decode,
                  "nms": ({"conf": spec.conf, "iou": spec.iou, "topk": spec.topk,
                           "class_agnostic": spec.class_agnostic} if spec.nms else None),
                  "conv": spec.conv, "dtype": "float16" if spec.half else "float32",
                  "opset": spec.opset if spec.fmt == "ONNX" else None, **facts},
        "outputs": outputs_description(spec, num_classes, anchors),
        # kept for older readers of the JSON
        "outputs_kind": "nms" if spec.nms else ("decoded" if spec.decode else "raw"),
        "strides": strides, "num_classes": num_classes, "class_names": list(class_names_for(cfg)),
        "options": options.to_dict(), "config": str(config_name), "weights": str(weights),
    }
    write_meta(str(output) + ".json", meta)
    return path, meta
