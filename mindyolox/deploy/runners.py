"""Runners for exported artifacts: ``float32 [n, 3, H, W]`` images (``mindyolox.data.preproc``)
-> the graph's outputs, for ``.mindir`` (MindSpore ``GraphCell``, or MindSpore Lite),
``.onnx`` (onnxruntime) and ``.om`` (``ais_bench`` on an Ascend host).

:func:`open_runner` reads the export metadata (``<model>.json``) and checks what it is asked
against it: a wrong input size or a batch a fixed-batch graph cannot take is one
:class:`~mindyolox.errors.MindYOLOXError` line, never a runtime traceback. A fixed-batch-B
graph is fed in chunks of B (the last chunk padded with 114 grey rows, dropped again).

:meth:`Runner.detections` turns any graph's outputs into the official ``postprocess`` rows
``[K, 7]`` (x1, y1, x2, y2, obj, cls_conf, cls) in network-input pixels: raw outputs are
decoded with the strides, decoded outputs go straight to ``postprocess``, end-to-end NMS
outputs are read back (obj = score, cls_conf = 1) and thresholded at ``conf``.
"""
import abc
import os
import sys

import numpy as np

from ..errors import MindYOLOXError, WeightsError
from .meta import read_meta

__all__ = ["open_runner", "Runner", "ONNX_PROVIDERS", "as_decoded", "predict_images"]

ONNX_PROVIDERS = {"cpu": ["CPUExecutionProvider"],
                  "gpu": ["CUDAExecutionProvider", "CPUExecutionProvider"],
                  "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
                  "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
                  "openvino": ["OpenVINOExecutionProvider", "CPUExecutionProvider"],
                  "ascend": ["CANNExecutionProvider", "CPUExecutionProvider"]}


def _first_line(e):
    return next((ln.strip() for ln in str(e).splitlines() if ln.strip()), type(e).__name__)


class Runner(abc.ABC):
    """A loaded artifact. Attributes: ``path``, ``meta``, ``kind`` (``raw`` | ``decoded`` |
    ``nms``), ``batch`` (int, or None for a dynamic batch), ``img_size`` (H, W), ``backend``,
    ``strides``, ``num_classes``."""

    def __init__(self, path, meta, backend, model_shape=None):
        self.path, self.meta, self.backend = str(path), meta, backend
        graph = meta.get("graph", {})
        self.kind = "nms" if graph.get("nms") else ("decoded" if graph.get("decode") else "raw")
        shape = meta["input"]["shape"]
        self.batch = None if meta["input"].get("dynamic_batch") else int(shape[0])
        self.img_size = (int(shape[2]), int(shape[3]))
        if model_shape is not None:
            self._take_model_shape(model_shape)
        self.strides = tuple(meta.get("strides", (8, 16, 32)))
        self.num_classes = int(meta.get("num_classes", 80))
        self.training = False

    def _take_model_shape(self, shape):
        """Input size and batch from the model file itself (``shape`` ``[B, 3, H, W]``; a
        dimension that is not a positive int is dynamic). Decided (issue 33): the model wins;
        when its ``.json`` says otherwise, one ``warning:`` line on stderr names both."""
        dims = [d if isinstance(d, int) and d > 0 else None for d in list(shape)]
        if len(dims) != 4:
            raise MindYOLOXError(f"{self.path}: input shape {list(shape)} is not [batch, 3, H, W]")
        batch = dims[0]
        size = (dims[2], dims[3]) if dims[2] and dims[3] else self.img_size
        said = []
        if size != self.img_size:
            said.append(f"input {self.img_size[0]}x{self.img_size[1]}, the model takes {size[0]}x{size[1]}")
        if batch != self.batch:
            def b(v):
                return "a dynamic batch" if v is None else f"batch {v}"
            said.append(f"{b(self.batch)}, the model has {b(batch)}")
        if said:
            from .meta import meta_path
            print(f"warning: {meta_path(self.path)} says {'; '.join(said)}: using the model's", file=sys.stderr,
                  flush=True)
        self.img_size, self.batch = size, batch

    @abc.abstractmethod
    def _run(self, x):
        """The graph call of one chunk: ``float32 [b, 3, H, W]`` -> list of output arrays
        (each backend's subclass)."""

    def check_input(self, x):
        if x.ndim != 4 or x.shape[1] != 3 or tuple(x.shape[2:]) != self.img_size:
            raise MindYOLOXError(f"{self.path}: takes [batch, 3, {self.img_size[0]}, {self.img_size[1]}] images, "
                                 f"got {list(x.shape)} (re-export with --img-size for another size)")

    def __call__(self, x):
        """``float32 [n, 3, H, W]`` -> list of output arrays, each with n rows."""
        x = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
        self.check_input(x)
        if self.batch is None:
            return self._run(x)
        n, b = len(x), self.batch
        chunks = []
        for i in range(0, n, b):
            part = x[i:i + b]
            m = len(part)
            if m < b:
                part = np.concatenate([part, np.full((b - m,) + part.shape[1:], 114, np.float32)])
            chunks.append([o[:m] for o in self._run(part)])
        return [np.concatenate([c[j] for c in chunks]) for j in range(len(chunks[0]))]

    def device_feed(self, x):
        """What the device takes: the float32 NCHW batch, or with an AIPP config (Ascend
        recipe) the letterboxed uint8 NHWC BGR canvas (exact: preproc's values are integers)."""
        if self.meta.get("aipp"):
            return np.ascontiguousarray(x.transpose(0, 2, 3, 1).round().clip(0, 255).astype(np.uint8))
        return x

    def set_train(self, mode=False):   # the evaluator's model protocol
        return self

    def detections(self, outputs, conf, nms, class_agnostic=False):
        """Per image ``[K, 7]`` float32 rows in network-input pixels (module doc)."""
        from ..utils.postprocess import decode_outputs, postprocess
        if self.kind == "nms":
            return [_nms_rows(o, conf) for o in _split_nms(outputs)]
        out = outputs[0]
        if self.kind == "raw":
            out = decode_outputs(out, self.img_size, self.strides)
        return postprocess(np.asarray(out, np.float32), conf, nms, class_agnostic)


