"""INT8 static post-training quantization of an exported float32 ONNX model
(``onnxruntime.quantization``), calibrated on images read through the project's own eval
loader and letterbox (``mindyolox.data.create_eval_loader``: exactly the preprocessing of
``test.py`` and of the runners).

    python deploy/quantize.py --model runs/export/nano416.onnx \
        --images ../shared/data/coco_tiny/train2017 --num 32 --output runs/export/nano416_int8.onnx

Format QDQ (QuantizeLinear / DequantizeLinear pairs that onnxruntime's CPU provider fuses
into ``QLinearConv`` etc.), weights int8 per output channel, activations uint8 per tensor,
Percentile (99.999 %) calibration by default (``--method``). Only ``Conv`` (and the ``Mul`` of SiLU and the
``Add`` of residuals with ``--ops all``) are quantized, and three groups of convolutions stay
float32 by default, each measured on nano 416 / coco_tiny (AP50:95, float32 30.52):

- the stem (the Focus conv, first Conv of the graph): quantized alone it drops the AP to
  17.73 (its per-tensor uint8 output step is ~1.0 on 0..255 input scale);
- the depthwise convs (``group > 1``, nano's DWConv): with them and the stem quantized
  (everything but the head) the AP is 0.54; they are cheap in float32;
- the head's 1x1 prediction convs (raw box regression and logits feeding exp / sigmoid).

With these kept float32, 32 calibration images of coco_tiny train2017: percentile 29.99 / 44.32,
minmax 29.52 / 46.12.
``--quantize-stem`` / ``--quantize-depthwise`` / ``--quantize-head`` quantize them too.
The ``.json`` beside the input is copied beside the output with ``graph.dtype = "int8"`` and
the calibration recorded.
"""
import copy
import os
import tempfile

import numpy as np

from ..errors import ConfigError, DataError, MindYOLOXError
from .meta import meta_path, read_meta, write_meta

__all__ = ["calibration_batches", "quantize_onnx", "quantize_exported"]


def calibration_batches(image_dir, img_size, num, batch=1, ann=None):
    """Up to ``num`` letterboxed images ``float32 [b, 3, H, W]`` from a COCO ``ann`` file's
    images, or else the first ``num`` image files of ``image_dir`` (sorted), through the
    project's eval loader."""
    from ..data import COCODataset, create_eval_loader
    dataset = COCODataset(ann, image_dir) if ann else folder_dataset(image_dir, num)
    loader = create_eval_loader({"test_size": list(img_size), "num_workers": 0}, batch, dataset=dataset)
    seen = 0
    for images, index, _, _ in loader:
        take = np.flatnonzero(index >= 0)[: max(0, num - seen)]
        if len(take):
            yield np.ascontiguousarray(images[take], np.float32)
            seen += len(take)
        if seen >= num:
            break


def folder_dataset(folder, num):
    """A label-free :class:`~mindyolox.data.base.DetectionDataset` of the first ``num`` images
    of ``folder`` (sorted by name), for calibration."""
    import cv2
    from ..data.base import DetectionDataset
    from ..predict.source import IMAGE_EXTS
    if not os.path.isdir(folder):
        raise DataError(f"--images {folder}: not a folder")
    files = sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.lower().endswith(IMAGE_EXTS))[:num]
    if not files:
        raise DataError(f"--images {folder}: no images")
    ds = DetectionDataset(os.path.basename(os.path.normpath(folder)))
    for i, p in enumerate(files):
        img = cv2.imread(p, cv2.IMREAD_COLOR)
        if img is None:
            raise DataError(f"calibration image {p} cannot be read")
        ds.ids.append(i)
        ds.paths.append(p)
        ds.sizes.append(img.shape[:2])
        ds.boxes.append(np.zeros((0, 4), np.float32))
        ds.classes.append(np.zeros((0,), np.int64))
    return ds


class _Reader:
    """onnxruntime CalibrationDataReader over :func:`calibration_batches`."""

    def __init__(self, batches, name):
        self.it = iter(batches)
        self.name = name

    def get_next(self):
        x = next(self.it, None)
        return None if x is None else {self.name: x}


