"""Post-processing of the ONNX graph written by ``mindspore.onnx.export`` (``onnx`` package).

MindSpore 2.10's exporter writes opset 11 with a fixed batch: even with ``dynamic_axes`` its
``Reshape`` shape constants hold the export batch. :func:`make_batch_dynamic` rewrites them
(the graph is exported at batch 1 and every ``Reshape`` of the YOLOX graph -- Focus,
upsampling, head -- has the batch as its first target dimension, which becomes ``0``, "copy
from the input"; ``Expand`` broadcasts a 1 already) and names the batch axis ``batch`` on
the input and the outputs. The exporter verifies the result by running batch 1 and 2.

:func:`append_nms` adds the end-to-end postprocessing after a decoded output
``[B, A, 5+C]`` (cx, cy, w, h px, obj, cls...), the official ``postprocess`` in graph form:
``score = obj * max(cls)``, class = argmax; class-aware greedy NMS by ONNX
``NonMaxSuppression`` fed ``scores [B, C, A]`` that are 0 except at each anchor's argmax
class (so NMS per ONNX class is NMS per predicted class, as the official ``batched_nms``;
``class_agnostic``: one class row), suppression when IoU > ``iou``, ``score > conf``; then the
``topk`` best kept anchors per image. Outputs (``topk`` = K):

- ``boxes``  float32 [B, K, 4] x1, y1, x2, y2 in network-input pixels (divide by the
  letterbox ratio r for the original image), zeros past ``num_dets``;
- ``scores`` float32 [B, K] obj * cls, by descending score, zeros past ``num_dets``;
- ``classes`` int64 [B, K] class ids (0 past ``num_dets``);
- ``num_dets`` int64 [B] number of valid rows (<= K).
"""
import numpy as np

__all__ = ["op_counts", "resize_by_scales", "make_batch_dynamic", "append_nms", "set_opset", "simplify", "NMS_OUTPUTS"]

NMS_OUTPUTS = ("num_dets", "boxes", "scores", "classes")


def op_counts(model):
    """``{op_type: count}`` of an ``onnx.ModelProto`` (main graph)."""
    out = {}
    for n in model.graph.node:
        out[n.op_type] = out.get(n.op_type, 0) + 1
    return out


def _constant_arrays(graph):
    """name -> (numpy value, setter) for initializers and Constant nodes."""
    from onnx import numpy_helper
    found = {}
    for init in graph.initializer:
        found[init.name] = (numpy_helper.to_array(init),
                            lambda arr, t=init: t.CopyFrom(numpy_helper.from_array(arr, t.name)))
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    found[node.output[0]] = (numpy_helper.to_array(attr.t),
                                             lambda arr, a=attr: a.t.CopyFrom(numpy_helper.from_array(arr, a.t.name)))
    return found


def resize_by_scales(model):
    """Give every ``Resize`` that MindSpore's exporter wrote with a constant output ``sizes``
    (``[B, C, H', W']``, batch included) the equivalent constant ``scales`` instead, so the node
    holds for any batch (and any input size). The input shapes come from ONNX shape inference
    of the exported (static) graph. Returns the number of nodes rewritten."""
    import onnx
    from onnx import numpy_helper
    graph = model.graph
    resizes = [n for n in graph.node if n.op_type == "Resize" and len(n.input) == 4 and n.input[3]]
    if not resizes:
        return 0
    consts = _constant_arrays(graph)
    inferred = onnx.shape_inference.infer_shapes(model).graph
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in list(inferred.value_info) + list(inferred.input)}
    for node in resizes:
        sizes, _ = consts[node.input[3]]
        shape = shapes[node.input[0]]
        if not shape or 0 in shape:
            raise ValueError(f"Resize {node.name}: input shape unknown")
        scales = np.asarray(sizes, np.float64) / np.asarray(shape, np.float64)
        name = node.name + "_scales"
        graph.initializer.append(numpy_helper.from_array(scales.astype(np.float32), name))
        node.input[2] = name
        del node.input[3]
    return len(resizes)


def make_batch_dynamic(model, batch_name="batch"):
    """Rewrite a batch-1 export for any batch (module doc). Returns the number of Reshape
    shapes rewritten; raises ValueError when a Reshape's shape is not a constant starting
    with 1 (then the graph cannot be made batch-dynamic this way)."""
    graph = model.graph
    consts = _constant_arrays(graph)
    n = 0
    for node in graph.node:
        if node.op_type != "Reshape":
            continue
        name = node.input[1]
        if name not in consts:
            raise ValueError(f"Reshape {node.name}: shape is not a constant")
        arr, setter = consts[name]
        if arr.ndim != 1 or arr[0] not in (1, 0, -1):
            raise ValueError(f"Reshape {node.name}: shape {arr.tolist()} does not start with the batch")
        if arr[0] == 1:
            arr = arr.copy()
            arr[0] = 0
            setter(arr)
            n += 1
    for value in list(graph.input) + list(graph.output):
        dims = value.type.tensor_type.shape.dim
        if len(dims):
            dims[0].ClearField("dim_value")
            dims[0].dim_param = batch_name
    del graph.value_info[:]
    return n