def _split_nms(outputs):
    num, boxes, scores, classes = outputs
    return [(int(num[i]), boxes[i], scores[i], classes[i]) for i in range(len(num))]


def _nms_rows(one, conf):
    n, boxes, scores, classes = one
    rows = np.zeros((n, 7), np.float32)
    rows[:, :4] = boxes[:n]
    rows[:, 4] = scores[:n]
    rows[:, 5] = 1.0
    rows[:, 6] = classes[:n]
    return rows[rows[:, 4] >= np.float32(conf)]


def predict_images(runner, images, conf, nms, class_agnostic=False):
    """BGR uint8 images -> per image ``float32 [K, 7]`` detections in original pixels (one graph
    call per ``len(images)``, chunked by the runner for a fixed-batch graph): the
    ``predict_batch`` of :mod:`mindyolox.predict.loop` for an exported artifact."""
    from ..data import preproc
    xs, rs = zip(*(preproc(img, runner.img_size) for img in images))
    dets = runner.detections(runner(np.stack(xs)), conf, nms, class_agnostic)
    result = []
    for d, r in zip(dets, rs):
        d = np.asarray(d, np.float32).copy()
        d[:, :4] /= np.float32(r)
        result.append(d)
    return result


def as_decoded(runner, outputs):
    """Outputs as decoded rows ``[n, A|K, 5+C]`` (cx, cy, w, h px, obj, cls...) for the COCO
    evaluator: raw is decoded; an NMS graph's K rows get obj = score and a one-hot class
    (``postprocess`` then keeps exactly them: greedy NMS is idempotent on a set it kept)."""
    from ..utils.postprocess import decode_outputs
    if runner.kind == "decoded":
        return np.asarray(outputs[0], np.float32)
    if runner.kind == "raw":
        return decode_outputs(outputs[0], runner.img_size, runner.strides)
    num, boxes, scores, classes = outputs
    n, k = scores.shape
    out = np.zeros((n, k, 5 + runner.num_classes), np.float32)
    out[..., 0:2] = (boxes[..., 0:2] + boxes[..., 2:4]) / 2
    out[..., 2:4] = boxes[..., 2:4] - boxes[..., 0:2]
    out[..., 4] = scores
    idx = np.arange(k)[None] < num[:, None]
    b, j = np.nonzero(idx)
    out[b, j, 5 + classes[b, j]] = 1.0
    return out


class OnnxRunner(Runner):
    def __init__(self, path, meta, device="cpu", threads=0):
        import onnxruntime as ort
        providers = ONNX_PROVIDERS.get(str(device).lower())
        if providers is None:
            raise MindYOLOXError(f"--device {device}: for ONNX use one of {', '.join(ONNX_PROVIDERS)}")
        available = ort.get_available_providers()
        if providers[0] not in available:
            raise MindYOLOXError(f"--device {device}: onnxruntime has no {providers[0]} here "
                                 f"(available: {', '.join(available)})")
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = int(threads)
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=[p for p in providers if p in available])
        except Exception as e:  # noqa: BLE001 -- onnxruntime raises its own exception types
            raise WeightsError(f"{path}: onnxruntime cannot load it ({_first_line(e)})") from None
        first = self.session.get_inputs()[0]
        super().__init__(path, meta, "onnxruntime " + self.session.get_providers()[0], model_shape=first.shape)
        self.input_name = first.name

    def _run(self, x):
        return self.session.run(None, {self.input_name: x})