def head_prediction_nodes(model):
    """Names of the Conv nodes whose output feeds the head's final Concat (reg/obj/cls preds)."""
    producers = {o: n for n in model.graph.node for o in n.output}
    out = []
    for n in model.graph.node:
        if n.op_type == "Concat" and len(n.input) == 3:
            srcs = [producers.get(i) for i in n.input]
            if all(s is not None and s.op_type == "Conv" for s in srcs):
                out += [s.name for s in srcs]
    return out


def kept_float(model, head=True, stem=True, depthwise=True):
    """Names of the Conv nodes left float32 (module doc)."""
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    out = list(head_prediction_nodes(model)) if head else []
    if stem and convs:
        out.append(convs[0].name)
    if depthwise:
        out += [n.name for n in convs if any(a.name == "group" and a.i > 1 for a in n.attribute)]
    return sorted(set(out))


def quantize_onnx(model_path, output, batches, method="percentile", ops="conv", quantize_head=False,
                  quantize_stem=False, quantize_depthwise=False):
    """Write the int8 model; returns ``(output, facts)``."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process
    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    if method not in methods:
        raise ConfigError(f"--method must be one of {', '.join(methods)}")
    model = onnx.load(model_path)
    exclude = kept_float(model, not quantize_head, not quantize_stem, not quantize_depthwise)
    with tempfile.TemporaryDirectory() as tmp:
        # per-channel DequantizeLinear (its ``axis``) needs opset >= 13
        from .onnx_graph import set_opset
        src = os.path.join(tmp, "opset13.onnx")
        onnx.save(set_opset(model, max(13, _opset(model))), src)
        pre = os.path.join(tmp, "pre.onnx")
        quant_pre_process(src, pre, skip_symbolic_shape=True)
        reader = _Reader(batches, model.graph.input[0].name)
        quantize_static(pre, output, reader, quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=methods[method], nodes_to_exclude=exclude,
                        op_types_to_quantize=["Conv"] if ops == "conv" else ["Conv", "Mul", "Add", "Concat", "MaxPool"])
    return output, {"excluded_nodes": len(exclude), "method": method, "ops": ops}


def _opset(model):
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def quantize_exported(model, images, num=32, ann=None, output=None, method="percentile", ops="conv",
                      quantize_head=False, quantize_stem=False, quantize_depthwise=False, log=print):
    """``deploy/quantize.py``: the float32 ``.onnx`` ``model`` (with its export ``.json``)
    calibrated on ``num`` images of folder ``images`` (or of COCO ``ann``) and written as int8
    to ``output`` (default ``<model>_int8.onnx``) with its ``.json`` (``graph.dtype = "int8"``,
    the calibration recorded). Returns ``(output, facts)``. One-line errors: not an existing
    ``.onnx``, ``num`` <= 0, a graph with NMS inside."""
    if not str(model).lower().endswith(".onnx") or not os.path.isfile(model):
        raise MindYOLOXError(f"--model {model}: not an existing .onnx file")
    if num <= 0:
        raise ConfigError(f"--num must be positive, got {num}")
    meta = read_meta(model)
    if meta.get("graph", {}).get("nms"):
        raise ConfigError(f"{model}: quantize the network without --nms (export without it)")
    output = output or os.path.splitext(model)[0] + "_int8.onnx"
    size = meta["input"]["shape"][2:4]
    batch = 1 if meta["input"].get("dynamic_batch") else int(meta["input"]["shape"][0])
    batches = calibration_batches(images, size, num, batch, ann)
    log(f"calibrating {model} on {num} images of {images} ({method})")
    _, facts = quantize_onnx(model, output, batches, method, ops, quantize_head, quantize_stem, quantize_depthwise)
    out_meta = copy.deepcopy(meta)
    out_meta["file"] = os.path.basename(output)
    out_meta["graph"]["dtype"] = "int8"
    out_meta["quantization"] = {"tool": "onnxruntime.quantization.quantize_static", "format": "QDQ",
                                "weights": "int8 per channel", "activations": "uint8 per tensor",
                                "calibration_images": int(num), "calibration_folder": str(images),
                                "from": os.path.basename(model), **facts}
    write_meta(meta_path(output), out_meta)
    log(f"wrote {output} (int8, {facts['excluded_nodes']} convs kept float32) and {meta_path(output)}")
    return output, facts