def append_nms(model, conf, iou, topk, class_agnostic=False):
    """Append the end-to-end NMS (module doc) after the model's single decoded output; written
    in opset 11 (the exporter's), converted afterwards by :func:`set_opset`."""
    from onnx import TensorProto, helper, numpy_helper
    graph = model.graph
    src = graph.output[0].name
    nodes, inits = [], []

    def const(name, value, dtype):
        inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), "nms_" + name))
        return "nms_" + name

    def node(op, inputs, outputs=None, **attrs):
        outs = outputs or [f"nms_{op.lower()}_{len(nodes)}"]
        nodes.append(helper.make_node(op, inputs, outs, name=f"nms/{op}_{len(nodes)}", **attrs))
        return outs[0] if len(outs) == 1 else outs

    ax2 = const("axis2", [2], np.int64)
    s0, s2, s4, s5 = (const(f"s{v}", [v], np.int64) for v in (0, 2, 4, 5))
    big = const("end", [1 << 30], np.int64)
    cxcy = node("Slice", [src, s0, s2, ax2])
    wh = node("Slice", [src, s2, s4, ax2])
    obj = node("Slice", [src, s4, s5, ax2])                         # [B, A, 1]
    cls = node("Slice", [src, s5, big, ax2])                        # [B, A, C]
    half = node("Mul", [wh, const("half", 0.5, np.float32)])
    boxes = node("Concat", [node("Sub", [cxcy, half]), node("Add", [cxcy, half])], axis=2)   # [B, A, 4]
    cls_max = node("ReduceMax", [cls], axes=[2], keepdims=1)        # [B, A, 1]
    score = node("Mul", [obj, cls_max])                             # [B, A, 1]
    label = node("ArgMax", [cls], axis=2, keepdims=0)               # [B, A] int64
    if class_agnostic:
        per_class = node("Transpose", [score], perm=[0, 2, 1])      # [B, 1, A]
    else:
        onehot = node("Cast", [node("Equal", [cls, cls_max])], to=TensorProto.FLOAT)
        per_class = node("Transpose", [node("Mul", [onehot, score])], perm=[0, 2, 1])   # [B, C, A]
    n_anchors = node("Gather", [node("Shape", [src]), const("one", 1, np.int64)])
    max_out = node("Reshape", [n_anchors, const("shape1", [1], np.int64)])
    selected = node("NonMaxSuppression", [boxes, per_class, max_out, const("iou", [iou], np.float32),
                                          const("conf", [conf], np.float32)], center_point_box=0)   # [N, 3]
    batch_anchor = node("Gather", [selected, const("idx02", [0, 2], np.int64)], axis=1)      # [N, 2]
    score2 = node("Squeeze", [score], axes=[2])                          # [B, A]
    zeros = node("Mul", [score2, const("zero", 0.0, np.float32)])
    ones = node("Reshape", [node("Cast", [node("Gather", [selected, const("idx0", 0, np.int64)], axis=1)],
                                 to=TensorProto.FLOAT), const("flat", [-1], np.int64)])
    ones = node("Add", [node("Mul", [ones, const("zero2", 0.0, np.float32)]), const("one_f", 1.0, np.float32)])
    keep = node("ScatterND", [zeros, batch_anchor, ones])            # [B, A] 1 where kept
    kept_score = node("Mul", [score2, keep])
    k = const("k", [int(topk)], np.int64)
    top_scores, top_idx = node("TopK", [kept_score, k], outputs=["nms_top_scores", "nms_top_idx"], axis=1,
                               largest=1, sorted=1)                 # [B, K]
    valid = node("Greater", [top_scores, const("zero3", 0.0, np.float32)])
    validf = node("Cast", [valid], to=TensorProto.FLOAT)
    idx4 = node("Expand", [node("Unsqueeze", [top_idx], axes=[2]),
                           node("Concat", [node("Shape", [top_idx]), const("four", [4], np.int64)], axis=0)])
    out_boxes = node("Mul", [node("GatherElements", [boxes, idx4], axis=1), node("Unsqueeze", [validf], axes=[2])],
                     outputs=["boxes"])
    node("Mul", [top_scores, validf], outputs=["scores"])
    node("Mul", [node("GatherElements", [label, top_idx], axis=1), node("Cast", [valid], to=TensorProto.INT64)],
         outputs=["classes"])
    node("ReduceSum", [node("Cast", [valid], to=TensorProto.INT64)], outputs=["num_dets"], axes=[1], keepdims=0)
    del out_boxes
    graph.node.extend(nodes)
    graph.initializer.extend(inits)
    batch = graph.output[0].type.tensor_type.shape.dim[0]
    b = batch.dim_param or batch.dim_value
    del graph.output[:]
    graph.output.extend([
        helper.make_tensor_value_info("num_dets", TensorProto.INT64, [b]),
        helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [b, int(topk), 4]),
        helper.make_tensor_value_info("scores", TensorProto.FLOAT, [b, int(topk)]),
        helper.make_tensor_value_info("classes", TensorProto.INT64, [b, int(topk)]),
    ])
    return model


def set_opset(model, opset):
    """Convert to ``opset`` (onnx.version_converter) when it differs from the model's."""
    from onnx import version_converter
    current = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    if int(opset) == current:
        return model
    return version_converter.convert_version(model, int(opset))


def simplify(model):
    """``(model, tool, note)``: simplified by ``onnxslim`` (else ``onnxsim``) when installed.
    Simplification is optional: when the tool is missing or raises (onnxslim 0.1.98 fails on
    the decoded graph's constant folding), the model comes back unchanged, ``tool`` None and
    ``note`` saying why."""
    try:
        import onnxslim
    except ImportError:
        onnxslim = None
    if onnxslim is not None:
        try:
            return onnxslim.slim(model), "onnxslim", ""
        except Exception as e:  # noqa: BLE001 -- a third-party optimiser; the unsimplified graph is valid
            return model, None, f"onnxslim failed ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
    try:
        import onnxsim
    except ImportError:
        return model, None, "neither onnxslim nor onnxsim is installed"
    try:
        simplified, ok = onnxsim.simplify(model)
    except Exception as e:  # noqa: BLE001 -- as above
        return model, None, f"onnxsim failed ({type(e).__name__})"
    return (simplified, "onnxsim", "") if ok else (model, None, "onnxsim could not validate its result")