class MindIRRunner(Runner):
    def __init__(self, path, meta, device=None, lite=False):
        if lite:
            import mindspore_lite as mslite
            context = mslite.Context()
            context.target = [{"ascend": "ascend", "gpu": "gpu"}.get(str(device or "cpu").lower(), "cpu")]
            self.model = mslite.Model()
            try:
                self.model.build_from_file(str(path), mslite.ModelType.MINDIR, context)
            except (RuntimeError, ValueError) as e:
                raise WeightsError(f"{path}: MindSpore Lite cannot build it ({_first_line(e)})") from None
            backend = f"mindspore_lite {context.target[0]}"
            shape = [int(d) for d in self.model.get_inputs()[0].shape]
        else:
            import mindspore as ms
            from mindspore import nn
            from .native import native_stderr_captured
            ms.set_context(mode=ms.GRAPH_MODE)
            if device:
                ms.set_device({"cpu": "CPU", "gpu": "GPU", "ascend": "Ascend"}.get(str(device).lower(), device))
            with native_stderr_captured() as captured:
                try:
                    graph = ms.load(str(path))
                except (RuntimeError, ValueError) as e:
                    raise WeightsError(f"{path}: not a loadable MindIR ({_first_line(e)})") from None
            if captured.text.strip():
                os.write(2, captured.text.encode())
            self.model = nn.GraphCell(graph)
            backend = "mindspore GraphCell"
            shape = _mindir_input_shape(path)
        self.lite = lite
        super().__init__(path, meta, backend, model_shape=shape)

    def _run(self, x):
        if self.lite:
            inputs = self.model.get_inputs()
            inputs[0].set_data_from_numpy(self.device_feed(x))
            return [o.get_data_to_numpy() for o in self.model.predict(inputs)]
        import mindspore as ms
        out = self.model(ms.Tensor(x))
        out = out if isinstance(out, (tuple, list)) else (out,)
        return [o.asnumpy() for o in out]


def _mindir_input_shape(path):
    """``[B, 3, H, W]`` of the first graph input recorded in a MindIR file, or None when the
    file records none. Read with MindSpore's protobuf reader ``read_proto``
    (mindspore/train/_utils.py:242; its ``graph.input[i].tensor[0].dims`` holds the shape given
    to ``mindspore.export``); a GraphCell itself does not expose its input shapes."""
    from mindspore.train._utils import read_proto
    try:
        proto = read_proto(str(path))
    except ValueError as e:
        raise WeightsError(f"{path}: not a loadable MindIR ({_first_line(e)})") from None
    for inp in proto.graph.input:
        if inp.tensor:
            return [int(d) for d in inp.tensor[0].dims]
    return None


class OmRunner(Runner):
    """An Ascend ``.om`` through ``ais_bench`` (which wraps pyACL). With the AIPP config of
    :mod:`mindyolox.deploy.ascend` the device input is the letterboxed ``uint8 [n, H, W, 3]``
    BGR canvas; the runner converts the float32 NCHW batch back to it."""

    def __init__(self, path, meta, device_id=0):
        try:
            from ais_bench.infer.interface import InferSession
        except ImportError:
            raise MindYOLOXError(f"{path}: running .om needs an Ascend host with CANN and ais_bench "
                                 f"(pip install the ais_bench wheel of your CANN; pyACL alone is not wrapped "
                                 f"here)") from None
        self.session = InferSession(int(device_id), str(path))
        super().__init__(path, meta, "ais_bench")
        self.batches = meta.get("dynamic_batch_sizes") or []

    def _run(self, x):
        feed = self.device_feed(x)
        mode = "dymbatch" if self.batches else "static"
        return [np.asarray(o) for o in self.session.infer([feed], mode=mode)]

    def __call__(self, x):
        x = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
        self.check_input(x)
        if not self.batches:
            return Runner.__call__(self, x)
        outs = []
        step = max(self.batches)
        for i in range(0, len(x), step):
            part = x[i:i + step]
            b = min(s for s in self.batches if s >= len(part))
            pad = np.full((b - len(part),) + part.shape[1:], 114, np.float32)
            outs.append([o[:len(part)] for o in self._run(np.concatenate([part, pad]))])
        return [np.concatenate([c[j] for c in outs]) for j in range(len(outs[0]))]


def open_runner(path, device=None, backend="auto", threads=0):
    """Runner for ``path`` by its suffix; ``device`` cpu | gpu | ascend (| cuda, tensorrt,
    openvino for ONNX providers); ``backend`` for MindIR: ``auto`` (Lite when importable),
    ``mindspore``, ``lite``."""
    path = str(path)
    if not os.path.isfile(path):
        raise WeightsError(f"model file not found: {path}")
    ext = os.path.splitext(path)[1].lower()
    if ext not in (".onnx", ".mindir", ".om"):
        raise MindYOLOXError(f"{path}: unknown model format '{ext}' (use .onnx, .mindir or .om)")
    meta = read_meta(path)
    if "input" not in meta:
        raise MindYOLOXError(f"{path}: metadata has no 'input' (exported by an older deploy/export.py? re-export)")
    if ext == ".onnx":
        return OnnxRunner(path, meta, device or "cpu", threads)
    if ext == ".om":
        return OmRunner(path, meta)
    lite = backend == "lite"
    if backend == "auto":
        try:
            import mindspore_lite  # noqa: F401
            lite = True
        except ImportError:
            lite = False
    elif lite:
        try:
            import mindspore_lite  # noqa: F401
        except ImportError:
            raise MindYOLOXError("--backend lite: the mindspore_lite package is not installed") from None
    return MindIRRunner(path, meta, device, lite)
